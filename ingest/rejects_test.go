package ingest

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"go.uber.org/zap"
)

// junkBody is an unsigned body of n bytes shaped like an envelope: refused 401.
func junkBody(n int) []byte {
	head, tail := `{"status":true,"statusCode":200,"time":"2026-03-01T10:00:00Z","data":"`, `"}`
	return []byte(head + strings.Repeat("0", n-len(head)-len(tail)) + tail)
}

// TestJunkCannotEvictAuthenticatedRejects: an app configured with the wrong app_key
// (its secrets right) refuses a genuine webhook 422; then 100 unsigned 1 MB bodies
// arrive, 100 MB against the stream's 64 MiB. The 422 is still kept whole under its
// applicant and, once the app_key is fixed, reprocessing recovers it; the junk is kept
// only as samples cut to 4 KiB, which reprocessing skips with a word for each (issue
// 21, point 3: before, junk pushed every earlier reject out).
func TestJunkCannotEvictAuthenticatedRejects(t *testing.T) {
	v := mustVectors(t)
	good, _ := mustApps(t, v)
	wrong := *good
	wrong.AppKey = "0b6c3c1e-58d4-4f61-9d7c-1f0e2d3c4b5a"
	e := newEnv(t, func(c *HandlerConfig) { c.Apps = []*allpass.App{&wrong} })

	body, sig := seal(t, good, payload(good, 7, "applicantApproved"), "2026-03-01T10:00:00Z")
	if a := e.post(t, "/webhooks/allpass/cbc", body, sig); a.status != http.StatusUnprocessableEntity || a.errCode != allpass.CodeInvalidPayload {
		t.Fatalf("under the wrong app_key: %d %s", a.status, a.raw)
	}
	junk := junkBody(1_000_000)
	start := time.Now()
	for i := range 100 {
		if a := e.post(t, "/webhooks/allpass/cbc", junk, fmt.Sprintf("%064x", i)); a.status != http.StatusUnauthorized {
			t.Fatalf("junk %d: %d %s", i, a.status, a.raw)
		}
	}

	rs := e.rejects(t)
	var auth []domain.Reject
	samples := 0
	for _, r := range rs {
		switch r.Kept {
		case domain.KeptAuthenticated:
			auth = append(auth, r)
		case domain.KeptSample:
			samples++
			if len(r.Body) != domain.SampleBodyMax || r.BodySize != len(junk) || !r.Truncated() || r.Reason != allpass.CodeBadSignature {
				t.Fatalf("sample %d: %d of %d bytes, %q", r.Seq, len(r.Body), r.BodySize, r.Reason)
			}
		default:
			t.Fatalf("reject %d kept as %q", r.Seq, r.Kept)
		}
	}
	if len(auth) != 1 {
		t.Fatalf("%d authenticated rejects, want the 422", len(auth))
	}
	r := auth[0]
	if r.Seq != 1 || r.Body != string(body) || r.Status != 422 || r.AppKey != wrong.AppKey ||
		r.ApplicantID != domain.ApplicantID(applicant(7)) || r.Provider != allpass.Provider || r.Headers[allpass.SignatureHeader] != sig {
		t.Fatalf("authenticated reject %+v", r)
	}
	if budget := sampleBurst + int(time.Since(start)/sampleEvery) + 1; samples < sampleBurst || samples > budget {
		t.Fatalf("%d samples of 100 junk bodies from one source, want its budget, %d to %d", samples, sampleBurst, budget)
	}
	if e.metric(t, "kycstate_ingest_reject_samples_dropped_total", nil) != float64(100-samples) {
		t.Fatalf("dropped samples %v, want %d", e.metric(t, "kycstate_ingest_reject_samples_dropped_total", nil), 100-samples)
	}

	var skipped []uint64
	res, err := Reprocess(context.Background(), e.events, ReprocessConfig{Apps: []*allpass.App{good}, Options: allpass.Options{KeepRaw: true},
		Logger: zap.NewNop(), Skipped: func(r domain.Reject) { skipped = append(skipped, r.Seq) }}, 1)
	if err != nil || res.Recovered != 1 || res.Truncated != samples || res.Failing != 0 || len(skipped) != samples {
		t.Fatalf("reprocess with the app_key fixed: %+v %v, %d skipped", res, err, len(skipped))
	}
	evs := e.logged(t)
	if len(evs) != 1 || evs[0].ApplicantID != domain.ApplicantID(applicant(7)) || evs[0].Type != "applicantApproved" {
		t.Fatalf("recovered %+v", evs)
	}
}

// TestRejectKinds: which refusals are kept whole under their applicant, which as
// samples, and which not at all.
func TestRejectKinds(t *testing.T) {
	e := newEnv(t)
	app := canonicalApp(e.cbc.AppKey)
	id := domain.ApplicantID(applicant(3))
	sealed := func(mutate func(map[string]any)) func() ([]byte, string) {
		return func() ([]byte, string) {
			p := payload(e.cbc, 3, "applicantCreated")
			mutate(p)
			return seal(t, e.cbc, p, "2026-03-01T10:00:00Z")
		}
	}
	cases := []struct {
		name      string
		make      func() ([]byte, string)
		status    int
		kept      string
		applicant domain.ApplicantID
	}{
		{"bad signature", func() ([]byte, string) { b, _ := sealed(func(map[string]any) {})(); return b, "00" }, 401, domain.KeptSample, ""},
		{"malformed envelope", func() ([]byte, string) { return []byte("{"), "00" }, 400, domain.KeptSample, ""},
		{"type missing", sealed(func(p map[string]any) { delete(p, "type") }), 422, domain.KeptAuthenticated, id},
		{"appKey of another app", sealed(func(p map[string]any) { p["appKey"] = "0b6c3c1e-58d4-4f61-9d7c-1f0e2d3c4b5a" }), 422, domain.KeptAuthenticated, id},
		{"id not a UUID", sealed(func(p map[string]any) { p["id"] = "a.b" }), 422, domain.KeptAuthenticated, ""},
		{"id upper case", sealed(func(p map[string]any) { p["id"] = strings.ToUpper(applicant(3)); delete(p, "type") }), 422, domain.KeptAuthenticated, id},
		{"too large", func() ([]byte, string) { return junkBody(2 << 20), "00" }, 413, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(e.rejects(t))
			body, sig := c.make()
			a := e.post(t, "/webhooks/allpass/cbc", body, sig)
			if a.status != c.status {
				t.Fatalf("status %d %s, want %d", a.status, a.raw, c.status)
			}
			rs := e.rejects(t)[before:]
			if c.kept == "" {
				if len(rs) != 0 {
					t.Fatalf("kept %+v", rs)
				}
				return
			}
			if len(rs) != 1 {
				t.Fatalf("%d rejects kept", len(rs))
			}
			r := rs[0]
			if r.Kept != c.kept || r.ApplicantID != c.applicant || r.Body != string(body) {
				t.Fatalf("kept %q applicant %q body %d bytes; want %q %q", r.Kept, r.ApplicantID, len(r.Body), c.kept, c.applicant)
			}
			if c.kept == domain.KeptAuthenticated && (r.AppKey != app || r.Provider != allpass.Provider) {
				t.Fatalf("authenticated reject placed at %q %q", r.Provider, r.AppKey)
			}
			if c.kept == domain.KeptSample && (r.AppKey != "" || r.BodySize != len(body)) {
				t.Fatalf("sample %+v", r)
			}
		})
	}
}

// TestSampler: a source's budget is sampleBurst at once and one a second after; all
// sources together share the node's; the sources tracked stay bounded.
func TestSampler(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	s := newSampler()
	n := 0
	for s.allow("a", now) {
		n++
		if n > 1000 {
			t.Fatal("no bound")
		}
	}
	if n != sampleBurst {
		t.Fatalf("burst %d, want %d", n, sampleBurst)
	}
	if !s.allow("b", now) {
		t.Fatal("another source has its own budget")
	}
	if s.allow("a", now.Add(sampleEvery/2)) || !s.allow("a", now.Add(sampleEvery)) || s.allow("a", now.Add(sampleEvery)) {
		t.Fatal("a source's budget does not refill at one per sampleEvery")
	}

	// Many sources at once: the node's budget bounds them.
	s = newSampler()
	kept := 0
	for i := range 10 * globalBurst {
		if s.allow(fmt.Sprintf("10.0.%d.%d", i/256, i%256), now) {
			kept++
		}
	}
	if kept != globalBurst {
		t.Fatalf("%d kept at once across sources, want the node's burst %d", kept, globalBurst)
	}
	for i := range 3 * sampleSources {
		s.allow(fmt.Sprintf("src-%d", i), now.Add(time.Duration(i)*globalEvery))
	}
	if len(s.source) > sampleSources+1 {
		t.Fatalf("%d sources tracked, bound %d", len(s.source), sampleSources)
	}
}

// TestHostileSampleStaysInItsBound: a request built to make its sample as large as it
// can (a 1 MB body of bytes JSON escapes six-fold or cannot hold, every kept header
// 16 KiB of the same) is still kept, cut: its body to domain.SampleBodyMax, its headers
// to sampleHeaderMax, under the store's bound for one sample, and nothing is logged as
// not kept.
func TestHostileSampleStaysInItsBound(t *testing.T) {
	e := newEnv(t)
	body := []byte(strings.Repeat("<\xff\"\u2028", 1_000_000/7))
	hostile := strings.Repeat("<", 16<<10)
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/webhooks/allpass/cbc", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range keptHeaders {
		req.Header.Set(h, hostile)
	}
	if a := e.do(t, req); a.status != http.StatusBadRequest && a.status != http.StatusUnauthorized {
		t.Fatalf("hostile request: %d %s", a.status, a.raw)
	}
	rs := e.rejects(t)
	if len(rs) != 1 {
		t.Fatalf("%d rejects kept; want the sample", len(rs))
	}
	r := rs[0]
	if r.Kept != domain.KeptSample || r.Body != string(body[:domain.SampleBodyMax]) || r.BodySize != len(body) || len(r.Headers) != len(keptHeaders) {
		t.Fatalf("sample kept as %q, %d of %d bytes, %d headers", r.Kept, len(r.Body), r.BodySize, len(r.Headers))
	}
	for k, v := range r.Headers {
		if v != hostile[:sampleHeaderMax] {
			t.Fatalf("header %s kept %d bytes", k, len(v))
		}
	}
	if n := e.logs.FilterMessage("reject not kept").Len(); n != 0 {
		t.Fatalf("%d rejects not kept", n)
	}
}
