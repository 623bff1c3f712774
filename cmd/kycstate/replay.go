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
erased, unauthenticated) and the status it moves from and to. It does not read or change
the projection.`+offlineNote)
	cfgPath := fs.String("config", "", "YAML config file")
	applicant := fs.String("applicant", "", "only this applicant's events (an applicant id)")
	format := fs.String("format", "table", "table or jsonl")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *format != "table" && *format != "jsonl" {
		return fmt.Errorf("%w: --format must be table or jsonl", errUsage)
	}
	// The log holds ids in canonical form (lower case); an id given in any case names
	// the same applicant.
	var only domain.ApplicantID
	if *applicant != "" {
		id, err := domain.ParseApplicantID(*applicant)
		if err != nil {
			return fmt.Errorf("%w: --applicant must be an applicant id (a UUID)", errUsage)
		}
		only = id
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
		fmt.Fprintln(tw, "SEQ\tRECEIVED\tAPPLICANT\tTYPE\tEVENT AT\tOUTCOME\tFROM\tTO")
		defer tw.Flush()
	}
	folder := domain.NewFolder()
	states := map[domain.ApplicantID]domain.State{}
	enc := json.NewEncoder(out)
	emit := func(batch []domain.Event) error {
		for _, ev := range batch {
			if only != "" && ev.ApplicantID != only {
				continue
			}
			s, rec := folder.Apply(states[ev.ApplicantID], ev)
			states[ev.ApplicantID] = s
			if tw != nil {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", rec.Seq, rec.ReceivedAt.Format(time.RFC3339),
					rec.ApplicantID, rec.Type, rec.EventAt.Format(time.RFC3339Nano), rec.Outcome, orDash(rec.From), orDash(rec.To))
				continue
			}
			if err := enc.Encode(newReplayLine(rec)); err != nil {
				return err
			}
		}
		return nil
	}
	if only != "" {
		for _, app := range o.r.Apps {
			evs, err := o.events.Applicant(ctx, app.AppKey, only)
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
	last, err := o.events.LastSeq(ctx)
	if err != nil {
		return err
	}
	return o.events.Read(ctx, 1, 1000, func(batch []domain.Event) error {
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
