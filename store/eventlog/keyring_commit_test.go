package eventlog

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go/jetstream"
)

// TestNewKeysGroupCommitted: the keys asked for while a write of keys is in flight are
// written together, as one atomic batch, one key per applicant however many of its first
// events arrive at once; each event is sealed under its applicant's stored key, and none
// is sealed before its key is stored.
func TestNewKeysGroupCommitted(t *testing.T) {
	c := natsStart(t, NATSConfig{})
	l := keyedLog(t, c, testMasterA)
	k := l.Keys()
	if !k.atomic {
		t.Fatal("a new KYC_KEYS does not allow atomic batches")
	}
	var (
		mu     sync.Mutex
		writes []int
		hold   = make(chan struct{})
		held   = make(chan struct{})
	)
	k.beforeWrite = func(n int) {
		mu.Lock()
		writes = append(writes, n)
		first := len(writes) == 1
		mu.Unlock()
		if first {
			close(held)
			<-hold
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const applicants = 2 * MinAtomicBatch
	var wg sync.WaitGroup
	errs := make(chan error, 2*applicants+1)
	appendOne := func(a, n int) {
		ev := logEvent(logApp(0), logApplicant(a), domain.EventCreated, n)
		if _, _, err := l.Append(ctx, ev, logMsgID(ev)); err != nil {
			errs <- err
		}
	}
	wg.Go(func() { appendOne(0, 0) }) // the writer, held in its write
	<-held
	for a := 1; a <= applicants; a++ {
		wg.Go(func() { appendOne(a, a) })
		wg.Go(func() { appendOne(a, 1000+a) }) // a second first event of the same applicant
	}
	// Every new applicant's key queued (callers of one subject wait for one call).
	for deadline := time.Now().Add(20 * time.Second); ; {
		k.commit.mu.Lock()
		n := len(k.commit.queue)
		k.commit.mu.Unlock()
		if n == applicants {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d keys queued, want %d", n, applicants)
		}
		time.Sleep(time.Millisecond)
	}
	if last, _ := l.LastSeq(ctx); last != 0 {
		t.Fatalf("an event was stored (last seq %d) while its key's write was held", last)
	}
	close(hold)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	mu.Lock()
	if len(writes) != 2 || writes[0] != 1 || writes[1] != applicants {
		t.Fatalf("key writes %v, want [1 %d]: the keys asked for meanwhile in one write", writes, applicants)
	}
	mu.Unlock()

	info, err := k.stream.Info(ctx, jetstream.WithSubjectFilter("kyc.keys.app.>"))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.State.Subjects) != applicants+1 {
		t.Fatalf("KYC_KEYS holds keys of %d applicants, want %d", len(info.State.Subjects), applicants+1)
	}
	for subj, n := range info.State.Subjects {
		if n != 1 {
			t.Fatalf("%s holds %d keys for one applicant", subj, n)
		}
	}
	batched := 0
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := k.stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(headerBatchID) != "" {
			batched++
		}
	}
	if batched != applicants {
		t.Fatalf("%d keys written in an atomic batch, want %d", batched, applicants)
	}
	// Every event opens under its applicant's key as stored, read afresh.
	fresh := keyedLog(t, c, testMasterA)
	evs := readAll(t, l)
	if len(evs) != 2*applicants+1 {
		t.Fatalf("%d events stored, want %d", len(evs), 2*applicants+1)
	}
	for _, ev := range evs {
		full, err := DecodeEvent(ev.Seq, ev.Stored)
		if err != nil {
			t.Fatal(err)
		}
		if err := fresh.Keys().Open(ctx, &full); err != nil || full.ExternalUserID == "" {
			t.Fatalf("seq %d does not open under its applicant's stored key: %v", ev.Seq, err)
		}
	}
}

// TestNewKeyRaceAcrossProcesses: a key made by two rings at once (two ingest nodes) is
// the one stored first; the other ring's batch, refused whole, falls back key by key and
// reads the winner's back, and its other new keys are stored.
func TestNewKeyRaceAcrossProcesses(t *testing.T) {
	c := natsStart(t, NATSConfig{SyncInterval: time.Minute})
	l1, l2 := keyedLog(t, c, testMasterA), keyedLog(t, c, testMasterA)
	ctx := context.Background()
	// l1 stores applicant 5's key first.
	ev := logEvent(logApp(0), logApplicant(5), domain.EventCreated, 0)
	logAppend(t, l1, ev)
	// l2 asks for MinAtomicBatch keys in one write, applicant 5's among them, without
	// having read it (as when both read an empty subject at the same moment).
	var batch []*keyCall
	for a := 1; a <= MinAtomicBatch; a++ {
		s, _ := appKeySubject(logApp(0), logApplicant(a))
		batch = append(batch, &keyCall{subject: s, done: make(chan struct{}), lead: make(chan struct{}, 1)})
	}
	l2.Keys().writeKeyBatch(ctx, batch)
	s5, _ := appKeySubject(logApp(0), logApplicant(5))
	want, err := l1.Keys().dataKey(ctx, s5, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range batch {
		if c.err != nil || c.got == nil {
			t.Fatalf("%s: %v", c.subject, c.err)
		}
		if c.subject == s5 && string(c.got.raw) != string(want.raw) {
			t.Fatal("the losing ring kept a key of its own for an applicant that had one")
		}
		got, err := l1.Keys().readKey(ctx, c.subject)
		if err != nil || got == nil || string(got.raw) != string(c.got.raw) {
			t.Fatalf("%s: the key handed out is not the key stored (%v)", c.subject, err)
		}
	}
}

// BenchmarkKeyBatch compares one write of n new keys as an atomic batch with n pipelined
// publishes, on an R1 file stream that fsyncs every write (production's embedded
// server): the choice writeKeyBatch makes at MinAtomicBatch.
func BenchmarkKeyBatch(b *testing.B) {
	c := natsStart(b, NATSConfig{})
	l := keyedLog(b, c, testMasterA)
	k := l.Keys()
	ctx := context.Background()
	next := 0
	for _, n := range []int{4, 8, 16, 32, 128} {
		for _, atomic := range []bool{true, false} {
			name := fmt.Sprintf("keys=%d/pipelined", n)
			if atomic {
				name = fmt.Sprintf("keys=%d/atomic", n)
			}
			b.Run(name, func(b *testing.B) {
				for b.Loop() {
					batch := make([]*keyCall, n)
					for i := range batch {
						next++
						s, _ := appKeySubject(logApp(1), logApplicant(next))
						batch[i] = &keyCall{subject: s}
					}
					k.storeKeys(ctx, batch, atomic)
					for _, c := range batch {
						if c.err != nil {
							b.Fatal(c.err)
						}
					}
				}
			})
		}
	}
}
