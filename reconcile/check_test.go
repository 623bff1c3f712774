package reconcile

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/store/projection"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestCheckAppendsWhatTheWebhooksMissed(t *testing.T) {
	for _, m := range []allpass.Method{allpass.MethodCBC, allpass.MethodGCM} {
		t.Run(string(m), func(t *testing.T) {
			f := newFixture(t, m, Config{})
			id := newID()
			f.webhook(id, domain.EventCreated, past)
			f.webhook(id, domain.EventInProgress, past.Add(time.Minute))
			f.api.set(id, domain.StatusApproved) // applicantApproved never arrived

			dry, err := f.rec.Check(context.Background(), id, CheckOptions{DryRun: true})
			if err != nil || dry.Action != ActionAppended || !dry.DryRun || dry.Seq != 0 || f.lastSeq() != 2 {
				t.Fatalf("dry run: %+v, %v, last seq %d", dry, err, f.lastSeq())
			}
			rep, err := f.rec.Check(context.Background(), id, CheckOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Action != ActionAppended || rep.Seq != 3 || rep.Error != "" ||
				rep.ProjectionStatus != domain.StatusInProgress || rep.OpenAPIStatus != domain.StatusApproved ||
				rep.OpenAPIUpdatedAt.Format(time.RFC3339) != "2026-02-01T10:00:00Z" || rep.AppKey != testAppKey {
				t.Fatalf("report %+v", rep)
			}
			evs, err := f.events.Applicant(context.Background(), testAppKey, id)
			if err != nil || len(evs) != 3 {
				t.Fatalf("%d events, %v", len(evs), err)
			}
			ev := evs[2]
			if ev.Origin != domain.OriginOpenAPI || ev.Type != domain.EventApproved || ev.EventAtSource != domain.SourceOpenAPITime ||
				ev.Raw == nil || !strings.Contains(ev.Raw.Body, `"data":"`) || ev.Raw.Signature == "" ||
				!bytes.Contains(ev.Payload, []byte(`"status":"APPROVED"`)) || ev.EventAt.Before(past.Add(time.Hour)) {
				t.Fatalf("appended %+v", ev)
			}
			f.catchUp()
			st := f.state(id)
			if st.Status != domain.StatusApproved || st.ReconciledAt.IsZero() || st.Anomalies != 0 {
				t.Fatalf("state after the fold: %+v", st)
			}
			hist, _, _ := f.proj.History(id, 0, 0)
			if hist[2].Outcome != domain.OutcomeReconciled || hist[2].Origin != domain.OriginOpenAPI {
				t.Fatalf("history %+v", hist[2])
			}
			again, err := f.rec.Check(context.Background(), id, CheckOptions{})
			if err != nil || again.Action != ActionInSync || again.Seq != 0 || f.lastSeq() != 3 {
				t.Fatalf("second check: %+v, %v", again, err)
			}
			if f.counter("checks", "main", "appended") != 1 || f.counter("checks", "main", "in_sync") != 1 ||
				f.counter("divergences", "main") != 2 {
				t.Fatalf("metrics: appended %v in_sync %v divergences %v", f.counter("checks", "main", "appended"),
					f.counter("checks", "main", "in_sync"), f.counter("divergences", "main"))
			}
			for _, k := range f.api.keys {
				if k != testPrivateKey {
					t.Fatalf("x-private-app-key %q", k)
				}
			}
		})
	}
}

// A reconciled event's append is bounded by Config.AppendTimeout (the service's
// ingest.append_timeout): a bound already past fails the append, and nothing is
// appended; without one the bound is the log's own.
func TestCheckAppendTimeout(t *testing.T) {
	f := newFixture(t, allpass.MethodCBC, Config{})
	for _, tc := range []struct {
		timeout time.Duration
		want    Action
	}{{time.Nanosecond, ActionError}, {0, ActionAppended}, {time.Minute, ActionAppended}} {
		id := newID()
		f.webhook(id, domain.EventCreated, past)
		f.api.set(id, domain.StatusApproved)
		before := f.lastSeq()
		r := f.newReconciler(Config{AppendTimeout: tc.timeout}, nil)
		rep, err := r.Check(context.Background(), id, CheckOptions{})
		if err != nil || rep.Action != tc.want {
			t.Fatalf("AppendTimeout %s: %+v, %v; want %s", tc.timeout, rep, err, tc.want)
		}
		switch appended := f.lastSeq() - before; {
		case tc.want == ActionError && (appended != 0 || rep.Reason != ReasonAppend):
			t.Fatalf("AppendTimeout %s: %d appended, reason %q", tc.timeout, appended, rep.Reason)
		case tc.want == ActionAppended && (appended != 1 || rep.Seq != before+1):
			t.Fatalf("AppendTimeout %s: %d appended, seq %d", tc.timeout, appended, rep.Seq)
		}
	}
}

func TestCheckUnknownApplicant(t *testing.T) {
	f := newFixture(t, allpass.MethodCBC, Config{})
	_, err := f.rec.Check(context.Background(), newID(), CheckOptions{})
	if domain.KindOf(err) != domain.KindNotFound {
		t.Fatalf("err %v, want not found", err)
	}
	if f.api.calls.Load() != 0 {
		t.Fatal("the Open API was asked about an applicant kycstate never saw")
	}
}

// Every way the Open API can fail: nothing appended, nothing panics, each is counted
// under its reason and reported.
func TestCheckFaults(t *testing.T) {
	f := newFixture(t, allpass.MethodCBC, Config{})
	core, logs := observer.New(zap.DebugLevel)
	f.rec.log = zap.New(core)

	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the redirect to another host was followed (key sent: %v)", r.Header.Get(allpass.PrivateKeyHeader) != "")
	}))
	defer other.Close()

	sealedFor := func(id domain.ApplicantID, status, updatedAt string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			body, sig := f.api.sealed(id, status, updatedAt, time.Now())
			w.Header().Set(allpass.SignatureHeader, sig)
			w.Write(body)
		}
	}
	for _, c := range []struct {
		name   string
		h      func(id domain.ApplicantID) http.HandlerFunc
		action Action
		reason string
	}{
		{"401", status(401), ActionError, ReasonUnauthorized},
		{"403", status(403), ActionError, ReasonForbidden},
		{"404", status(404), ActionNotFound, ""},
		{"429 with Retry-After", func(domain.ApplicantID) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { w.Header().Set("Retry-After", "2"); w.WriteHeader(429) }
		}, ActionError, ReasonRateLimited},
		{"500", status(500), ActionError, ReasonServerError},
		{"time-out", func(domain.ApplicantID) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-time.After(2 * time.Second):
				}
			}
		}, ActionError, ReasonTimeout},
		{"slow trickled body", func(id domain.ApplicantID) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				body, sig := f.api.sealed(id, "APPROVED", "2026-02-01T10:00:00Z", time.Now())
				w.Header().Set(allpass.SignatureHeader, sig)
				for _, b := range body {
					if _, err := w.Write([]byte{b}); err != nil {
						return
					}
					w.(http.Flusher).Flush()
					select {
					case <-r.Context().Done():
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
		}, ActionError, ReasonTimeout},
		{"10 MiB body", func(domain.ApplicantID) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				w.Write([]byte(`{"status":true,"statusCode":200,"data":"`))
				chunk := bytes.Repeat([]byte("ab"), 1<<15)
				for range 10 << 20 / len(chunk) {
					if _, err := w.Write(chunk); err != nil {
						return
					}
				}
				w.Write([]byte(`"}`))
			}
		}, ActionError, ReasonTooLarge},
		{"HTML", func(domain.ApplicantID) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				w.Write([]byte("<html><body><h1>Maintenance</h1></body></html>"))
			}
		}, ActionError, ReasonMalformed},
		{"data of another applicant", func(domain.ApplicantID) http.HandlerFunc {
			return sealedFor(newID(), "APPROVED", "2026-02-01T10:00:00Z")
		}, ActionError, ReasonInvalid},
		{"wrong HMAC", func(id domain.ApplicantID) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				body, sig := f.api.sealed(id, "APPROVED", "2026-02-01T10:00:00Z", time.Now())
				w.Header().Set(allpass.SignatureHeader, strings.Repeat("0", len(sig)))
				w.Write(body)
			}
		}, ActionError, ReasonBadSignature},
		{"status not in the list", func(id domain.ApplicantID) http.HandlerFunc {
			return sealedFor(id, "PENDING_REVIEW", "2026-02-01T10:00:00Z")
		}, ActionError, ReasonInvalid},
		{"updatedAt missing", func(id domain.ApplicantID) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, `{"status":true,"statusCode":200,"data":{"id":%q,"status":"APPROVED"}}`, id)
			}
		}, ActionError, ReasonInvalid},
		{"updatedAt malformed", func(id domain.ApplicantID) http.HandlerFunc {
			return sealedFor(id, "APPROVED", "last tuesday")
		}, ActionError, ReasonInvalid},
		{"redirect to another host", func(domain.ApplicantID) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
			}
		}, ActionError, ReasonRedirect},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := newID()
			f.webhook(id, domain.EventInReview, past)
			f.api.on(id, c.h(id))
			before := f.lastSeq()
			rep, err := f.rec.Check(context.Background(), id, CheckOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Action != c.action || rep.Seq != 0 || f.lastSeq() != before {
				t.Fatalf("report %+v; log %d -> %d", rep, before, f.lastSeq())
			}
			if c.action == ActionError {
				if rep.Error == "" || rep.Reason != c.reason {
					t.Fatalf("report %+v, want reason %s", rep, c.reason)
				}
				if f.counter("errors", "main", c.reason) < 1 {
					t.Fatalf("not counted under %s", c.reason)
				}
				if strings.Contains(rep.Error, testPrivateKey) {
					t.Fatal("the report holds the private key")
				}
			}
			// The app's back-off is the sweep's business; a test of the next case must
			// not wait for it.
			a := f.rec.apps[testAppKey]
			a.mu.Lock()
			a.paused, a.failures, a.stopped = time.Time{}, 0, ""
			a.mu.Unlock()
		})
	}
	if got := f.counter("checks", "main", "error"); got != 14 {
		t.Errorf("checks_total{result=error} = %v, want 14", got)
	}
	if got := f.counter("checks", "main", "not_found"); got != 1 {
		t.Errorf("checks_total{result=not_found} = %v, want 1", got)
	}
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.Message, e.ContextMap()), testPrivateKey) {
			t.Fatalf("the private key was logged: %v", e)
		}
	}
	if logs.FilterMessageSnippet("refused the private key").Len() < 2 {
		t.Error("401 and 403 are not said in the log")
	}
}

func status(code int) func(domain.ApplicantID) http.HandlerFunc {
	return func(domain.ApplicantID) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }
	}
}

// A reconciled event and a webhook of the same applicant racing each other end in the
// status of the later eventAt, whichever the log stores first.
func TestReconciledAndWebhookRace(t *testing.T) {
	f := newFixture(t, allpass.MethodCBC, Config{})
	for i := range 6 {
		id := newID()
		f.webhook(id, domain.EventInReview, past)
		f.api.set(id, domain.StatusApproved)
		// Even: the webhook is newer than the Open API's answer (a rejection after the
		// fetch); odd: it is an older retry.
		webhookAt := time.Now().Add(time.Hour)
		want := domain.StatusRejected
		if i%2 == 1 {
			webhookAt, want = past.Add(time.Minute), domain.StatusApproved
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if rep, err := f.rec.Check(context.Background(), id, CheckOptions{}); err != nil || rep.Action != ActionAppended {
				t.Errorf("check: %+v, %v", rep, err)
			}
		}()
		go func() {
			defer wg.Done()
			ev := domain.Event{Provider: allpass.Provider, Origin: domain.OriginWebhook, AppKey: testAppKey, ApplicantID: id,
				Type: domain.EventRejected, EventAt: webhookAt.UTC(), EventAtSource: domain.SourceEnvelopeTime,
				ReceivedAt: time.Now().UTC(), Payload: []byte(`{}`)}
			if _, _, err := f.events.Append(context.Background(), &ev, domain.NewUUID()); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		f.catchUp()
		if st := f.state(id); st.Status != want {
			t.Errorf("race %d: status %s, want %s (webhook at %s)", i, st.Status, want, webhookAt)
		}
	}
	// Rebuild and verify give the same digests as the live fold, reconciled events and
	// all.
	path := filepath.Join(t.TempDir(), "rebuilt.db")
	if err := projection.Rebuild(context.Background(), f.events, path, projection.RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	rebuilt, err := projection.Open(path, projection.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rebuilt.Close()
	live := map[domain.ApplicantKey]domain.Digest{}
	f.proj.Digests(func(id domain.ApplicantKey, d domain.Digest) error { live[id] = d; return nil })
	n := 0
	rebuilt.Digests(func(id domain.ApplicantKey, d domain.Digest) error {
		n++
		if live[id] != d {
			t.Errorf("applicant %s: rebuilt digest %s, live %s", id, d, live[id])
		}
		return nil
	})
	if n != len(live) || n != 6 {
		t.Fatalf("%d rebuilt, %d live", n, len(live))
	}
	res, err := projection.Verify(context.Background(), f.events, f.proj)
	if err != nil || len(res.Differences) != 0 {
		t.Fatalf("verify: %+v, %v", res, err)
	}
}
