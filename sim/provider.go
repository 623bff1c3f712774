package sim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/onfido"
	"github.com/kycstate/kycstate/ingest/persona"
	"github.com/kycstate/kycstate/ingest/providertest"
	"github.com/kycstate/kycstate/ingest/sumsub"
	"github.com/kycstate/kycstate/ingest/veriff"
)

// ProviderConfig says what to simulate of a provider other than Allpass (DESIGN.md
// section 13) and against which service: kycstate sim --provider.
type ProviderConfig struct {
	// Provider is sumsub, persona, veriff or onfido.
	Provider domain.Provider
	// AppName is the app's config name: webhooks go to IngestURL/webhooks/{provider}/{AppName}.
	AppName string
	// Secret is the app's webhook_secret; APIKey Veriff's api_key (X-AUTH-CLIENT).
	Secret []byte
	APIKey string
	// IngestURL, APIURL, Token, Applicants, Concurrency, the shares, Seed, HTTPClient,
	// CatchUpTimeout and MaxAttempts are as in Config. The check always runs.
	IngestURL, APIURL, Token            string
	Applicants, Concurrency             int
	ResendShare, LateShare, BadSigShare float64
	Seed                                uint64
	HTTPClient                          *http.Client
	CatchUpTimeout                      time.Duration
	MaxAttempts                         int
}

// RunProvider drives cfg.Applicants journeys of cfg.Provider through a running kycstate as
// that provider would: each webhook in the provider's shape and signed as it signs
// (package providertest), with identical resends (the service must answer duplicate),
// late deliveries of an older event after a newer one (stale, where the provider dates
// its events) and forged copies signed with a secret the service does not hold (401).
// It then folds what the service acknowledged, each event read by the provider's own
// adapter as the service reads it, and compares every applicant's state with what the
// read API serves. Errors and the report as Run's.
func RunProvider(ctx context.Context, cfg ProviderConfig, progress io.Writer) (Report, error) {
	switch cfg.Provider {
	case domain.ProviderSumsub, domain.ProviderPersona, domain.ProviderVeriff, domain.ProviderOnfido:
	default:
		return Report{}, domain.E("sim", domain.KindInvalid, fmt.Sprintf("provider %q: must be sumsub, persona, veriff or onfido", cfg.Provider))
	}
	if !domain.IsSubjectToken(cfg.AppName) || len(cfg.Secret) == 0 || (cfg.Provider == domain.ProviderVeriff && cfg.APIKey == "") {
		return Report{}, domain.E("sim", domain.KindInvalid, "a provider app needs its name, its webhook secret and (Veriff) its API key")
	}
	open, err := opener(cfg.Provider, cfg.AppName, cfg.Secret, cfg.APIKey)
	if err != nil {
		return Report{}, domain.E("sim", domain.KindInvalid, err)
	}
	base := Config{IngestURL: cfg.IngestURL, APIURL: cfg.APIURL, Token: cfg.Token, Applicants: cfg.Applicants,
		Concurrency: cfg.Concurrency, ResendShare: cfg.ResendShare, LateShare: cfg.LateShare, BadSigShare: cfg.BadSigShare,
		Seed: cfg.Seed, Check: true, HTTPClient: cfg.HTTPClient, CatchUpTimeout: cfg.CatchUpTimeout, MaxAttempts: cfg.MaxAttempts,
		AppName: cfg.AppName}
	if err := base.validateCommon(); err != nil {
		return Report{}, err
	}
	r := &runner{cfg: base, client: cfg.HTTPClient, runID: randHex(4)}
	if r.client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = base.Concurrency + 4
		r.client = &http.Client{Transport: tr, Timeout: 30 * time.Second}
		defer tr.CloseIdleConnections()
	}
	hookURL := strings.TrimRight(cfg.IngestURL, "/") + "/webhooks/" + string(cfg.Provider) + "/" + url.PathEscape(cfg.AppName)

	rep := Report{Applicants: base.Applicants, Outcomes: map[domain.Outcome]int{}}
	results := make([]*result, base.Applicants)
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stopProgress := r.startProgress(progress)
	start := time.Now()
	folders := make([]*domain.Folder, min(base.Concurrency, base.Applicants))
	for w := range folders {
		folders[w] = domain.NewFolder()
	}
	if err := eachOf(runCtx, len(folders), base.Applicants, func(ctx context.Context, w, i int) error {
		res, err := r.runProviderJourney(ctx, cfg, hookURL, open, i, start)
		if res != nil {
			res.finish(folders[w])
		}
		results[i] = res
		r.done.Add(1)
		return err
	}); err != nil {
		cancel(err)
	}
	rep.Elapsed = time.Since(start)
	stopProgress()
	rep.addAll(results)
	if err := context.Cause(runCtx); err != nil {
		return rep, err
	}
	if progress != nil {
		fmt.Fprintf(progress, "sim: checking %d %s applicants against the read API (waiting for seq %d)\n", countCheckable(results), cfg.Provider, rep.MaxSeq)
	}
	return rep, r.check(ctx, results, &rep)
}

// opener returns how the service reads a webhook of p: the provider's adapter.
func opener(p domain.Provider, app string, secret []byte, apiKey string) (func(body []byte, h http.Header, at time.Time) (domain.Event, error), error) {
	secrets := [][]byte{secret}
	var open func(body []byte, h http.Header, at time.Time) (domain.Event, string, error)
	switch p {
	case domain.ProviderSumsub:
		a := &sumsub.App{Name: app, Secrets: secrets}
		open = func(b []byte, h http.Header, at time.Time) (domain.Event, string, error) {
			return a.Open(b, h, at, sumsub.Options{})
		}
	case domain.ProviderPersona:
		a := &persona.App{Name: app, Secrets: secrets}
		open = func(b []byte, h http.Header, at time.Time) (domain.Event, string, error) {
			return a.Open(b, h, at, persona.Options{})
		}
	case domain.ProviderVeriff:
		a := &veriff.App{Name: app, APIKey: apiKey, Secrets: secrets}
		if err := a.Validate(); err != nil {
			return nil, err
		}
		open = func(b []byte, h http.Header, at time.Time) (domain.Event, string, error) {
			return a.Open(b, h, at, veriff.Options{})
		}
	case domain.ProviderOnfido:
		a := &onfido.App{Name: app, Secrets: secrets}
		open = func(b []byte, h http.Header, at time.Time) (domain.Event, string, error) {
			return a.Open(b, h, at, onfido.Options{})
		}
	}
	return func(b []byte, h http.Header, at time.Time) (domain.Event, error) {
		ev, _, err := open(b, h, at)
		return ev, err
	}, nil
}

// providerID is a fresh applicant id in p's own form.
func providerID(p domain.Provider) string {
	b := make([]byte, 12)
	rand.Read(b)
	switch p {
	case domain.ProviderSumsub:
		return hex.EncodeToString(b) // a 24-hex applicantId
	case domain.ProviderPersona:
		return "inq_" + hex.EncodeToString(b)
	}
	return domain.NewUUID() // Veriff's session id, Onfido's workflow run id
}

// runProviderJourney plans and sends journey i of cfg.Provider, recording in the result
// what the service acknowledged, as the provider's adapter reads it.
func (r *runner) runProviderJourney(ctx context.Context, cfg ProviderConfig, hookURL string,
	open func([]byte, http.Header, time.Time) (domain.Event, error), i int, now time.Time) (*result, error) {
	rng := mrand.New(mrand.NewPCG(cfg.Seed, uint64(i)))
	start := now.Add(-7 * 24 * time.Hour).Add(time.Duration(rng.Int64N(int64(5 * 24 * time.Hour)))).UTC().Truncate(time.Second)
	id := providerID(cfg.Provider)
	evs, _ := providertest.Journey(cfg.Provider, id, fmt.Sprintf("sim-%s-%06d", r.runID, i), start)
	// Late: an event the provider dates delivered after the next one, also dated.
	for k := 0; k+1 < len(evs); k++ {
		if !evs[k].At.IsZero() && !evs[k+1].At.IsZero() && rng.Float64() < cfg.LateShare {
			evs[k], evs[k+1] = evs[k+1], evs[k]
			k++
		}
	}
	res := &result{id: domain.ApplicantID(id), seqs: map[uint64]bool{}, outcomes: map[domain.Outcome]int{}}
	stranger := make([]byte, 32)
	rand.Read(stranger)
	for _, e := range evs {
		body := providertest.Body(cfg.Provider, e)
		if rng.Float64() < cfg.BadSigShare {
			forged := sealed{body: body, url: hookURL, header: providertest.Sign(cfg.Provider, stranger, cfg.APIKey, body, time.Now())}
			a, err := r.send(ctx, forged, true, res)
			if err != nil {
				return res, err
			}
			res.forgeries++
			if !(a.err == nil && a.status == http.StatusUnauthorized) {
				res.problem(res.id, "a forged %s (signed with a stranger's secret) was answered %s, want 401", e.Type, a)
			}
		}
		s := sealed{body: body, url: hookURL, header: providertest.Sign(cfg.Provider, cfg.Secret, cfg.APIKey, body, time.Now())}
		sentAt := time.Now().UTC()
		a, err := r.send(ctx, s, false, res)
		if err != nil {
			return res, err
		}
		res.deliveries++
		switch {
		case a.ok():
			ev, err := open(body, s.header, sentAt)
			if err != nil {
				res.problem(res.id, "the service stored a %s its adapter refuses: %v", e.Type, err)
				continue
			}
			ev.Seq = a.seq
			if res.seqs[a.seq] {
				res.problem(res.id, "a new delivery (%s) was answered seq %d, which an earlier event was given", e.Type, a.seq)
				continue
			}
			res.seqs[a.seq] = true
			res.accepted = append(res.accepted, ev)
		case retryable(a):
			res.lost = true
			res.problem(res.id, "lost: %s not acknowledged after %d attempts: %s", e.Type, a.attempts, a)
			return res, nil
		default:
			res.lost = true
			return res, fmt.Errorf("the service refused a genuine %s webhook (%s of applicant %s): %s; are the app name and secret the service's?", cfg.Provider, e.Type, id, a)
		}
		if rng.Float64() < cfg.ResendShare {
			again, err := r.send(ctx, s, false, res)
			if err != nil {
				return res, err
			}
			res.resends++
			if !(again.ok() && again.dup && again.seq == a.seq) {
				res.problem(res.id, "a resent %s (identical body) was answered %s (seq %d, duplicate %v), want duplicate of seq %d", e.Type, again, again.seq, again.dup, a.seq)
			}
		}
	}
	return res, nil
}
