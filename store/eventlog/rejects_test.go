package eventlog

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// logReject is an authenticated reject of applicant n of app 1.
func logReject(n int, reason string) domain.Reject {
	return domain.Reject{
		App:         "main",
		Reason:      reason,
		Message:     fmt.Sprintf("refusal %d", n),
		Status:      422,
		Body:        fmt.Sprintf(`{"status":true,"statusCode":200,"data":"%064x","time":"2025-03-01T09:00:00Z"}`, n),
		Headers:     map[string]string{"x-allpass-signature": fmt.Sprintf("%064x", n+1), "content-type": "application/json"},
		RemoteAddr:  "192.0.2.7:41234",
		ReceivedAt:  time.Date(2025, 3, 1, 9, 0, n, 0, time.UTC),
		Kept:        domain.KeptAuthenticated,
		Provider:    "allpass",
		AppKey:      logApp(1),
		ApplicantID: logApplicant(n),
	}
}

// logSample is a sample of an unauthenticated request from remote, its body cut to
// the sample size.
func logSample(n int, remote string, body string) domain.Reject {
	size := len(body)
	if len(body) > domain.SampleBodyMax {
		body = body[:domain.SampleBodyMax]
	}
	return domain.Reject{
		App: "main", Reason: "bad_signature", Message: fmt.Sprintf("sample %d", n), Status: 401,
		Body: body, Headers: map[string]string{"x-allpass-signature": "00"},
		RemoteAddr: remote, ReceivedAt: time.Date(2025, 3, 1, 9, 0, 0, n, time.UTC),
		Kept: domain.KeptSample, BodySize: size,
	}
}

// readRejects lists every reject kept.
func readRejects(tb testing.TB, l *EventLog) []domain.Reject {
	tb.Helper()
	var got []domain.Reject
	if err := l.Rejects(context.Background(), 1, func(r domain.Reject) error { got = append(got, r); return nil }); err != nil {
		tb.Fatal(err)
	}
	return got
}

func TestRejectsRoundTrip(t *testing.T) {
	l := startLogFast(t)
	ctx := context.Background()

	var want []domain.Reject
	for i := range 5 {
		r := logReject(i, "invalid_payload")
		switch i {
		case 1:
			r.ApplicantID = "" // the payload named no valid applicant
		case 2:
			r.Body = "\xff\xfe binary \x00 body" // not UTF-8: must come back byte for byte
		case 3:
			r = logSample(i, "198.51.100.9:5000", "<html>&"+strings.Repeat("\x01", 10)+"\xff")
			r.Headers = nil
			r.App = ""
		case 4:
			r = logSample(i, "198.51.100.9:5001", strings.Repeat("j", 3*domain.SampleBodyMax))
		}
		r.Seq = 999 // ignored: the stream assigns sequences
		if err := l.Reject(ctx, r); err != nil {
			t.Fatalf("Reject %d: %v", i, err)
		}
		r.Seq = uint64(i + 1)
		want = append(want, r)
	}

	got := readRejects(t, l)
	if len(got) != len(want) {
		t.Fatalf("got %d rejects, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("reject %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	if got[3].Truncated() || !got[4].Truncated() || got[0].Truncated() {
		t.Fatalf("truncated: %v %v %v", got[0].Truncated(), got[3].Truncated(), got[4].Truncated())
	}

	// Authenticated rejects are on their applicant's subject, samples in the ring.
	for seq, subject := range map[uint64]string{
		1: "kyc.rejects.auth.allpass." + string(logApp(1)) + "." + string(logApplicant(0)),
		2: "kyc.rejects.auth.allpass." + string(logApp(1)) + ".none",
		3: "kyc.rejects.auth.allpass." + string(logApp(1)) + "." + string(logApplicant(2)),
	} {
		m, err := l.rejects.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != subject {
			t.Errorf("seq %d subject %q, want %q", seq, m.Subject, subject)
		}
	}
	for _, seq := range []uint64{4, 5} {
		m, err := l.rejects.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		p, err := ParseRejectSubject(m.Subject)
		if err != nil || p.Kept != domain.KeptSample {
			t.Errorf("seq %d subject %q: %+v %v", seq, m.Subject, p, err)
		}
	}

	// From a later sequence, and past the end.
	got = nil
	if err := l.Rejects(ctx, 4, func(r domain.Reject) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Seq != 4 || got[1].Seq != 5 {
		t.Fatalf("from 4: %+v", got)
	}
	calls := 0
	if err := l.Rejects(ctx, 6, func(domain.Reject) error { calls++; return nil }); err != nil || calls != 0 {
		t.Fatalf("past the end: %d calls, %v", calls, err)
	}

	stop := errors.New("stop")
	calls = 0
	err := l.Rejects(ctx, 1, func(domain.Reject) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Fatalf("fn error: %v after %d calls", err, calls)
	}
}

// TestRejectRefusesWhatItCannotPlace: a reject that says neither kind, or whose ids
// would not make subject tokens, is refused before anything is published, as is a
// sample over its size bound.
func TestRejectRefusesWhatItCannotPlace(t *testing.T) {
	l := startLogFast(t)
	ctx := context.Background()
	bad := []struct {
		name string
		r    func() domain.Reject
		kind domain.ErrorKind
	}{
		{"no kind", func() domain.Reject { r := logReject(1, "x"); r.Kept = ""; return r }, domain.KindInvalid},
		{"unknown kind", func() domain.Reject { r := logReject(1, "x"); r.Kept = "other"; return r }, domain.KindInvalid},
		{"app with dot", func() domain.Reject { r := logReject(1, "x"); r.AppKey = "a.b"; return r }, domain.KindInvalid},
		{"applicant wildcard", func() domain.Reject { r := logReject(1, "x"); r.ApplicantID = ">"; return r }, domain.KindInvalid},
		{"applicant upper case", func() domain.Reject {
			r := logReject(1, "x")
			r.ApplicantID = domain.ApplicantID(strings.ToUpper(string(r.ApplicantID)))
			return r
		}, domain.KindInvalid},
		{"provider with dot", func() domain.Reject { r := logReject(1, "x"); r.Provider = "all.pass"; return r }, domain.KindInvalid},
		{"no provider", func() domain.Reject { r := logReject(1, "x"); r.Provider = ""; return r }, domain.KindInvalid},
		{"sample too large", func() domain.Reject {
			r := logSample(1, "192.0.2.1:1", "x")
			r.Headers = map[string]string{"x-allpass-signature": strings.Repeat("<", MaxSampleBytes)}
			return r
		}, domain.KindTooLarge},
	}
	for _, c := range bad {
		if err := l.Reject(ctx, c.r()); domain.KindOf(err) != c.kind {
			t.Errorf("%s: %v, want %v", c.name, err, c.kind)
		}
	}
	if got := readRejects(t, l); len(got) != 0 {
		t.Fatalf("%d rejects kept", len(got))
	}
}

func TestRejectSubjects(t *testing.T) {
	app, id := logApp(1), logApplicant(1)
	good := map[string]RejectPlace{
		"kyc.rejects.auth.allpass." + string(app) + "." + string(id): {Kept: domain.KeptAuthenticated, Provider: "allpass", AppKey: app, ApplicantID: id},
		"kyc.rejects.auth.onfido2." + string(app) + ".none":          {Kept: domain.KeptAuthenticated, Provider: "onfido2", AppKey: app},
		// Another provider's (DESIGN.md section 13): its app's name and its own id.
		"kyc.rejects.auth.sumsub.ss.65f1c2a9e4b0a1b2c3d4e5f6": {Kept: domain.KeptAuthenticated, Provider: "sumsub", AppKey: "ss", ApplicantID: "65f1c2a9e4b0a1b2c3d4e5f6"},
		"kyc.rejects.auth.persona.pa_1.none":                  {Kept: domain.KeptAuthenticated, Provider: "persona", AppKey: "pa_1"},
		"kyc.rejects.unauth.0.0":                              {Kept: domain.KeptSample},
		"kyc.rejects.unauth.15.63":                            {Kept: domain.KeptSample, Bucket: 15, Slot: 63},
		"kyc.rejects.bad_signature":                           {Reason: "bad_signature"},
		"kyc.rejects.unknown":                                 {Reason: "unknown"},
	}
	for subject, want := range good {
		got, err := ParseRejectSubject(subject)
		if err != nil || got != want {
			t.Errorf("ParseRejectSubject(%q) = %+v, %v; want %+v", subject, got, err, want)
		}
		if s, err := want.Subject(); err != nil || s != subject {
			t.Errorf("%+v.Subject() = %q, %v", want, s, err)
		}
	}
	for _, subject := range []string{
		"", "kyc.rejects.", "kyc.rejects.auth", "kyc.rejects.unauth", "kyc.events.x", "kyc.rejects.Bad",
		"kyc.rejects.auth.allpass." + string(app),
		"kyc.rejects.auth.allpass." + string(app) + "." + strings.ToUpper(string(id)),
		"kyc.rejects.auth.allpass." + string(app) + ".*",
		"kyc.rejects.auth.all_pass." + string(app) + ".none",
		"kyc.rejects.auth.allpass." + string(app) + "." + string(id) + ".x",
		"kyc.rejects.auth.allpass.ss.65f1c2a9e4b0a1b2c3d4e5f6", // Allpass's ids are UUIDs
		"kyc.rejects.auth.sumsub.s+s.abc", "kyc.rejects.auth.sumsub.ss.a=b",
		"kyc.rejects.auth.sumsub.ss." + strings.Repeat("a", 65),
		"kyc.rejects.unauth.16.0", "kyc.rejects.unauth.0.64", "kyc.rejects.unauth.01.0",
		"kyc.rejects.unauth.-1.0", "kyc.rejects.unauth.+1.0", "kyc.rejects.unauth.0",
		"kyc.rejects.unauth.a.b", "kyc.rejects.a.b", "kyc.rejects." + strings.Repeat("x", 65),
	} {
		if p, err := ParseRejectSubject(subject); domain.KindOf(err) != domain.KindInvalid {
			t.Errorf("ParseRejectSubject(%q) = %+v, %v; want KindInvalid", subject, p, err)
		}
	}
}

// FuzzParseRejectSubject: whatever the subject, the parser does not panic, and what it
// accepts is exactly what RejectPlace.Subject makes of the result, with no wildcard and
// no empty token.
func FuzzParseRejectSubject(f *testing.F) {
	f.Add("kyc.rejects.auth.allpass." + string(logApp(1)) + "." + string(logApplicant(1)))
	f.Add("kyc.rejects.auth.allpass." + string(logApp(1)) + ".none")
	f.Add("kyc.rejects.unauth.3.12")
	f.Add("kyc.rejects.bad_signature")
	f.Add("kyc.rejects.unauth.03.1")
	f.Add("kyc.rejects.auth.persona.pa.inq_Abc-9")
	f.Fuzz(func(t *testing.T, subject string) {
		p, err := ParseRejectSubject(subject)
		if err != nil {
			if domain.KindOf(err) != domain.KindInvalid {
				t.Fatalf("kind %v", domain.KindOf(err))
			}
			return
		}
		s, err := p.Subject()
		if err != nil || s != subject {
			t.Fatalf("%q parsed to %+v, which makes %q, %v", subject, p, s, err)
		}
		if strings.ContainsAny(subject, "*> \t\r\n") || strings.Contains(subject, "..") || strings.HasSuffix(subject, ".") {
			t.Fatalf("accepted %q", subject)
		}
	})
}

func TestRejectsAreSizeBoundedOldestFirst(t *testing.T) {
	c := natsStart(t, NATSConfig{SyncInterval: time.Minute})
	l := logOpen(t, c, Config{RejectsMaxBytes: 64 << 10}, nil)
	ctx := context.Background()
	const n = 100
	for i := range n {
		r := logReject(i, "invalid_payload")
		r.Body = strings.Repeat("b", 2000) // ~2 KiB each: 100 of them overflow 64 KiB
		if err := l.Reject(ctx, r); err != nil {
			t.Fatalf("Reject %d: %v", i, err)
		}
	}
	var seqs []uint64
	if err := l.Rejects(ctx, 1, func(r domain.Reject) error {
		if r.Message != fmt.Sprintf("refusal %d", r.Seq-1) {
			t.Fatalf("seq %d holds %q", r.Seq, r.Message)
		}
		seqs = append(seqs, r.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seqs) == 0 || len(seqs) >= n {
		t.Fatalf("kept %d of %d rejects; want the bound to drop some", len(seqs), n)
	}
	// The newest are kept, contiguous up to the last.
	for i, s := range seqs {
		if want := uint64(n - len(seqs) + 1 + i); s != want {
			t.Fatalf("kept seqs %v; want the newest %d", seqs, len(seqs))
		}
	}
}

func TestRejectWhenServerIsDownIsUnavailable(t *testing.T) {
	c := natsStart(t, NATSConfig{})
	l := logOpen(t, c, Config{}, nil)
	c.Server().Shutdown()
	c.Server().WaitForShutdown()
	rctx, rcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer rcancel()
	err := l.Reject(rctx, logReject(1, "invalid_payload"))
	if domain.KindOf(err) != domain.KindUnavailable {
		t.Fatalf("Reject with the server down: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = l.Rejects(ctx, 1, func(domain.Reject) error { return nil })
	if domain.KindOf(err) != domain.KindUnavailable {
		t.Fatalf("Rejects with the server down: %v", err)
	}
}

func FuzzDecodeReject(f *testing.F) {
	f.Add([]byte(`{"app":"main","reason":"bad_signature","status":401,"body":"{}","headers":{"content-type":"application/json"},"receivedAt":"2025-03-01T09:00:00Z"}`))
	f.Add([]byte(`{"body":"","bodyBase64":"//79"}`))
	f.Add([]byte(`{"bodyBase64":"%%%"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeReject(3, data)
		if err != nil {
			if domain.KindOf(err) != domain.KindInternal {
				t.Fatalf("kind %v", domain.KindOf(err))
			}
			return
		}
		if r.Seq != 3 {
			t.Fatalf("seq %d", r.Seq)
		}
	})
}

func TestSampleSlots(t *testing.T) {
	for _, c := range []struct {
		maxBytes int64
		want     int
	}{
		{1 << 10, 1},
		{1 << 20, 1},
		{4 << 20, 4},
		{DefaultRejectsMaxBytes, MaxSampleSlots},
		{1 << 40, MaxSampleSlots},
	} {
		got := sampleSlots(c.maxBytes)
		if got != c.want {
			t.Errorf("sampleSlots(%d) = %d, want %d", c.maxBytes, got, c.want)
		}
		if share := int64(SampleBuckets * got * MaxSampleBytes); got > 1 && share > c.maxBytes/4 {
			t.Errorf("share %d of a %d-byte stream is over a quarter", share, c.maxBytes)
		}
	}
}

// FuzzSamplePlace: whatever a request's remote address (the one input of a sample's
// place), the sample goes to a valid ring subject that ParseRejectSubject reads back.
func FuzzSamplePlace(f *testing.F) {
	f.Add("192.0.2.1:1234")
	f.Add("[2001:db8::1]:443")
	f.Add("")
	f.Add("*.>:\x00")
	ring := newSampleRing(sampleSlots(DefaultRejectsMaxBytes))
	f.Fuzz(func(t *testing.T, remote string) {
		p := ring.place(remote)
		s, err := p.Subject()
		if err != nil {
			t.Fatalf("%q placed at %+v: %v", remote, p, err)
		}
		if q, err := ParseRejectSubject(s); err != nil || q != p {
			t.Fatalf("%q placed at %s, read back as %+v, %v", remote, s, q, err)
		}
	})
}
