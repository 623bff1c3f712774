package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest"
	"github.com/kycstate/kycstate/ingest/allpass"
)

func cmdRejects(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "reprocess") {
		if len(args) > 0 && isHelp(args[0]) {
			fmt.Fprintln(e.stderr, "Usage: kycstate rejects list|reprocess [flags]\n\n"+
				"list prints the refused webhooks kept in KYC_REJECTS; reprocess appends those that open\n"+
				"with the keys configured now. \"kycstate rejects list --help\" shows the flags."+offlineNote)
			return nil
		}
		return fmt.Errorf("%w: rejects list|reprocess", errUsage)
	}
	sub := args[0]
	fs := newFlags(e, "rejects "+sub, `list: prints the refused webhooks kept in KYC_REJECTS (time, app, reason, status, how
kept). A webhook whose signature verified is kept whole, under its applicant
("authenticated"); a request no key verified only as a rate-limited sample, its body cut to
4 KiB ("sample", "sample cut" when it was longer); rejects kept by earlier versions show "-".
reprocess: opens each kept webhook again with the keys configured now and appends those that
open; a webhook already in the log is recognised as a duplicate, so reprocessing twice adds
nothing. A sample whose body was cut cannot open: it is skipped, with a line saying so.`+offlineNote)
	cfgPath := fs.String("config", "", "YAML config file")
	from := fs.Uint64("from", 1, "first reject sequence")
	format := fs.String("format", "table", "table or jsonl (reprocess: a summary line, or its counts as JSON)")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if *format != "table" && *format != "jsonl" {
		return fmt.Errorf("%w: --format must be table or jsonl", errUsage)
	}
	o, err := openOps(ctx, e, *cfgPath, opsOptions{NeedApps: sub == "reprocess"})
	if err != nil {
		return err
	}
	defer o.Close()
	if sub == "reprocess" {
		// Skipped samples are told of on stdout with the summary, or on stderr beside
		// the JSON result.
		skipOut := e.stdout
		if *format == "jsonl" {
			skipOut = e.stderr
		}
		res, err := ingest.Reprocess(ctx, o.events, ingest.ReprocessConfig{Apps: o.r.Apps, Providers: o.r.Providers,
			Options:       allpass.Options{KeepRaw: o.r.Ingest.KeepRaw == nil || *o.r.Ingest.KeepRaw},
			AppendTimeout: time.Duration(o.r.Ingest.AppendTimeout), Times: o.r.Ingest.times(), Logger: o.log,
			Skipped: func(r domain.Reject) {
				fmt.Fprintf(skipOut, "skipped reject %d: a sample whose body was cut to %d of its %d bytes when kept; it cannot be reprocessed\n",
					r.Seq, len(r.Body), r.BodySize)
			}}, *from)
		if err != nil {
			return err
		}
		if *format == "jsonl" {
			return json.NewEncoder(e.stdout).Encode(res)
		}
		fmt.Fprintln(e.stdout, reprocessSummary(res))
		return nil
	}
	out := bufio.NewWriter(e.stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	if *format == "table" {
		fmt.Fprintln(tw, "SEQ\tRECEIVED\tAPP\tSTATUS\tREASON\tKEPT\tAPPLICANT\tREMOTE")
	}
	err = o.events.Rejects(ctx, *from, func(r domain.Reject) error {
		if *format == "jsonl" {
			return enc.Encode(r)
		}
		_, err := fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.Seq, r.ReceivedAt.Format(time.RFC3339), rejectApp(r),
			r.Status, r.Reason, keptLabel(r), applicantLabel(r), r.RemoteAddr)
		return err
	})
	tw.Flush()
	return err
}

// reprocessSummary is reprocess's result for people: the counts, the still-failing ones by
// reason in a stable order, and where a later run resumes.
func reprocessSummary(res ingest.ReprocessResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "reprocessed %d rejects: recovered: %d, duplicates: %d, failing: %d",
		res.Seen, res.Recovered, res.Duplicates, res.Failing)
	if res.Truncated > 0 {
		fmt.Fprintf(&b, ", skipped (samples cut when kept): %d", res.Truncated)
	}
	if len(res.FailingByReason) > 0 {
		reasons := slices.Sorted(maps.Keys(res.FailingByReason))
		parts := make([]string, len(reasons))
		for i, r := range reasons {
			parts[i] = fmt.Sprintf("%s: %d", r, res.FailingByReason[r])
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
	}
	fmt.Fprintf(&b, "; next run: --from %d", res.Next)
	return b.String()
}

// rejectApp names the app a reject was sent to: its {app}, after its provider for one of
// another provider than Allpass (sumsub/ss).
func rejectApp(r domain.Reject) string {
	if r.Provider != "" && r.Provider != string(domain.ProviderAllpass) {
		return r.Provider + "/" + r.App
	}
	return orAny(r.App)
}

func orAny(s string) string {
	if s == "" {
		return "(any)"
	}
	return s
}

// keptLabel says how a reject is kept, for the table.
func keptLabel(r domain.Reject) string {
	switch {
	case r.Truncated():
		return "sample cut"
	case r.Kept == "":
		return "-"
	}
	return r.Kept
}

// applicantLabel is the applicant an authenticated reject names, or "-".
func applicantLabel(r domain.Reject) string {
	if r.ApplicantID == "" {
		return "-"
	}
	return string(r.ApplicantID)
}
