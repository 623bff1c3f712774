package sim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/clock"
)

// check waits until the read API has applied rep.MaxSeq, then compares every applicant
// that lost no webhook with its expected state, Concurrency at a time.
func (r *runner) check(ctx context.Context, results []*result, rep *Report) error {
	var todo []*result
	for _, res := range results {
		if res != nil && !res.lost && res.events > 0 {
			todo = append(todo, res)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	api, err := client.New(r.cfg.APIURL, r.cfg.Token, client.WithHTTPClient(r.client), client.WithUserAgent("kycstate-sim"))
	if err != nil {
		return fmt.Errorf("read API %s: %v", r.cfg.APIURL, err)
	}
	r.api = api
	if err := r.waitCaughtUp(ctx, todo[0].id, rep.MaxSeq); err != nil {
		return err
	}
	reconciling := r.openAPI != nil && r.cfg.ReconcileToken != ""
	if reconciling {
		seq, err := r.reconcileAll(ctx, todo, rep)
		if err != nil {
			return err
		}
		if err := r.waitCaughtUp(ctx, todo[0].id, seq); err != nil {
			return err
		}
	}

	mismatches := make([][]string, len(todo))
	if err := eachOf(ctx, r.cfg.Concurrency, len(todo), func(ctx context.Context, _, i int) error {
		got, found, err := r.getState(ctx, todo[i].id, 0)
		if err != nil {
			return err
		}
		if !found {
			mismatches[i] = []string{fmt.Sprintf("applicant %s: not found (404), want %d events", todo[i].id, todo[i].events)}
			return nil
		}
		res := todo[i]
		if !reconciling {
			mismatches[i] = compare(res.expect, got)
			return nil
		}
		// Reconciled: the status is the journey's. An applicant that missed a
		// webhook, or got an Open API event, holds events the sim's fold of its
		// acknowledged webhooks lacks, so only its status is compared.
		if want, _, _ := res.truth.status(); deref(got.Status) != string(want) {
			mismatches[i] = append(mismatches[i], fmt.Sprintf("applicant %s: status after reconciliation: want %s (its journey), got %s",
				res.id, want, orNull(deref(got.Status))))
		}
		if res.givenUp == 0 && res.reconciled != "appended" && got.ReconciledAt == nil {
			mismatches[i] = append(mismatches[i], compare(res.expect, got)...)
		}
		return nil
	}); err != nil {
		return err
	}
	rep.Checked = len(todo)
	for _, m := range mismatches {
		rep.Mismatches = append(rep.Mismatches, m...)
	}
	return nil
}

// waitCaughtUp asks the read API for probe with ?minSeq=seq (the API holds the request
// until it has applied seq, up to its own bound) until X-Kycstate-Seq reaches seq, or
// CatchUpTimeout passes.
func (r *runner) waitCaughtUp(ctx context.Context, probe domain.ApplicantID, seq uint64) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.CatchUpTimeout)
	defer cancel()
	for {
		_, _, err := r.getState(ctx, probe, seq)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
		if r.lastSeen.Load() >= seq {
			return nil
		}
		if clock.Sleep(ctx, 100*time.Millisecond) != nil {
			break
		}
	}
	return fmt.Errorf("the read API had applied seq %d, not %d, after %s: is the projector running on the same log?",
		r.lastSeen.Load(), seq, r.cfg.CatchUpTimeout)
}

// getState reads one applicant from the read API, waiting for minSeq if not 0. found is
// false when the API answers not_found. Any other answer but 200 is an error that names
// it.
func (r *runner) getState(ctx context.Context, id domain.ApplicantID, minSeq uint64) (client.State, bool, error) {
	st, seq, err := r.api.State(ctx, id, client.StateQuery{MinSeq: minSeq})
	for {
		old := r.lastSeen.Load()
		if seq <= old || r.lastSeen.CompareAndSwap(old, seq) {
			break
		}
	}
	var e *client.Error
	switch {
	case err == nil:
		return st, true, nil
	case !errors.As(err, &e):
		return client.State{}, false, fmt.Errorf("read API: %w", err)
	case e.Code == client.CodeNotFound:
		return client.State{}, false, nil
	case e.Code == client.CodeUnauthorized || e.Code == client.CodeForbidden:
		return client.State{}, false, fmt.Errorf("read API refused the token (%d): give a reader or auditor token of the service", e.Status)
	}
	return client.State{}, false, fmt.Errorf("read API answered %d to GET /v1/applicants/%s: %s", e.Status, id, e.Message)
}

// compare lists the differences between the expected state and what the API serves.
// The digest is not compared: it chains the stored bytes, which only the service has.
func compare(want domain.State, got client.State) []string {
	var out []string
	diff := func(field string, w, g any) {
		out = append(out, fmt.Sprintf("applicant %s: %s: want %v, got %v", want.ApplicantID, field, w, g))
	}
	if got.ApplicantID != want.ApplicantID {
		diff("applicantId", want.ApplicantID, got.ApplicantID)
	}
	if got.AppKey != want.AppKey {
		diff("appKey", want.AppKey, got.AppKey)
	}
	if g := deref(got.ExternalUserID); g != string(want.ExternalUserID) {
		diff("externalUserId", want.ExternalUserID, g)
	}
	if g := deref(got.Status); g != string(want.Status) {
		diff("status", orNull(string(want.Status)), orNull(g))
	}
	if got.Events != want.Events {
		diff("events", want.Events, got.Events)
	}
	if got.LastSeq != want.LastSeq {
		diff("lastSeq", want.LastSeq, got.LastSeq)
	}
	if got.Anomalies != want.Anomalies {
		diff("anomalies", want.Anomalies, got.Anomalies)
	}
	for _, l := range []struct {
		name      string
		want, got []string
	}{
		{"stepsPassed", want.StepsPassed, got.StepsPassed},
		{"flags", want.Flags, got.Flags},
		{"warnings", want.Warnings, got.Warnings},
	} {
		if !slices.Equal(nonNil(l.want), nonNil(l.got)) {
			diff(l.name, l.want, l.got)
		}
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func orNull(s string) string {
	if s == "" {
		return "null"
	}
	return s
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
