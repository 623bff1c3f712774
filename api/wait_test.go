package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
)

// served is a request running in its own goroutine; done is closed when the handler
// returned.
type served struct {
	rec  *httptest.ResponseRecorder
	done chan struct{}
}

func (f *fixture) serveAsync(ctx context.Context, target, token string) *served {
	s := &served{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.rec = f.do(ctx, http.MethodGet, target, token)
	}()
	return s
}

// wait returns the response once the handler has returned. The test's own deadline
// (go test -timeout) catches a handler that never does.
func (s *served) wait() *httptest.ResponseRecorder {
	<-s.done
	return s.rec
}

// watchWaits reports on the channel returned each time a request is about to hold for
// the projection (Config.waiting), with the seq it waits for. A test that commits after
// it exercises waking rather than not waiting, whatever the scheduler does.
func watchWaits(c *Config) <-chan uint64 {
	ch := make(chan uint64, 64)
	c.waiting = func(seq uint64) { ch <- seq }
	return ch
}

// held waits until a request is about to hold for seq.
func held(t *testing.T, waits <-chan uint64, seq uint64) {
	t.Helper()
	select {
	case got := <-waits:
		if got != seq {
			t.Fatalf("a request holds for seq %d, want %d", got, seq)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no request held for seq %d", seq)
	}
}

func TestMinSeqWakesOnCommit(t *testing.T) {
	// A long bound: the request can only come back with the new state through the commit.
	var waits <-chan uint64
	f := newFixture(t, func(c *Config) { c.MaxWait = time.Minute; waits = watchWaits(c) })
	s := f.serveAsync(t.Context(), "/v1/applicants/"+string(idNone)+"?minSeq=22", readerToken)
	held(t, waits, 22)
	f.apply(t, spec{id: idNone, app: app1, ext: "user-9", typ: domain.EventCreated, at: 30 * time.Minute, recv: 30 * time.Minute})
	rec := s.wait()
	if rec.Code != http.StatusOK || rec.Header().Get(SeqHeader) != "22" {
		t.Fatalf("%d %s=%s: %s", rec.Code, SeqHeader, rec.Header().Get(SeqHeader), rec.Body)
	}
	var st struct {
		Status  string
		LastSeq uint64
	}
	json.Unmarshal(rec.Body.Bytes(), &st)
	if st.Status != "INIT" || st.LastSeq != 22 {
		t.Errorf("read after the wait: %+v, want its own write", st)
	}
}

func TestMinSeqBounded(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxWait = 100 * time.Millisecond })
	rec := f.get(t, "/v1/applicants/"+string(idA)+"?minSeq=1000", readerToken)
	// Answered with the state as it is, and the header tells the caller the wait was not met.
	if rec.Code != http.StatusOK || rec.Header().Get(SeqHeader) != "21" {
		t.Errorf("%d %s=%s", rec.Code, SeqHeader, rec.Header().Get(SeqHeader))
	}
	// An applicant still unknown when the bound passes is a 404, with the header.
	rec = f.get(t, "/v1/applicants/"+string(idNone)+"?minSeq=1000", readerToken)
	if rec.Code != http.StatusNotFound || rec.Header().Get(SeqHeader) != "21" {
		t.Errorf("unknown: %d %s=%s", rec.Code, SeqHeader, rec.Header().Get(SeqHeader))
	}
	// Already applied: no wait at all (a huge bound would otherwise hang the test).
	f2 := newFixture(t, func(c *Config) { c.MaxWait = time.Hour })
	if rec := f2.get(t, "/v1/applicants/"+string(idA)+"?minSeq=21", readerToken); rec.Code != http.StatusOK {
		t.Errorf("met minSeq: %d", rec.Code)
	}
}

func TestMinSeqCancelFreesHandler(t *testing.T) {
	var waits <-chan uint64
	f := newFixture(t, func(c *Config) { c.MaxWait = time.Hour; waits = watchWaits(c) })
	ctx, cancel := context.WithCancel(t.Context())
	s := f.serveAsync(ctx, "/v1/applicants/"+string(idA)+"?minSeq=1000", readerToken)
	held(t, waits, 1000)
	cancel()
	if rec := s.wait(); rec.Body.Len() != 0 {
		t.Errorf("answered a client that left: %s", rec.Body)
	}
	if n := f.requests(t, "GET /v1/applicants/{id}", "499"); n != 1 {
		t.Errorf("499s counted: %v", n)
	}
}

func TestChangesWakesOnCommit(t *testing.T) {
	var waits <-chan uint64
	f := newFixture(t, func(c *Config) { waits = watchWaits(c) })
	s := f.serveAsync(t.Context(), "/v1/changes?after=21&wait=60", readerToken)
	held(t, waits, 22)
	// An annotation changes no status: the request looks again after its commit and
	// goes back to waiting, for the next one.
	f.apply(t, spec{id: idA, app: app1, ext: "user-1", typ: domain.EventStepPassed, step: "liveness", at: 31 * time.Minute, recv: 31 * time.Minute})
	held(t, waits, 23)
	select {
	case <-s.done:
		t.Fatalf("answered on a commit without a change: %s", s.rec.Body)
	default:
	}
	f.apply(t, spec{id: idA, app: app1, ext: "user-1", typ: domain.EventRejected, at: 32 * time.Minute, recv: 32 * time.Minute})
	rec := s.wait()
	var got client.Changes
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("%d %v %s", rec.Code, err, rec.Body)
	}
	if len(got.Changes) != 1 || got.Changes[0].Seq != 23 || got.Changes[0].To != "REJECTED" || got.Next != 23 {
		t.Errorf("changes = %s", rec.Body)
	}
	if rec.Header().Get(SeqHeader) != "23" {
		t.Errorf("%s = %s", SeqHeader, rec.Header().Get(SeqHeader))
	}
}

func TestChangesWaitBounded(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxChangesWait = 100 * time.Millisecond })
	rec := f.get(t, "/v1/changes?after=21&wait=60", readerToken)
	if rec.Code != http.StatusOK || rec.Body.String() != `{"changes":[],"next":21}`+"\n" {
		t.Errorf("%d %s", rec.Code, rec.Body)
	}
}

func TestChangesCancelFreesHandler(t *testing.T) {
	var waits <-chan uint64
	f := newFixture(t, func(c *Config) { waits = watchWaits(c) })
	ctx, cancel := context.WithCancel(t.Context())
	s := f.serveAsync(ctx, "/v1/changes?after=21&wait=60", readerToken)
	held(t, waits, 22)
	cancel()
	if rec := s.wait(); rec.Body.Len() != 0 {
		t.Errorf("answered a client that left: %s", rec.Body)
	}
}

// Closing the projection under a waiting request frees it too (shutdown order).
func TestChangesWaitEndsOnClose(t *testing.T) {
	var waits <-chan uint64
	f := newFixture(t, func(c *Config) { waits = watchWaits(c) })
	s := f.serveAsync(t.Context(), "/v1/changes?after=21&wait=60", readerToken)
	held(t, waits, 22)
	f.proj.Close()
	rec := s.wait()
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("after close: %d %s, want 503", rec.Code, rec.Body)
	}
	checkErrorBody(t, rec, "unavailable", "closed")
}

// A follower over a real server (keep-alive, real connections) sees every change once,
// in order, while a writer keeps committing.
func TestChangesFollower(t *testing.T) {
	f := newFixture(t, nil)
	srv := httptest.NewServer(f.h)
	defer srv.Close()

	const extra = 30
	var specs []spec
	for i := range extra {
		targets := []domain.EventType{domain.EventIncomplete, domain.EventInProgress}
		specs = append(specs, spec{id: idE, app: app1, ext: "user-5", typ: targets[i%2],
			at: time.Hour + time.Duration(i)*time.Second, recv: time.Hour + time.Duration(i)*time.Second})
	}
	evs := fixtureEvents(t, uint64(len(f.stored))+1, specs)
	writerDone := make(chan struct{})
	go func() { // commits one event at a time while the follower reads
		defer close(writerDone)
		for i := range evs {
			if _, err := f.proj.Apply(evs[i:i+1], f.folder); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	defer func() { <-writerDone }()

	var seqs []uint64
	after := uint64(0)
	for len(seqs) < 13+extra {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet,
			fmt.Sprintf("%s/v1/changes?after=%d&limit=7&wait=10", srv.URL, after), nil)
		req.Header.Set("Authorization", "Bearer "+readerToken)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var page client.Changes
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %v", resp.StatusCode, err)
		}
		hdr, _ := strconv.ParseUint(resp.Header.Get(SeqHeader), 10, 64)
		for _, c := range page.Changes {
			if c.Seq <= after || c.Seq > hdr {
				t.Fatalf("change %d outside (after %d, header %d]", c.Seq, after, hdr)
			}
			after = c.Seq
			seqs = append(seqs, c.Seq)
		}
		if page.Next < after {
			t.Fatalf("next %d went back before %d", page.Next, after)
		}
		after = page.Next
	}
	if len(seqs) != 13+extra || seqs[len(seqs)-1] != uint64(21+extra) {
		t.Errorf("followed %d changes ending at %d", len(seqs), seqs[len(seqs)-1])
	}
}

// Point in time: every seq and every receivedAt of the fixture, for every applicant,
// against a fold of the stored events computed here.
func TestPointInTime(t *testing.T) {
	f := newFixture(t, nil)
	check := func(t *testing.T, target string, want domain.State, found bool) {
		t.Helper()
		rec := f.get(t, target, auditorToken)
		if !found {
			if rec.Code != http.StatusNotFound {
				t.Errorf("%s: %d, want 404: %s", target, rec.Code, rec.Body)
			}
			return
		}
		if wantBody := string(mustJSON(t, newStateView(want))) + "\n"; rec.Code != http.StatusOK || rec.Body.String() != wantBody {
			t.Errorf("%s: %d\n got %s\nwant %s", target, rec.Code, rec.Body, wantBody)
		}
	}
	for _, id := range []domain.ApplicantID{idA, idB, idC, idD, idE, idNone} {
		for seq := uint64(0); seq <= uint64(len(f.stored))+1; seq++ {
			want, found := foldUpTo(f.stored, id, func(e domain.Event) bool { return e.Seq <= seq })
			check(t, fmt.Sprintf("/v1/applicants/%s?seq=%d", id, seq), want, found)
		}
		for _, e := range f.stored {
			for _, at := range []time.Time{e.ReceivedAt, e.ReceivedAt.Add(-time.Nanosecond)} {
				want, found := foldUpTo(f.stored, id, func(x domain.Event) bool { return !x.ReceivedAt.After(at) })
				check(t, fmt.Sprintf("/v1/applicants/%s?at=%s", id, at.Format(time.RFC3339Nano)), want, found)
			}
		}
	}

	// The same by hand, for decisions that matter: A at seq 12 was IN_PROGRESS with one
	// step; at 09:18:50 A had completed but its "address" step (received, by a slow clock,
	// at 09:18:45) was not yet known, because seq 19 came before it.
	var st client.State
	json.Unmarshal(f.get(t, "/v1/applicants/"+string(idA)+"?seq=12", auditorToken).Body.Bytes(), &st)
	if *st.Status != "IN_PROGRESS" || st.Events != 4 || len(st.StepsPassed) != 2 {
		t.Errorf("A at seq 12: %+v", st)
	}
	st = client.State{}
	json.Unmarshal(f.get(t, "/v1/applicants/"+string(idA)+"?at=2024-05-01T09:18:50Z", auditorToken).Body.Bytes(), &st)
	if *st.Status != "COMPLETED" || st.Events != 5 || len(st.StepsPassed) != 2 {
		t.Errorf("A at 09:18:50: %+v", st)
	}
	// Times in another zone mean the same instant.
	a := f.get(t, "/v1/applicants/"+string(idA)+"?at=2024-05-01T11:18:50%2B02:00", auditorToken)
	b := f.get(t, "/v1/applicants/"+string(idA)+"?at=2024-05-01T09:18:50Z", auditorToken)
	if a.Body.String() != b.Body.String() {
		t.Errorf("zones differ:\n%s\n%s", a.Body, b.Body)
	}
	// Point-in-time state at the present is the current state.
	now := f.get(t, "/v1/applicants/"+string(idC)+"?at=2100-01-01T00:00:00Z", auditorToken)
	cur := f.get(t, "/v1/applicants/"+string(idC), auditorToken)
	if now.Body.String() != cur.Body.String() {
		t.Errorf("at the present:\n%s\ncurrent:\n%s", now.Body, cur.Body)
	}
}

// requests returns kycstate_api_requests_total{route,code}.
func (f *fixture) requests(tb testing.TB, route, code string) float64 {
	tb.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "kycstate_api_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == route && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
