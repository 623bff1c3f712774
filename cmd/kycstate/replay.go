package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/kycstate/kycstate/domain"
)

func cmdReplay(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "replay", `Prints the log straight from the stream, in order, with the outcome the fold gives
each event now (duplicate, stale, applied, irregular, annotated, unknown, reconciled,
erased, unauthenticated) and the status it moves from and to, for every provider's
applicants (DESIGN.md section 13: each line names its provider and the provider's own
status). It does not read or change the projection.`+offlineNote)
	cfgPath := fs.String("config", "", "YAML config file")
	applicant := fs.String("applicant", "", "only this applicant's events (its provider's id; a UUID for Allpass)")
	providerName := fs.String("provider", string(domain.ProviderAllpass), "the provider of --applicant")
	format := fs.String("format", "table", "table or jsonl")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *format != "table" && *format != "jsonl" {
		return fmt.Errorf("%w: --format must be table or jsonl", errUsage)
	}
	provider := domain.Provider(*providerName)
	if !provider.Valid() {
		return fmt.Errorf("%w: --provider must be one of allpass, sumsub, persona, veriff, onfido", errUsage)
	}
	// The log holds Allpass ids in canonical form (lower case); an id given in any case
	// names the same applicant. Another provider's id is kept as given.
	if *applicant != "" {
		if provider == domain.ProviderAllpass {
			id, err := domain.ParseApplicantID(*applicant)
			if err != nil {
				return fmt.Errorf("%w: --applicant must be an applicant id (a UUID; another provider's id with --provider)", errUsage)
			}
			*applicant = string(id)
		} else if _, err := domain.ParseProviderID(*applicant); err != nil {
			return fmt.Errorf("%w: --applicant must be a %s applicant id (1 to 64 of A-Z, a-z, 0-9, '_' and '-')", errUsage, provider)
		}
	}
	o, err := openOps(ctx, e, *cfgPath, opsOptions{})
	if err != nil {
		return err
	}
	defer o.Close()

	out := bufio.NewWriter(e.stdout)
	defer out.Flush()
	var tw *tabwriter.Writer
	if *format == "table" {
		tw = tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tRECEIVED\tPROVIDER\tAPPLICANT\tTYPE\tPROVIDER STATUS\tEVENT AT\tOUTCOME\tFROM\tTO")
		defer tw.Flush()
	}
	folder := domain.NewFolder()
	// Applicants are told apart by key (provider, app, id): two providers may give the
	// same id, and each has its own fold.
	states := map[domain.ApplicantKey]domain.State{}
	enc := json.NewEncoder(out)
	emit := func(batch []domain.Event) error {
		for _, ev := range batch {
			if *applicant != "" && (string(ev.ApplicantID) != *applicant || domain.ProviderOf(ev.Provider) != provider) {
				continue
			}
			s, rec := folder.Apply(states[ev.Key()], ev)
			states[ev.Key()] = s
			if tw != nil {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", rec.Seq, rec.ReceivedAt.Format(time.RFC3339),
					domain.ProviderOf(string(rec.Provider)), rec.ApplicantID, rec.Type, orDashString(rec.ProviderStatus),
					rec.EventAt.Format(time.RFC3339Nano), rec.Outcome, orDash(rec.From), orDash(rec.To))
				continue
			}
			if err := enc.Encode(newReplayLine(rec)); err != nil {
				return err
			}
		}
		return nil
	}
	if *applicant != "" {
		// The applicant's own subjects, one per configured app of its provider; without
		// the config's apps, the whole log filtered.
		var apps []domain.AppKey
		for _, app := range o.r.Apps {
			if provider == domain.ProviderAllpass {
				apps = append(apps, app.AppKey)
			}
		}
		for _, app := range o.r.Providers {
			if app.Provider() == provider {
				apps = append(apps, domain.AppKey(app.Name()))
			}
		}
		for _, app := range apps {
			evs, err := o.events.ProviderApplicant(ctx, provider, app, domain.ApplicantID(*applicant))
			if err != nil {
				return err
			}
			if len(evs) > 0 {
				return emit(evs)
			}
		}
		if len(apps) > 0 {
			return nil
		}
	}
	p := newProgress(e, "replay")
	defer p.done()
	last, err := o.events.LastSeq(ctx)
	if err != nil {
		return err
	}
	return o.events.Read(ctx, 1, 1000, func(batch []domain.Event) error {
		p.report(batch[len(batch)-1].Seq, last)
		return emit(batch)
	})
}

func orDashString(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orDash(s domain.Status) string {
	if s == domain.StatusNone {
		return "-"
	}
	return string(s)
}

// replayLine is a history record as replay --format jsonl writes it: "from" and "to" are
// null where there is no status yet, as the read API writes them.
type replayLine struct {
	domain.Record
	From *domain.Status `json:"from"`
	To   *domain.Status `json:"to"`
}

func newReplayLine(rec domain.Record) replayLine {
	line := replayLine{Record: rec}
	if rec.From != domain.StatusNone {
		line.From = &rec.From
	}
	if rec.To != domain.StatusNone {
		line.To = &rec.To
	}
	return line
}
