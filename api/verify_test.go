package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/nats-io/nats.go/jetstream"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/jstest"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// GET /v1/verify compares the projection with a real event log, so its tests append the
// fixture's webhooks to a JetStream stream on an embedded nats-server and fold the events
// as the stream stored them.

// logFixture is the fixture over a real log: the projection is folded from the events
// Append returned (their Seq and Stored are the stream's), and cfg.Verify runs
// projection.Verify of that log against the projection served.
type logFixture struct {
	*fixture
	events *eventlog.EventLog
}

func newLogFixture(tb testing.TB, mod func(*Config)) *logFixture {
	tb.Helper()
	events := startLog(tb)
	logged := appendAll(tb, events, fixtureEvents(tb, 1, fixtureSpecs()))
	f := buildFixture(tb, logged, verifyAgainst(events, mod))
	return &logFixture{fixture: f, events: events}
}

// verifyAgainst returns a config change that makes GET /v1/verify compare events with the
// projection the server serves, then applies mod.
func verifyAgainst(events *eventlog.EventLog, mod func(*Config)) func(*Config) {
	return func(c *Config) {
		proj := c.Projection.(*projection.Projection) // the fixture serves a real one
		c.Verify = func(ctx context.Context) (domain.VerifyResult, error) { return projection.Verify(ctx, events, proj) }
		if mod != nil {
			mod(c)
		}
	}
}

// startLog opens KYC_EVENTS on a fresh embedded nats-server in tb.TempDir().
func startLog(tb testing.TB) *eventlog.EventLog {
	tb.Helper()
	log := zaptest.NewLogger(tb, zaptest.Level(zap.WarnLevel))
	return jstest.Start(tb).EventLog(tb, eventlog.Config{RejectsMaxBytes: 1 << 20}, log)
}

// appendAll appends events in order, requiring each to land at the next sequence, and
// returns them as the log stored them.
func appendAll(tb testing.TB, events *eventlog.EventLog, evs []domain.Event) []domain.Event {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	last, err := events.LastSeq(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]domain.Event, len(evs))
	for i, ev := range evs {
		ev.Seq, ev.Stored = 0, nil
		seq, dup, err := events.Append(ctx, &ev, fmt.Sprintf("fixture-%d-%d", last, i))
		if err != nil || dup || seq != last+uint64(i)+1 {
			tb.Fatalf("Append #%d: seq %d duplicate %v, %v; want seq %d", i, seq, dup, err, last+uint64(i)+1)
		}
		out[i] = ev
	}
	return out
}

// verifyBody is GET /v1/verify's answer, decoded strictly.
type verifyBody struct {
	Checkpoint      uint64 `json:"checkpoint"`
	LogLast         uint64 `json:"logLast"`
	Applicants      int    `json:"applicants"`
	Events          uint64 `json:"events"`
	Signed          uint64 `json:"signed"`
	Unsigned        uint64 `json:"unsigned"`
	Unauthenticated uint64 `json:"unauthenticated"`
	OK              bool   `json:"ok"`
	Differences     []struct {
		Kind        string  `json:"kind"`
		ApplicantID *string `json:"applicantId"`
		Log         string  `json:"log"`
		Projection  string  `json:"projection"`
	} `json:"differences"`
}

func getVerify(tb testing.TB, f *fixture) verifyBody {
	tb.Helper()
	rec := f.get(tb, "/v1/verify", auditorToken)
	if rec.Code != http.StatusOK {
		tb.Fatalf("GET /v1/verify: %d %s", rec.Code, rec.Body)
	}
	if !strings.Contains(rec.Body.String(), `"differences":[`) {
		tb.Errorf("differences is not a list: %s", rec.Body)
	}
	var v verifyBody
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		tb.Fatalf("GET /v1/verify: %v", err)
	}
	if got, want := rec.Header().Get(SeqHeader), fmt.Sprint(v.Checkpoint); got != want {
		tb.Errorf("%s = %s, want the checkpoint compared, %s", SeqHeader, got, want)
	}
	return v
}

// digestOf chains id's stored events as the log holds them: an account of the digest
// independent of the projection and of projection.Verify.
func digestOf(events []domain.Event, id domain.ApplicantID) domain.Digest {
	var d domain.Digest
	for _, e := range events {
		if e.ApplicantID == id {
			d = d.Next(e.Stored)
		}
	}
	return d
}

func TestVerifyRouteAgrees(t *testing.T) {
	f := newLogFixture(t, nil)
	v := getVerify(t, f.fixture)
	if len(v.Differences) != 0 {
		t.Errorf("differences on a projection folded from the log: %+v", v.Differences)
	}
	applicants := map[domain.ApplicantID]bool{}
	for _, e := range f.stored {
		applicants[e.ApplicantID] = true
	}
	n := uint64(len(f.stored))
	if v.Checkpoint != n || v.LogLast != n || v.Events != n || v.Applicants != len(applicants) || !v.OK || v.Unauthenticated != 0 {
		t.Errorf("verify = %+v, want checkpoint, logLast and events %d and %d applicants", v, n, len(applicants))
	}

	// The log moves on and the projection has not applied it yet: lag is not a difference.
	appendAll(t, f.events, fixtureEvents(t, n+1, []spec{
		{id: idNone, app: app1, typ: domain.EventCreated, at: 40 * time.Minute, recv: 40 * time.Minute},
		{id: idA, app: app1, ext: "user-1", typ: domain.EventRejected, at: 41 * time.Minute, recv: 41 * time.Minute},
	}))
	v = getVerify(t, f.fixture)
	if len(v.Differences) != 0 || v.Checkpoint != n || v.LogLast != n+2 || v.Events != n {
		t.Errorf("verify of a projection behind the log = %+v, want no differences, checkpoint %d, logLast %d", v, n, n+2)
	}
}

// A projection folded from another log than the one it is compared with: one applicant's
// event differs by a byte, one applicant is missing, one is extra, and the projection
// claims a sequence the log does not have. Every difference is listed, in projection.Verify's
// order: the checkpoint, then the projection's applicants in id order, then the missing.
func TestVerifyRouteFindsDifferences(t *testing.T) {
	events := startLog(t)
	logged := appendAll(t, events, fixtureEvents(t, 1, fixtureSpecs()))
	var other []domain.Event
	for _, e := range logged {
		switch {
		case e.ApplicantID == idD:
			continue
		case e.ApplicantID == idB && e.Type == domain.EventRejected:
			e.Stored = append(slices.Clip(e.Stored), ' ')
		}
		other = append(other, e)
	}
	extra := fixtureEvents(t, uint64(len(logged))+1, []spec{{id: idNone, app: app1, typ: domain.EventCreated, at: 30 * time.Minute, recv: 30 * time.Minute}})
	other = append(other, extra...)
	f := buildFixture(t, other, verifyAgainst(events, nil))

	v := getVerify(t, f)
	type diff struct{ kind, id string }
	var got []diff
	for _, d := range v.Differences {
		id := "null"
		if d.ApplicantID != nil {
			id = *d.ApplicantID
		}
		got = append(got, diff{d.Kind, id})
	}
	want := []diff{{"checkpoint", "null"}, {"digest", string(idB)}, {"extra", string(idNone)}, {"missing", string(idD)}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("differences %v, want %v\n%+v", got, want, v.Differences)
	}
	if n := uint64(len(logged)); v.Checkpoint != n+1 || v.LogLast != n || v.OK {
		t.Errorf("checkpoint %d logLast %d, want %d and %d", v.Checkpoint, v.LogLast, n+1, n)
	}
	// Each side says what it holds: the log's digest is the chain over what the stream
	// stored, the projection's the chain over the altered bytes.
	bLog, bProj := digestOf(logged, idB), digestOf(other, idB)
	if d := v.Differences[1]; !strings.Contains(d.Log, bLog.String()) || !strings.Contains(d.Projection, bProj.String()) || bLog == bProj {
		t.Errorf("digest difference %+v, want log %s and projection %s", d, bLog, bProj)
	}
	if d := v.Differences[3]; !strings.Contains(d.Log, digestOf(logged, idD).String()) || d.Projection != "no state" {
		t.Errorf("missing difference %+v", d)
	}
}

func TestVerifyRouteAuth(t *testing.T) {
	f := newLogFixture(t, nil)
	for _, c := range []struct {
		token string
		want  int
		code  string
	}{
		{"", http.StatusUnauthorized, "unauthorized"},
		{wrongToken, http.StatusUnauthorized, "unauthorized"},
		{readerToken, http.StatusForbidden, "forbidden"},
	} {
		rec := f.get(t, "/v1/verify", c.token)
		if rec.Code != c.want {
			t.Errorf("token %q: %d, want %d", c.token, rec.Code, c.want)
			continue
		}
		checkErrorBody(t, rec, c.code, "Authorization")
	}
}

// A node without a log answers 404 saying so, with a code of its own (a client tells it
// from a wrong address's 404 by the code, not the message), after the same
// authentication as a node with one: a caller without the right token learns nothing
// about the node.
func TestVerifyRouteNotConfigured(t *testing.T) {
	f := newFixture(t, nil)
	rec := f.get(t, "/v1/verify", auditorToken)
	if rec.Code != http.StatusNotFound {
		t.Fatalf("auditor on a node without Verify: %d %s, want 404", rec.Code, rec.Body)
	}
	checkErrorBody(t, rec, client.CodeVerifyDisabled, "does not verify")
	if rec := f.get(t, "/v1/verify", ""); rec.Code != http.StatusUnauthorized {
		t.Errorf("no token on a node without Verify: %d, want 401", rec.Code)
	}
	if rec := f.get(t, "/v1/verify", readerToken); rec.Code != http.StatusForbidden {
		t.Errorf("reader on a node without Verify: %d, want 403", rec.Code)
	}
}

// One verify at a time: a second request while one runs gets 409 at once, and the first
// still answers in full.
func TestVerifyRouteOneAtATime(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	f := newLogFixture(t, func(c *Config) {
		verify := c.Verify
		c.Verify = func(ctx context.Context) (domain.VerifyResult, error) {
			once.Do(func() {
				close(started)
				<-release
			})
			return verify(ctx)
		}
	})
	first := make(chan int, 1)
	go func() { first <- f.get(t, "/v1/verify", auditorToken).Code }()
	<-started
	rec := f.get(t, "/v1/verify", auditorToken)
	close(release)
	if rec.Code != http.StatusConflict {
		t.Errorf("second verify while one runs: %d %s, want 409", rec.Code, rec.Body)
	} else {
		checkErrorBody(t, rec, "conflict", "already running")
	}
	if code := <-first; code != http.StatusOK {
		t.Errorf("first verify: %d, want 200", code)
	}
	// Once it has answered, the next one runs.
	if v := getVerify(t, f.fixture); len(v.Differences) != 0 {
		t.Errorf("verify after the first: %+v", v.Differences)
	}
}

// Past its bound a verify answers 503 naming the bound and the way out.
func TestVerifyRouteTimeout(t *testing.T) {
	f := newLogFixture(t, func(c *Config) { c.VerifyTimeout = time.Nanosecond })
	rec := f.get(t, "/v1/verify", auditorToken)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("verify past its bound: %d %s, want 503", rec.Code, rec.Body)
	}
	checkErrorBody(t, rec, "unavailable", "did not finish within 1ns")
	checkErrorBody(t, rec, "unavailable", "offline")
}

// A verify that takes longer than the server's WriteTimeout is still answered: the
// handler moves its write deadline. The control, a long poll on the same server, shows
// that the WriteTimeout does cut a request that does not.
func TestVerifyRouteOutlastsWriteTimeout(t *testing.T) {
	const writeTimeout = 100 * time.Millisecond
	f := newLogFixture(t, func(c *Config) {
		verify := c.Verify
		c.Verify = func(ctx context.Context) (domain.VerifyResult, error) {
			res, err := verify(ctx)
			// Longer than the server's WriteTimeout, as a verify of a long log is.
			select {
			case <-time.After(3 * writeTimeout):
			case <-ctx.Done():
			}
			return res, err
		}
	})
	srv := NewHTTPServer("127.0.0.1:0", f.h)
	srv.WriteTimeout = writeTimeout
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	base := "http://" + ln.Addr().String()
	get := func(path string) (int, string, error) {
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+auditorToken)
		client := http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	if code, body, err := get("/v1/verify"); err != nil || code != http.StatusOK || !strings.Contains(body, `"differences":[]`) {
		t.Errorf("verify longer than WriteTimeout: %d %q %v, want 200 with the result", code, body, err)
	}
	if code, body, err := get(fmt.Sprintf("/v1/changes?after=%d&wait=1", len(f.stored))); err == nil {
		t.Errorf("control: a 1 s long poll under a %s WriteTimeout was answered (%d %q); the test cannot tell a cut answer", writeTimeout, code, body)
	}
}

// An event published straight onto KYC_EVENTS by a client with write access to NATS
// fails its MAC: the projection folded it with no effect, yet the verdict fails, with
// the counts and the forged event listed (DESIGN.md section 15).
func TestVerifyRouteFailsOnForgedEvent(t *testing.T) {
	master, err := eventlog.ParseMasterKey(eventlog.NewMasterKeyHex())
	if err != nil {
		t.Fatal(err)
	}
	srv := jstest.Start(t)
	elog := srv.EventLog(t, eventlog.Config{Keys: &eventlog.MasterKeys{Current: master}}, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	logged := appendAll(t, elog, fixtureEvents(t, 1, fixtureSpecs()))
	forged := logged[0]
	subject, _ := eventlog.Subject(forged.AppKey, forged.ApplicantID)
	js, err := jetstream.New(srv.Conn(t).NC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(context.Background(), subject, bytes.Replace(forged.Stored, []byte(`"mac":"`), []byte(`"mac":"A`), 1)); err != nil {
		t.Fatal(err)
	}
	var read []domain.Event
	if err := elog.Read(context.Background(), 1, 100, func(evs []domain.Event) error { read = append(read, evs...); return nil }); err != nil {
		t.Fatal(err)
	}
	f := buildFixture(t, read, verifyAgainst(elog, nil))
	v := getVerify(t, f)
	n := uint64(len(logged))
	if v.OK || v.Signed != n || v.Unsigned != 0 || v.Unauthenticated != 1 || len(v.Differences) != 1 ||
		v.Differences[0].Kind != "unauthenticated" || *v.Differences[0].ApplicantID != string(forged.ApplicantID) {
		t.Fatalf("verify with a forged event: %+v", v)
	}
}
