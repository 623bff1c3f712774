package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
	"go.uber.org/zap"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

const offlineNote = `
It reads the log through nats.url when set (a running cluster), otherwise offline from
<data_dir>/nats of a stopped "kycstate serve" (it takes the data dir's lock, so it refuses
while serve runs there).`

// opsSetup is what an audit or operations command needs: config, logger and the event log.
type opsSetup struct {
	r      *Resolved
	lg     *zap.Logger
	log    *eventlog.EventLog
	closer func()
}

// openOps loads the config and opens the log. The data dir's lock is taken when the log is
// read offline (the embedded store must not have two servers) and when ownsProjection says
// the command reads or replaces <data_dir>/projection.db.
func openOps(ctx context.Context, e *env, cfgPath string, needApps, ownsProjection bool) (*opsSetup, error) {
	r, err := opsConfig(e, cfgPath, needApps)
	if err != nil {
		return nil, err
	}
	r.Log.Level = "warn"
	lg, err := newLogger(r.Log, e.stderr)
	if err != nil {
		return nil, err
	}
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	if len(r.URLs) == 0 {
		if _, err := os.Stat(filepath.Join(r.DataDir, "nats")); err != nil {
			return nil, fmt.Errorf("no event log at %s (set nats.url, or --config with the data_dir of a kycstate serve)", filepath.Join(r.DataDir, "nats"))
		}
	}
	if len(r.URLs) == 0 || ownsProjection {
		if err := os.MkdirAll(r.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data_dir: %w", err)
		}
		unlock, err := lockDataDir(r.DataDir)
		if err != nil {
			return nil, err
		}
		closers = append(closers, unlock)
	}
	conn, err := eventlog.Connect(ctx, natsConfig(r, "ops"), lg)
	if err != nil {
		closeAll()
		return nil, err
	}
	closers = append(closers, func() { conn.Close() })
	elog, err := eventlog.Open(ctx, conn, logConfig(r), lg)
	if err != nil {
		closeAll()
		return nil, err
	}
	return &opsSetup{r: r, lg: lg, log: elog, closer: closeAll}, nil
}

func (o *opsSetup) Close() { o.closer() }

func cmdReplay(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "replay", `Prints the log straight from the stream, in order, with the outcome the fold gives
each event now (duplicate, stale, applied, irregular, annotated, unknown) and the status it
moves from and to. It does not read or change the projection.`+offlineNote)
	cfgPath := fs.String("config", "", "YAML config file")
	applicant := fs.String("applicant", "", "only this applicant's events (an applicant id)")
	format := fs.String("format", "table", "table or jsonl")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *format != "table" && *format != "jsonl" {
		return fmt.Errorf("%w: --format must be table or jsonl", errUsage)
	}
	if _, err := domain.ParseApplicantID(*applicant); *applicant != "" && err != nil {
		return fmt.Errorf("%w: --applicant must be an applicant id (a UUID)", errUsage)
	}
	o, err := openOps(ctx, e, *cfgPath, false, false)
	if err != nil {
		return err
	}
	defer o.Close()

	out := bufio.NewWriter(e.stdout)
	defer out.Flush()
	var tw *tabwriter.Writer
	if *format == "table" {
		tw = tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tRECEIVED\tAPPLICANT\tTYPE\tEVENT AT\tOUTCOME\tFROM\tTO")
		defer tw.Flush()
	}
	folder := domain.NewFolder()
	states := map[domain.ApplicantID]domain.State{}
	enc := json.NewEncoder(out)
	emit := func(batch []domain.Event) error {
		for _, ev := range batch {
			if *applicant != "" && string(ev.ApplicantID) != *applicant {
				continue
			}
			s, rec := folder.Apply(states[ev.ApplicantID], ev)
			states[ev.ApplicantID] = s
			if tw != nil {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", rec.Seq, rec.ReceivedAt.Format(time.RFC3339),
					rec.ApplicantID, rec.Type, rec.EventAt.Format(time.RFC3339Nano), rec.Outcome, orDash(rec.From), orDash(rec.To))
				continue
			}
			if err := enc.Encode(rec); err != nil {
				return err
			}
		}
		return nil
	}
	if *applicant != "" {
		for _, app := range o.r.Apps {
			evs, err := o.log.Applicant(ctx, app.AppKey, domain.ApplicantID(*applicant))
			if err != nil {
				return err
			}
			if len(evs) > 0 {
				return emit(evs)
			}
		}
		if len(o.r.Apps) > 0 {
			return nil
		}
	}
	p := newProgress(e, "replay")
	defer p.done()
	last, err := o.log.LastSeq(ctx)
	if err != nil {
		return err
	}
	return o.log.Read(ctx, 1, 1000, func(batch []domain.Event) error {
		p.report(batch[len(batch)-1].Seq, last)
		return emit(batch)
	})
}

func orDash(s domain.Status) string {
	if s == domain.StatusNone {
		return "-"
	}
	return string(s)
}

func cmdExport(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "export", `Writes every event of the log as JSON lines, in stream order: the stored message
exactly as kept (raw body and signature included, so authenticity can be re-verified offline)
with its stream sequence added as "seq".`+offlineNote)
	cfgPath := fs.String("config", "", "YAML config file")
	outPath := fs.String("out", "", "file to write (default: standard output)")
	if err := parse(fs, args); err != nil {
		return err
	}
	o, err := openOps(ctx, e, *cfgPath, false, false)
	if err != nil {
		return err
	}
	defer o.Close()
	var w io.Writer = e.stdout
	var f *os.File
	if *outPath != "" {
		if f, err = os.OpenFile(*outPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		defer f.Close()
		w = f
	}
	out := bufio.NewWriterSize(w, 1<<20)
	p := newProgress(e, "export")
	last, err := o.log.LastSeq(ctx)
	if err != nil {
		return err
	}
	n := 0
	err = o.log.Read(ctx, 1, 1000, func(batch []domain.Event) error {
		for _, ev := range batch {
			out.WriteString(`{"seq":`)
			out.WriteString(strconv.FormatUint(ev.Seq, 10))
			if len(ev.Stored) > 2 {
				out.WriteByte(',')
				out.Write(ev.Stored[1:])
			} else {
				out.WriteByte('}')
			}
			if err := out.WriteByte('\n'); err != nil {
				return err
			}
			n++
		}
		p.report(batch[len(batch)-1].Seq, last)
		return nil
	})
	p.done()
	if err != nil {
		return err
	}
	if err := out.Flush(); err != nil {
		return err
	}
	if f != nil {
		if err := f.Sync(); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "exported %d events to %s\n", n, *outPath)
	}
	return nil
}

func cmdRebuild(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "rebuild", `Folds the whole log from sequence 1 into a new projection file and swaps it in
atomically (<data_dir>/projection.db). A crash during rebuild leaves the old file serving.
The query node must be stopped (the file is locked while it runs); a query node can also be
rebuilt by deleting its file and starting it.`+offlineNote)
	cfgPath := fs.String("config", "", "YAML config file")
	if err := parse(fs, args); err != nil {
		return err
	}
	o, err := openOps(ctx, e, *cfgPath, false, true)
	if err != nil {
		return err
	}
	defer o.Close()
	path := filepath.Join(o.r.DataDir, "projection.db")
	start := time.Now()
	p := newProgress(e, "rebuild")
	var total uint64
	err = projection.Rebuild(ctx, o.log, path, func(done, last uint64) { total = done; p.report(done, last) })
	p.done()
	if err != nil {
		return err
	}
	el := time.Since(start)
	fmt.Fprintf(e.stdout, "rebuilt %s: %d events in %s (%.0f events/s)\n", path, total, el.Round(time.Millisecond), float64(total)/el.Seconds())
	return nil
}

func cmdVerify(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "verify", `Folds the log afresh and compares every applicant's digest, event count and last
sequence with a projection, listing each difference. Exit status 1 when any differ.

A running service (serve or query node): --api URL asks its read API (GET /v1/verify) to
compare the projection it serves with the log, as of the projection's checkpoint, so the
projector's lag is not a difference. It needs an auditor token: --token, or else the first
auditor token of --config (in development mode, of <data_dir>/dev.yaml). The service bounds
one verify to 5 minutes; verify a longer log offline.

A stopped service (no --api): opens <data_dir>/projection.db itself. A running node holds
that file locked, so this refuses while one runs there; use --api then.
`+offlineNote)
	cfgPath := fs.String("config", "", "YAML config file")
	apiURL := fs.String("api", "", "verify a running service through its read API at this URL, e.g. http://127.0.0.1:8081 (default: offline)")
	token := fs.String("token", "", "with --api: an auditor token, literally, as env:NAME or as file:PATH (default: the config's first auditor token)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *apiURL != "" {
		tok, err := verifyToken(e, *cfgPath, *token)
		if err != nil {
			return err
		}
		start := time.Now()
		res, err := verifyViaAPI(ctx, *apiURL, tok)
		if err != nil {
			return err
		}
		return reportVerify(e, res, time.Since(start), "stop the node and run kycstate rebuild")
	}
	if *token != "" {
		return fmt.Errorf("%w: --token goes with --api; offline verify reads the data dir", errUsage)
	}
	o, err := openOps(ctx, e, *cfgPath, false, true)
	if err != nil {
		return suggestAPI(e, *cfgPath, err)
	}
	defer o.Close()
	path := filepath.Join(o.r.DataDir, "projection.db")
	proj, err := projection.Open(path, projection.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer proj.Close()
	start := time.Now()
	res, err := projection.Verify(ctx, o.log, proj)
	if err != nil {
		return err
	}
	return reportVerify(e, res, time.Since(start), "run kycstate rebuild")
}

func cmdRejects(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "reprocess") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintln(e.stderr, "Usage: kycstate rejects list|reprocess [flags]")
			return nil
		}
		return fmt.Errorf("%w: rejects list|reprocess", errUsage)
	}
	sub := args[0]
	fs := newFlags(e, "rejects "+sub, `list: prints the refused webhooks kept in KYC_REJECTS (time, app, reason, status).
reprocess: opens each kept webhook again with the keys configured now and appends those that
open; a webhook already in the log is recognised as a duplicate, so reprocessing twice adds
nothing.`+offlineNote)
	cfgPath := fs.String("config", "", "YAML config file")
	from := fs.Uint64("from", 1, "first reject sequence")
	format := fs.String("format", "table", "table or jsonl (list)")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	o, err := openOps(ctx, e, *cfgPath, sub == "reprocess", false)
	if err != nil {
		return err
	}
	defer o.Close()
	if sub == "reprocess" {
		res, err := ingest.Reprocess(ctx, o.log, o.r.Apps, *from, ingest.Options{KeepRaw: o.r.Ingest.KeepRaw == nil || *o.r.Ingest.KeepRaw}, o.lg)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%+v\n", res)
		return nil
	}
	out := bufio.NewWriter(e.stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	if *format == "table" {
		fmt.Fprintln(tw, "SEQ\tRECEIVED\tAPP\tSTATUS\tREASON\tREMOTE")
	}
	err = o.log.Rejects(ctx, *from, func(r domain.Reject) error {
		if *format == "jsonl" {
			return enc.Encode(r)
		}
		_, err := fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\n", r.Seq, r.ReceivedAt.Format(time.RFC3339), orAny(r.App), r.Status, r.Reason, r.RemoteAddr)
		return err
	})
	tw.Flush()
	return err
}

func orAny(s string) string {
	if s == "" {
		return "(any)"
	}
	return s
}

func cmdKeygen(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "keygen", "Prints a fresh app key, AES-256 secret key, HMAC key and two API tokens, as YAML to paste into a config.")
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, `apps:
  - name: main
    app_key: %s
    method: aes-256-cbc
    secret_key: %s
    hmac_key: %s
api:
  tokens:
    - { name: product, role: reader, token: %s }
    - { name: audit, role: auditor, token: %s }
`, domain.NewUUID(), randHex(32), randHex(32), randHex(24), randHex(24))
	return nil
}

func cmdVersion(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "version", "Prints the version.")
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "kycstate", Version)
	return nil
}

// progress prints "<name>: N/M" on a terminal now and then, and nothing in a pipe.
type progress struct {
	w    io.Writer
	name string
	last time.Time
	on   bool
}

func newProgress(e *env, name string) *progress {
	f, ok := e.stderr.(*os.File)
	on := false
	if ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			on = true
		}
	}
	return &progress{w: e.stderr, name: name, on: on}
}

func (p *progress) report(done, total uint64) {
	if !p.on || time.Since(p.last) < 200*time.Millisecond {
		return
	}
	p.last = time.Now()
	pct := 100.0
	if total > 0 {
		pct = float64(done) * 100 / float64(total)
	}
	fmt.Fprintf(p.w, "\r%s: %d/%d (%.0f%%)", p.name, done, total, pct)
}

func (p *progress) done() {
	if p.on && !p.last.IsZero() {
		fmt.Fprintln(p.w)
	}
}
