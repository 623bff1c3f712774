package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	"github.com/kycstate/kycstate/api"
	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/reconcile"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
)

const reconcileHelp = `Checks applicants against Allpass's Open API (DESIGN.md section 10) and, where the
Open API's status differs from the projection's, appends it to the log (origin openapi;
the fold marks it reconciled, or stale when a newer webhook got there first). Equal
statuses append nothing. --dry-run compares only.

Sumsub, Persona and Veriff applicants (apps with provider and api: base_url and the
provider's credentials, DESIGN.md section 13) are checked against their provider's status
API the same way, by --applicant only (the id is the provider's; one shared by two
providers' applicants is refused, ask the API with ?provider= then); --all sweeps
Allpass's. Onfido's applicants are not reconciled.

  --applicant ID   one applicant
  --all            every applicant, at most reconcile.rate Open API calls per second per
                   app (progress on a terminal; 1,000 applicants take 200 s at the
                   default 5/s)

It prints one line per applicant checked (--json: the API's report as JSON lines) and a
summary; exit status 1 when any check failed.

A running service (serve or query node): --api URL asks its read API
(POST /v1/applicants/{id}/reconcile, auditor token: --token, or else the first auditor
token of --config). --all lists the applicants through GET /v1/applicants?status=S, so
applicants with no status yet are left out.

A stopped service (no --api): opens <data_dir>/projection.db itself, folds into it what
the log holds past its checkpoint, checks with the config's apps[].open_api and appends
to the log, then folds the appended events in too. A running node holds that file
locked, so this refuses while one runs there; use --api then.
` + offlineNote

func cmdReconcile(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "reconcile", reconcileHelp)
	cfgPath := fs.String("config", "", "YAML config file")
	applicant := fs.String("applicant", "", "the applicant id to check")
	all := fs.Bool("all", false, "check every applicant")
	dryRun := fs.Bool("dry-run", false, "compare only; append nothing")
	asJSON := fs.Bool("json", false, "print each report as a JSON line (the API's form)")
	apiURL := fs.String("api", "", "check through a running service's read API at this URL, e.g. http://127.0.0.1:8081 (default: offline)")
	token := fs.String("token", "", "with --api: an auditor token, literally, as env:NAME or as file:PATH (default: the config's first auditor token)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if (*applicant == "") == !*all {
		return fmt.Errorf("%w: give --applicant ID or --all", errUsage)
	}
	var id domain.ApplicantID
	if *applicant != "" {
		var err error
		if id, err = domain.ParseApplicantID(*applicant); err != nil {
			return fmt.Errorf("%w: --applicant must be a UUID", errUsage)
		}
	}
	out := &reconcileOutput{e: e, json: *asJSON, counts: map[string]int{}, start: time.Now()}
	if *apiURL != "" {
		tok, err := verifyToken(e, *cfgPath, *token)
		if err != nil {
			return err
		}
		c, err := client.New(*apiURL, tok, client.WithUserAgent("kycstate-reconcile"))
		if err != nil {
			return fmt.Errorf("%w: --api %s: %v", errUsage, *apiURL, err)
		}
		err = reconcileViaAPI(ctx, c, *apiURL, id, *dryRun, out)
		out.summary(*dryRun)
		if err != nil {
			return err
		}
		return out.exit()
	}
	if *token != "" {
		return fmt.Errorf("%w: --token goes with --api; offline reconcile reads the data dir", errUsage)
	}
	err := reconcileOffline(ctx, e, *cfgPath, id, *dryRun, out)
	if err != nil {
		return suggestAPI(e, *cfgPath, err)
	}
	out.summary(*dryRun)
	return out.exit()
}

// reconcileOutput prints reports and counts them.
type reconcileOutput struct {
	e      *env
	json   bool
	counts map[string]int
	n      int
	start  time.Time
	prog   *progress
}

func (o *reconcileOutput) report(v client.Reconcile) {
	o.n++
	o.counts[v.Action]++
	if o.json {
		b, _ := json.Marshal(v)
		fmt.Fprintln(o.e.stdout, string(b))
		return
	}
	str := func(p *string) string {
		if p == nil {
			return "none"
		}
		return *p
	}
	line := fmt.Sprintf("%s %s: projection %s, Open API %s", v.ApplicantID, v.Action, str(v.Projection.Status), str(v.OpenAPI.Status))
	if v.DryRun && v.Action == string(reconcile.ActionAppended) {
		line += " (dry run: not appended)"
	}
	if v.Seq != nil {
		line += fmt.Sprintf(", seq %d", *v.Seq)
	}
	if v.Error != nil {
		line += ": " + *v.Error
	}
	fmt.Fprintln(o.e.stdout, line)
}

func (o *reconcileOutput) summary(dryRun bool) {
	if o.prog != nil {
		o.prog.done()
	}
	verb := "appended"
	if dryRun {
		verb = "differ (dry run, nothing appended)"
	}
	fmt.Fprintf(o.e.stderr, "reconciled %d applicants in %s: %d %s, %d in sync, %d not found at Allpass, %d errors\n",
		o.n, time.Since(o.start).Round(time.Millisecond), o.counts["appended"], verb, o.counts["in_sync"],
		o.counts["not_found"], o.counts["error"])
}

func (o *reconcileOutput) exit() error {
	if o.counts["error"] > 0 {
		return &exitErr{code: 1, err: fmt.Errorf("%d checks failed; see their lines", o.counts["error"])}
	}
	return nil
}

// reconcileViaAPI checks id, or with id "" every applicant the API lists, through the
// read API.
func reconcileViaAPI(ctx context.Context, c *client.Client, base string, id domain.ApplicantID, dryRun bool, out *reconcileOutput) error {
	one := func(id domain.ApplicantID) error {
		rep, _, err := c.Reconcile(ctx, id, dryRun)
		if err != nil {
			return reconcileAPIErr(ctx, base, err)
		}
		out.report(rep)
		return nil
	}
	if id != "" {
		return one(id)
	}
	var ids []domain.ApplicantID
	for _, s := range domain.Statuses() {
		var cursor domain.ApplicantID
		for {
			page, _, err := c.ApplicantsByStatus(ctx, s, cursor, 1000)
			if err != nil {
				return reconcileAPIErr(ctx, base, err)
			}
			for _, st := range page.Applicants {
				ids = append(ids, st.ApplicantID)
			}
			if page.Next == nil {
				break
			}
			cursor = domain.ApplicantID(*page.Next)
		}
	}
	out.prog = newProgress(out.e, "reconcile")
	for i, id := range ids {
		if err := one(id); err != nil {
			return err
		}
		out.prog.report(uint64(i+1), uint64(len(ids)))
	}
	return nil
}

func reconcileAPIErr(ctx context.Context, base string, err error) error {
	var e *client.Error
	switch {
	case errors.As(err, &e) && e.Code == client.CodeReconcileDisabled:
		return fmt.Errorf("the read API at %s does not reconcile (404: %s); configure apps[].open_api on that node", base, e.Message)
	case errors.As(err, &e) && e.Code == client.CodeNotFound:
		return fmt.Errorf("the read API at %s: %s", base, e.Message)
	case errors.As(err, &e) && e.Code == client.CodeUnauthorized:
		return fmt.Errorf("the read API at %s refused the token (401): pass an auditor token of its api.tokens with --token", base)
	case errors.As(err, &e) && e.Code == client.CodeForbidden:
		return fmt.Errorf("reconcile needs an auditor token; the read API at %s says this one may not (403): pass one with --token", base)
	case errors.As(err, &e):
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("cannot reach the read API at %s: %v; is the service running, with api.listen at that address?", base, err)
}

// reconcileOffline checks on a stopped node's data dir.
func reconcileOffline(ctx context.Context, e *env, cfgPath string, id domain.ApplicantID, dryRun bool, out *reconcileOutput) error {
	o, err := openOps(ctx, e, cfgPath, opsOptions{NeedApps: true, OwnsProjection: true})
	if err != nil {
		return err
	}
	defer o.Close()
	if len(o.r.OpenAPIs) == 0 && len(o.r.ProviderAPIs) == 0 {
		return fmt.Errorf("%w: no app of the config has open_api (base_url, private_key) or api (base_url and the provider's credentials): there is nothing to check against", errUsage)
	}
	proj, err := projection.Open(filepath.Join(o.r.DataDir, "projection.db"), projection.Options{Indexer: indexerOf(o.events)})
	if err != nil {
		return err
	}
	defer proj.Close()
	folder := domain.NewFolder()
	if err := catchUp(ctx, o.events, proj, folder); err != nil {
		return err
	}
	rec, err := reconcile.New(reconcileConfig(o.r), proj, o.events, o.r.OpenAPIs, o.log, nil)
	if err != nil {
		return err
	}
	defer rec.Close()
	if err := rec.WithProviders(o.r.ProviderAPIs); err != nil {
		return err
	}
	if id != "" {
		rep, err := rec.Check(ctx, id, reconcile.CheckOptions{DryRun: dryRun})
		if domain.KindOf(err) == domain.KindNotFound {
			return fmt.Errorf("applicant %s: kycstate has no events of it", id)
		}
		if err != nil {
			return err
		}
		out.report(api.NewReconcileView(rep))
	} else {
		out.prog = newProgress(e, "reconcile")
		_, err := rec.Sweep(ctx, reconcile.SweepOptions{Full: true, DryRun: dryRun, OnCheck: func(rep reconcile.Report, done, total int) {
			out.report(api.NewReconcileView(rep))
			out.prog.report(uint64(done), uint64(total))
		}}, nil)
		if err != nil {
			return err
		}
	}
	// Fold what was appended, so the projection shows it when the node starts.
	return catchUp(ctx, o.events, proj, folder)
}

// catchUp folds into proj whatever the log holds past its checkpoint.
func catchUp(ctx context.Context, events *eventlog.EventLog, proj *projection.Projection, f *domain.Folder) error {
	return events.Read(ctx, proj.Checkpoint()+1, 1000, func(evs []domain.Event) error {
		_, err := proj.Apply(evs, f)
		return err
	})
}
