package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// seqHeader is the read API's header naming the last stream sequence applied (DESIGN.md
// section 7).
const seqHeader = "X-Kycstate-Seq"

// apiState is the part of GET /v1/applicants/{id} the check compares.
type apiState struct {
	ApplicantID    domain.ApplicantID `json:"applicantId"`
	AppKey         domain.AppKey      `json:"appKey"`
	ExternalUserID *string            `json:"externalUserId"`
	Status         *string            `json:"status"`
	LastSeq        uint64             `json:"lastSeq"`
	Events         int                `json:"events"`
	StepsPassed    []string           `json:"stepsPassed"`
	Flags          []string           `json:"flags"`
	Warnings       []string           `json:"warnings"`
	Anomalies      int                `json:"anomalies"`
}

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
	if err := r.waitCaughtUp(ctx, todo[0].id, rep.MaxSeq); err != nil {
		return err
	}

	mismatches := make([][]string, len(todo))
	var (
		wg      sync.WaitGroup
		next    atomic.Int64
		errOnce sync.Once
		firstEr error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range min(r.cfg.Concurrency, len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(todo) || ctx.Err() != nil {
					return
				}
				got, found, err := r.getState(ctx, todo[i].id, 0)
				if err != nil {
					errOnce.Do(func() { firstEr = err; cancel() })
					return
				}
				if !found {
					mismatches[i] = []string{fmt.Sprintf("applicant %s: not found (404), want %d events", todo[i].id, todo[i].events)}
					continue
				}
				mismatches[i] = compare(todo[i].expect, got)
			}
		}()
	}
	wg.Wait()
	if firstEr != nil {
		return firstEr
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
		if sleep(ctx, 100*time.Millisecond) != nil {
			break
		}
	}
	return fmt.Errorf("the read API had applied seq %d, not %d, after %s: is the projector running on the same log?",
		r.lastSeen.Load(), seq, r.cfg.CatchUpTimeout)
}

// getState reads one applicant from the read API, waiting for minSeq if not 0. found is
// false on 404. Any answer other than 200 and 404 is an error that names it.
func (r *runner) getState(ctx context.Context, id domain.ApplicantID, minSeq uint64) (apiState, bool, error) {
	u := strings.TrimRight(r.cfg.APIURL, "/") + "/v1/applicants/" + url.PathEscape(string(id))
	if minSeq > 0 {
		u += "?minSeq=" + strconv.FormatUint(minSeq, 10)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return apiState{}, false, err
	}
	req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	req.Header.Set("User-Agent", "kycstate-sim")
	resp, err := r.client.Do(req)
	if err != nil {
		return apiState{}, false, fmt.Errorf("read API: %w", err)
	}
	defer resp.Body.Close()
	if s, err := strconv.ParseUint(resp.Header.Get(seqHeader), 10, 64); err == nil {
		for {
			old := r.lastSeen.Load()
			if s <= old || r.lastSeen.CompareAndSwap(old, s) {
				break
			}
		}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return apiState{}, false, fmt.Errorf("read API: reading the answer: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return apiState{}, false, nil
	case http.StatusUnauthorized, http.StatusForbidden:
		return apiState{}, false, fmt.Errorf("read API refused the token (%d): give a reader or auditor token of the service", resp.StatusCode)
	default:
		return apiState{}, false, fmt.Errorf("read API answered %d to GET %s: %s", resp.StatusCode, req.URL.Path, firstLine(b))
	}
	var st apiState
	if err := json.Unmarshal(b, &st); err != nil {
		return apiState{}, false, fmt.Errorf("read API: decoding applicant %s: %w", id, err)
	}
	return st, true, nil
}

// compare lists the differences between the expected state and what the API serves.
// The digest is not compared: it chains the stored bytes, which only the service has.
func compare(want domain.State, got apiState) []string {
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

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
