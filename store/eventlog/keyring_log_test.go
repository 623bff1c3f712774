package eventlog

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go/jetstream"
)

// forge publishes data on subject straight into KYC_EVENTS, as any client that reaches
// NATS can, and returns its sequence.
func forge(tb testing.TB, l *EventLog, subject string, data []byte) uint64 {
	tb.Helper()
	js, err := jetstream.New(l.conn.NC)
	if err != nil {
		tb.Fatal(err)
	}
	ack, err := js.Publish(context.Background(), subject, data)
	if err != nil {
		tb.Fatalf("forged publish: %v", err)
	}
	return ack.Sequence
}

func verdicts(evs []domain.Event) []domain.Auth {
	out := make([]domain.Auth, len(evs))
	for i, ev := range evs {
		out[i] = ev.Auth
	}
	return out
}

// The log key is made by the first process that opens the ring, with since = the log's
// last sequence then: the events stored before it are unsigned and read as before; every
// event this build appends is signed; a forged event (no MAC, a wrong MAC, a genuine
// event's bytes on another applicant's subject, bytes that are no event at all, a clear
// event appended by a process without keys) fails. Read, Follow and Applicant all say so,
// and a second process reads the same key rather than making one.
func TestLogKeyVerdicts(t *testing.T) {
	c := natsStart(t, NATSConfig{SyncInterval: time.Minute})
	ctx := context.Background()
	legacy := logOpen(t, c, Config{}, nil) // written by a build without event MACs
	logAppend(t, legacy, logEvent(logApp(0), logApplicant(0), domain.EventCreated, 0))
	logAppend(t, legacy, logEvent(logApp(0), logApplicant(1), domain.EventCreated, 1))

	l := keyedLog(t, c, testMasterA)
	if got := l.Keys().logKey.since; got != 2 {
		t.Fatalf("log key since %d, want 2 (the log's last sequence when it was made)", got)
	}
	genuine := logEvent(logApp(0), logApplicant(0), domain.EventInProgress, 2)
	logAppend(t, l, genuine) // seq 3

	sub0, _ := Subject(logApp(0), logApplicant(0))
	sub1, _ := Subject(logApp(0), logApplicant(1))
	noMAC, err := appendStoredEvent(nil, logEvent(logApp(0), logApplicant(0), domain.EventApproved, 3))
	if err != nil {
		t.Fatal(err)
	}
	wrongMAC := bytes.Clone(genuine.Stored)
	wrongMAC[len(wrongMAC)-5] ^= 1
	if wrongMAC[len(wrongMAC)-5] == '=' || wrongMAC[len(wrongMAC)-5] == '"' {
		wrongMAC[len(wrongMAC)-5] = 'A'
	}
	tampered := bytes.Replace(genuine.Stored, []byte(domain.EventInProgress), []byte(domain.EventApproved), 1)
	forge(t, l, sub0, noMAC)                                                            // 4: no MAC after since
	forge(t, l, sub0, wrongMAC)                                                         // 5: a MAC that is not the log key's
	forge(t, l, sub1, genuine.Stored)                                                   // 6: a genuine event's bytes on another applicant's subject
	forge(t, l, sub0, tampered)                                                         // 7: a genuine MAC over other bytes
	forge(t, l, sub1, []byte("not an event"))                                           // 8: junk
	logAppend(t, legacy, logEvent(logApp(0), logApplicant(0), domain.EventRejected, 4)) // 9: clear, after since
	logAppend(t, l, logEvent(logApp(0), logApplicant(1), domain.EventInProgress, 5))    // 10

	want := []domain.Auth{domain.AuthUnsigned, domain.AuthUnsigned, domain.AuthSigned, domain.AuthFailed, domain.AuthFailed,
		domain.AuthFailed, domain.AuthFailed, domain.AuthFailed, domain.AuthFailed, domain.AuthSigned}
	evs := readAll(t, l)
	if got := verdicts(evs); !equalAuth(got, want) {
		t.Fatalf("Read verdicts %v, want %v", got, want)
	}
	// A failed event is the applicant's its subject names, whatever its body claims, and
	// one that is not an event at all is still delivered, with its address.
	if evs[5].ApplicantID != logApplicant(1) || evs[7].ApplicantID != logApplicant(1) || evs[7].AppKey != logApp(0) ||
		string(evs[7].Stored) != "not an event" || evs[7].Seq != 8 {
		t.Fatalf("failed events' addresses: %+v / %+v", evs[5], evs[7])
	}

	// A second process reads the key the first made.
	l2 := keyedLog(t, c, testMasterA)
	if l2.Keys().logKey.since != 2 {
		t.Fatalf("second process made its own log key: since %d", l2.Keys().logKey.since)
	}
	fctx, cancel := context.WithCancel(ctx)
	col := newLogCollector()
	done := make(chan error, 1)
	go func() { done <- l2.Follow(fctx, 1, 4, time.Millisecond, col.add) }()
	col.waitFor(t, len(want), 10*time.Second)
	cancel()
	<-done
	col.mu.Lock()
	followed := verdicts(col.events)
	col.mu.Unlock()
	if !equalAuth(followed, want) {
		t.Fatalf("Follow verdicts %v, want %v", followed, want)
	}
	one, err := l2.Applicant(ctx, logApp(0), logApplicant(1))
	if err != nil {
		t.Fatal(err)
	}
	if got := verdicts(one); !equalAuth(got, []domain.Auth{domain.AuthUnsigned, domain.AuthFailed, domain.AuthFailed, domain.AuthSigned}) {
		t.Fatalf("Applicant verdicts %v", got)
	}
}

func equalAuth(a, b []domain.Auth) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Processes that open the ring at once on a log without a log key agree on one: each
// signs what it appends and verifies what the others append.
func TestLogKeyConcurrentMakers(t *testing.T) {
	c := natsStart(t, NATSConfig{SyncInterval: time.Minute})
	const n = 4
	logs := make([]*EventLog, n)
	var wg sync.WaitGroup
	for i := range logs {
		wg.Go(func() { logs[i] = keyedLog(t, c, testMasterA) })
	}
	wg.Wait()
	for i, l := range logs {
		logAppend(t, l, logEvent(logApp(0), logApplicant(i), domain.EventCreated, i))
	}
	for i, l := range logs {
		for _, ev := range readAll(t, l) {
			if ev.Auth != domain.AuthSigned {
				t.Fatalf("process %d reads seq %d as %v: the processes made different log keys", i, ev.Seq, ev.Auth)
			}
		}
	}
}

// FuzzLogKeyVerdict: whatever the bytes, verdict does not panic; a message appendMAC
// signed verifies on its subject and fails on any other, and after any change of a byte.
func FuzzLogKeyVerdict(f *testing.F) {
	f.Add([]byte(`{"v":3,"type":"applicantCreated"}`), "kyc.events.allpass.a.b", 0, byte(1))
	f.Add([]byte(`}`), "", 0, byte(0))
	f.Add([]byte(`{"a":"b","mac":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`), "x", 3, byte(8))
	lk, err := newLogKey(bytes.Repeat([]byte{3}, 32), 5)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, subject string, pos int, flip byte) {
		lk.verdict(9, subject, data)
		if len(data) == 0 || data[len(data)-1] != '}' {
			return
		}
		signed := lk.appendMAC(subject, bytes.Clone(data))
		if v := lk.verdict(9, subject, signed); v != domain.AuthSigned {
			t.Fatalf("signed message verifies as %v: %q", v, signed)
		}
		if v := lk.verdict(9, subject+"x", signed); v != domain.AuthFailed {
			t.Fatalf("signed message verifies on another subject: %v", v)
		}
		if flip != 0 && len(signed) > 0 {
			i := ((pos % len(signed)) + len(signed)) % len(signed)
			changed := bytes.Clone(signed)
			changed[i] ^= flip
			if v := lk.verdict(9, subject, changed); v == domain.AuthSigned {
				t.Fatalf("a changed byte %d still verifies: %q", i, changed)
			}
		}
	})
}
