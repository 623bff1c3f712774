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

func logReject(n int, reason string) domain.Reject {
	return domain.Reject{
		App:        "main",
		Reason:     reason,
		Message:    fmt.Sprintf("refusal %d", n),
		Status:     401,
		Body:       fmt.Sprintf(`{"status":true,"statusCode":200,"data":"%064x","time":"2025-03-01T09:00:00Z"}`, n),
		Headers:    map[string]string{"x-allpass-signature": fmt.Sprintf("%064x", n+1), "content-type": "application/json"},
		RemoteAddr: "192.0.2.7:41234",
		ReceivedAt: time.Date(2025, 3, 1, 9, 0, n, 0, time.UTC),
	}
}

func TestRejectsRoundTrip(t *testing.T) {
	l := startLogFast(t)
	ctx := context.Background()

	var want []domain.Reject
	for i, reason := range []string{"bad_signature", "Malformed.Envelope", "a>b*c d", "", "unprocessable"} {
		r := logReject(i, reason)
		if i == 2 {
			r.Body = "\xff\xfe binary \x00 body" // not UTF-8: must come back byte for byte
		}
		if i == 3 {
			r.Headers = nil
			r.App = ""
		}
		r.Seq = 999 // ignored: the stream assigns sequences
		if err := l.Reject(ctx, r); err != nil {
			t.Fatalf("Reject %d: %v", i, err)
		}
		r.Seq = uint64(i + 1)
		want = append(want, r)
	}

	var got []domain.Reject
	if err := l.Rejects(ctx, 1, func(r domain.Reject) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d rejects, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("reject %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}

	// Subjects carry only the sanitised reason.
	for seq, subject := range map[uint64]string{
		1: "kyc.rejects.bad_signature",
		2: "kyc.rejects.malformed_envelope",
		3: "kyc.rejects.a_b_c_d",
		4: "kyc.rejects.unknown",
	} {
		m, err := l.rejects.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != subject {
			t.Errorf("seq %d subject %q, want %q", seq, m.Subject, subject)
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

func TestRejectSubjectSanitises(t *testing.T) {
	for in, want := range map[string]string{
		"bad_signature":          "kyc.rejects.bad_signature",
		"BAD-Signature":          "kyc.rejects.bad_signature",
		"":                       "kyc.rejects.unknown",
		"a.b.>":                  "kyc.rejects.a_b__",
		"*":                      "kyc.rejects._",
		"\x00\r\n":               "kyc.rejects.___",
		"é":                      "kyc.rejects.__",
		strings.Repeat("x", 100): "kyc.rejects." + strings.Repeat("x", 64),
	} {
		if got := RejectSubject(in); got != want {
			t.Errorf("RejectSubject(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzRejectSubject(f *testing.F) {
	f.Add("bad_signature")
	f.Add("a.b>*")
	f.Fuzz(func(t *testing.T, reason string) {
		s := RejectSubject(reason)
		token, ok := strings.CutPrefix(s, "kyc.rejects.")
		if !ok || token == "" || len(token) > maxReasonLen {
			t.Fatalf("RejectSubject(%q) = %q", reason, s)
		}
		for _, c := range []byte(token) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
				t.Fatalf("RejectSubject(%q) = %q", reason, s)
			}
		}
	})
}

func TestRejectsAreSizeBoundedOldestFirst(t *testing.T) {
	c := natsStart(t, NATSConfig{SyncInterval: time.Minute})
	l := logOpen(t, c, Config{RejectsMaxBytes: 64 << 10}, nil)
	ctx := context.Background()
	const n = 100
	for i := range n {
		r := logReject(i, "bad_signature")
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
	err := l.Reject(rctx, logReject(1, "bad_signature"))
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
