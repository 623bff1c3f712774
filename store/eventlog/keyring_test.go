package eventlog

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go/jetstream"
)

func mustMaster(tb testing.TB, s string) MasterKey {
	tb.Helper()
	m, err := ParseMasterKey(s)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

var (
	testMasterA = strings.Repeat("a1", 32)
	testMasterB = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xb2}, 32))
)

// keyedLog opens an event log with the key ring over c, under master (and previous).
func keyedLog(tb testing.TB, c *Conn, master string, previous ...string) *EventLog {
	tb.Helper()
	keys := &MasterKeys{Current: mustMaster(tb, master)}
	for _, p := range previous {
		keys.Previous = append(keys.Previous, mustMaster(tb, p))
	}
	return logOpen(tb, c, Config{Keys: keys}, nil)
}

func readAll(tb testing.TB, l *EventLog) []domain.Event {
	tb.Helper()
	var out []domain.Event
	if err := l.Read(context.Background(), 1, 100, func(evs []domain.Event) error {
		out = append(out, evs...)
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	return out
}

func TestParseMasterKey(t *testing.T) {
	for _, s := range []string{testMasterA, testMasterB, strings.TrimRight(testMasterB, "=")} {
		if _, err := ParseMasterKey(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	for _, s := range []string{"", "abc", strings.Repeat("a", 63), base64.StdEncoding.EncodeToString(make([]byte, 16))} {
		_, err := ParseMasterKey(s)
		if err == nil {
			t.Errorf("%q accepted", s)
		} else if strings.Contains(err.Error(), s) && s != "" {
			t.Errorf("error %q echoes the value", err)
		}
	}
	if mustMaster(t, testMasterA).ID() == mustMaster(t, testMasterB).ID() {
		t.Error("two keys, one id")
	}
}

// Concurrent first events of one applicant, through two processes' rings, agree on one
// key: each event opens under either ring, and KYC_KEYS holds one key for it.
func TestConcurrentFirstEventsAgreeOnOneKey(t *testing.T) {
	c := natsStart(t, NATSConfig{SyncInterval: time.Minute})
	l1, l2 := keyedLog(t, c, testMasterA), keyedLog(t, c, testMasterA)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range 2 * n {
		l := l1
		if i%2 == 1 {
			l = l2
		}
		wg.Go(func() {
			ev := logEvent(logApp(0), logApplicant(7), domain.EventStepPassed, i)
			if _, _, err := l.Append(context.Background(), ev, logMsgID(ev)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, l := range []*EventLog{l1, l2} {
		l.Keys().cache.drop("kyc.keys.app." + string(logApp(0)) + "." + string(logApplicant(7)))
		for _, ev := range readAll(t, l1) {
			full, _ := DecodeEvent(ev.Seq, ev.Stored)
			if err := l.Keys().Open(context.Background(), &full); err != nil {
				t.Fatalf("seq %d: %v", ev.Seq, err)
			}
		}
	}
	info, err := l1.Keys().stream.Info(context.Background(), jetstream.WithSubjectFilter("kyc.keys.app.>"))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.State.Subjects) != 1 {
		t.Fatalf("KYC_KEYS subjects %v", info.State.Subjects)
	}
	for subj, n := range info.State.Subjects {
		if n != 1 {
			t.Fatalf("%s holds %d keys for one applicant", subj, n)
		}
	}
}

// A master key that is not the ring's is refused at open with an error naming
// keys.master; a rotated one opens with the old key in keys.previous, and after Rewrap
// without it.
func TestMasterKeyWrongAndRotated(t *testing.T) {
	c := natsStart(t, NATSConfig{SyncInterval: time.Minute})
	ctx := context.Background()
	la := keyedLog(t, c, testMasterA)
	logAppend(t, la, logEvent(logApp(0), logApplicant(0), domain.EventCreated, 0))

	_, err := Open(ctx, c, Config{Keys: &MasterKeys{Current: mustMaster(t, testMasterB)}}, nil)
	if domain.KindOf(err) != domain.KindConflict || !strings.Contains(err.Error(), "keys.master") {
		t.Fatalf("wrong master: %v", err)
	}
	if _, err := Open(ctx, c, Config{}, nil); err != nil {
		t.Fatalf("no keys at all still opens the log (clear): %v", err)
	}

	lb := keyedLog(t, c, testMasterB, testMasterA)
	ev, _ := DecodeEvent(1, readAll(t, lb)[0].Stored)
	if err := lb.Keys().Open(ctx, &ev); err != nil || ev.ExternalUserID == "" {
		t.Fatalf("rotated, old key in previous: %v", err)
	}
	n, err := lb.Keys().Rewrap(ctx)
	if err != nil || n != 3 { // the applicant's key, the index key and the log key
		t.Fatalf("Rewrap = %d, %v", n, err)
	}
	if n, err := lb.Keys().Rewrap(ctx); err != nil || n != 0 {
		t.Fatalf("second Rewrap = %d, %v", n, err)
	}
	lb2 := keyedLog(t, c, testMasterB)
	ev, _ = DecodeEvent(1, readAll(t, lb2)[0].Stored)
	if err := lb2.Keys().Open(ctx, &ev); err != nil || ev.ExternalUserID == "" {
		t.Fatalf("after rewrap, new key alone: %v", err)
	}
	if lb2.Keys().Index(ev.AppKey, ev.ExternalUserID) != la.Keys().Index(ev.AppKey, ev.ExternalUserID) {
		t.Fatal("the blind index changed with the master key")
	}
	if got := readAll(t, lb2)[0]; got.Auth != domain.AuthSigned {
		t.Fatalf("after rewrap the log key no longer verifies the event: %v", got.Auth)
	}
	if _, err := Open(ctx, c, Config{Keys: &MasterKeys{Current: mustMaster(t, testMasterA)}}, nil); domain.KindOf(err) != domain.KindConflict {
		t.Fatalf("old master after rewrap: %v", err)
	}
}

// TestMasterKeySessionKey: the console's session key is the same for the same master key
// however it is written, differs between master keys, is 32 bytes, is not the master key
// itself, and a caller cannot change it.
func TestMasterKeySessionKey(t *testing.T) {
	raw := bytes.Repeat([]byte{7}, 32)
	a, err := ParseMasterKey(hex.EncodeToString(raw))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseMasterKey(base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		t.Fatal(err)
	}
	other, err := ParseMasterKey(NewMasterKeyHex())
	if err != nil {
		t.Fatal(err)
	}
	ka := a.SessionKey()
	if len(ka) != 32 || !bytes.Equal(ka, b.SessionKey()) {
		t.Fatalf("session keys of one master key: %x and %x", ka, b.SessionKey())
	}
	if bytes.Equal(ka, other.SessionKey()) || bytes.Equal(ka, raw) {
		t.Fatal("the session key is another master key's, or the master key itself")
	}
	ka[0] ^= 0xff
	if bytes.Equal(ka, a.SessionKey()) {
		t.Fatal("changing the returned key changed the master key's")
	}
}
