package e2e

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ack is a webhook the service answered 200, with what the sender saw on the way.
type ack struct {
	h    hook
	seq  uint64
	dup  bool // the 200 that ended the delivery said duplicate:true
	lost int  // attempts before it that got no HTTP answer (connection refused or cut)
}

// loadGen sends distinct webhooks from several senders until stopped. Each sender owns a
// few applicants and sends each one's webhooks one after the other, as Allpass does.
type loadGen struct {
	t       *testing.T
	s       *binService
	senders int
	retry   bool // deliver each webhook until it is answered 200; else give up on no answer
	client  *http.Client
	stop    chan struct{}
	wg      sync.WaitGroup

	mu   sync.Mutex
	acks map[string]ack // by nonce
	gone int            // webhooks given up on without an answer (retry off)
}

func newLoadGen(t *testing.T, s *binService, senders int, retry bool) *loadGen {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = senders
	t.Cleanup(tr.CloseIdleConnections)
	return &loadGen{t: t, s: s, senders: senders, retry: retry, stop: make(chan struct{}),
		client: &http.Client{Transport: tr, Timeout: 20 * time.Second}, acks: map[string]ack{}}
}

// journey is the order of event types each applicant goes through, then round again.
var journey = []struct{ typ, step string }{
	{"applicantCreated", ""}, {"applicantInProgress", ""}, {"applicantStepPassed", "document"},
	{"applicantStepPassed", "selfie"}, {"applicantCompleted", ""}, {"applicantInReview", ""},
	{"applicantOnHold", ""}, {"applicantInReview", ""}, {"applicantApproved", ""},
	{"applicantInProgress", ""}, {"expiredDocument", ""}, {"applicantRejected", ""},
}

func (g *loadGen) run() {
	for i := range g.senders {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.sender(i)
		}()
	}
}

func (g *loadGen) sender(i int) {
	applicants := []string{newID(), newID(), newID()}
	base := time.Now().Add(-time.Hour)
	for j := 0; ; j++ {
		select {
		case <-g.stop:
			return
		default:
		}
		applicant := applicants[j%len(applicants)]
		step := journey[(j/len(applicants))%len(journey)]
		at := base.Add(time.Duration(j) * time.Millisecond)
		h, err := seal(g.s.app, g.s.app.Keys[0], applicant, step.typ, step.step, at, fmt.Sprintf("s%d-%d", i, j))
		if err != nil {
			g.t.Error(err)
			return
		}
		if !g.deliver(h) {
			return
		}
	}
}

// deliver sends h until it is answered 200 (or, with retry off, until it gets no answer).
// It reports whether the sender should go on.
func (g *loadGen) deliver(h hook) bool {
	lost := 0
	deadline := time.Now().Add(90 * time.Second)
	backoff := 10 * time.Millisecond
	for {
		a, err := postHook(g.client, g.s.ingestURL, g.s.app.Name, h)
		switch {
		case err == nil && a.code == http.StatusOK:
			g.mu.Lock()
			if prev, ok := g.acks[h.nonce]; ok && prev.seq != a.seq {
				g.t.Errorf("webhook %s answered 200 twice with different sequences %d and %d", h.nonce, prev.seq, a.seq)
			}
			g.acks[h.nonce] = ack{h: h, seq: a.seq, dup: a.dup, lost: lost}
			g.mu.Unlock()
			return true
		case errors.Is(err, errBadAnswer):
			g.t.Errorf("webhook %s: %v", h.nonce, err)
			return false
		case err != nil:
			lost++
			if !g.retry {
				g.mu.Lock()
				g.gone++
				g.mu.Unlock()
				return false
			}
		case a.code == http.StatusServiceUnavailable:
			// The log could not confirm the write: nothing stored, retry.
		default:
			g.t.Errorf("webhook %s: answered %d %s", h.nonce, a.code, a.body)
			return false
		}
		if time.Now().After(deadline) {
			g.t.Errorf("webhook %s: no 200 after 90 s of retries", h.nonce)
			return false
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

func (g *loadGen) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.acks)
}

// waitAcks waits until n more webhooks than now have been answered 200.
func (g *loadGen) waitAcks(t *testing.T, n int, d time.Duration) {
	t.Helper()
	want := g.count() + n
	deadline := time.Now().Add(d)
	for g.count() < want {
		if time.Now().After(deadline) {
			t.Fatalf("load made no progress: %d of %d webhooks answered 200 after %s", g.count(), want, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (g *loadGen) stopAndWait() {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	g.wg.Wait()
}

func (g *loadGen) snapshot() map[string]ack {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]ack, len(g.acks))
	for k, v := range g.acks {
		out[k] = v
	}
	return out
}

// checkAcksInLog checks that every acknowledged webhook is in the exported log exactly
// once, at the sequence it was answered with, with its body kept as sent.
func checkAcksInLog(t *testing.T, acks map[string]ack, events []exported) {
	t.Helper()
	byNonce := map[string][]exported{}
	seqs := map[uint64]bool{}
	for _, e := range events {
		if seqs[e.Seq] {
			t.Errorf("export lists seq %d twice", e.Seq)
		}
		seqs[e.Seq] = true
		byNonce[e.nonce] = append(byNonce[e.nonce], e)
	}
	missing := 0
	for nonce, a := range acks {
		got := byNonce[nonce]
		switch {
		case len(got) == 0:
			missing++
			if missing <= 10 {
				t.Errorf("webhook %s answered 200 seq %d (duplicate %v) is not in the log", nonce, a.seq, a.dup)
			}
		case len(got) > 1:
			t.Errorf("webhook %s is in the log %d times (seqs %d and %d)", nonce, len(got), got[0].Seq, got[1].Seq)
		case got[0].Seq != a.seq:
			t.Errorf("webhook %s answered seq %d, is at seq %d in the log", nonce, a.seq, got[0].Seq)
		case got[0].ApplicantID != a.h.applicant || got[0].Type != a.h.typ:
			t.Errorf("webhook %s stored as %s/%s, sent as %s/%s", nonce, got[0].ApplicantID, got[0].Type, a.h.applicant, a.h.typ)
		case got[0].Raw != nil && got[0].Raw.Body != string(a.h.body):
			t.Errorf("webhook %s: raw body kept is not the body sent", nonce)
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged webhooks are missing from the log", missing, len(acks))
	}
}

// checkAcksInProjection waits until the running service has applied the highest
// acknowledged sequence, then checks each applicant's history and state hold exactly the
// acknowledged events (the auditor's history, the reader's state).
func checkAcksInProjection(t *testing.T, s *binService, acks map[string]ack) {
	t.Helper()
	per := map[string][]uint64{}
	var maxSeq uint64
	for _, a := range acks {
		per[a.h.applicant] = append(per[a.h.applicant], a.seq)
		maxSeq = max(maxSeq, a.seq)
	}
	if len(per) == 0 {
		t.Fatal("no acknowledged webhooks to check")
	}
	for _, want := range per {
		slices.Sort(want)
	}
	waitHistories(t, s, per, maxSeq, 90*time.Second)
	for id, want := range per {
		var st applicantState
		if code, body := getJSON(t, s.apiURL+"/v1/applicants/"+id, s.reader, &st); code != http.StatusOK {
			t.Errorf("state of %s: %d %s", id, code, body)
		} else if st.Events != len(want) || st.LastSeq != want[len(want)-1] {
			t.Errorf("state of %s: %d events, lastSeq %d; want %d events, lastSeq %d", id, st.Events, st.LastSeq, len(want), want[len(want)-1])
		}
	}
}

var verifiedRE = regexp.MustCompile(`over (\d+) events.*: (\d+) differences`)

// mustVerify runs verify on the stopped service and requires exit 0 with no difference
// over events events (0: any number).
func mustVerify(t *testing.T, s *binService, events int) {
	t.Helper()
	out, err := s.ops(t, "verify")
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	m := verifiedRE.FindStringSubmatch(out)
	if m == nil || m[2] != "0" {
		t.Fatalf("verify exited 0 but does not report 0 differences:\n%s", out)
	}
	if n, _ := strconv.Atoi(m[1]); events > 0 && n != events {
		t.Errorf("verify compared %d events, want %d:\n%s", n, events, out)
	}
}

// TestCrashKill9UnderLoad is the durability test. Eight senders deliver distinct webhooks
// the way Allpass does (each one resent until answered 200) while serve is killed with
// SIGKILL 3 to 5 times at random moments and restarted on the same data dir. Afterwards:
// every webhook ever answered 200 is in the log exactly once at the sequence it was
// answered with, and in the projection; webhooks whose answer was lost were answered 200
// when resent (duplicate:true where the killed process had appended them); every
// acknowledged webhook sent again is a duplicate at the same sequence; verify, rebuild
// and verify again all exit 0.
func TestCrashKill9UnderLoad(t *testing.T) {
	crashUnderLoad(t, crashLoad{senders: 8, minKills: 3, maxKills: 5, acksBetween: 20, pause: 700 * time.Millisecond})
}

// TestCrashKill9MidBatch is TestCrashKill9UnderLoad with 256 senders, so that appends are
// group-committed (DESIGN.md section 3) and serve is killed while batches are on their
// way to the stream: a batch the stream did not commit was answered with nothing (every
// webhook of it is resent and stored once), one it committed may have lost its answers
// (resent, they are answered duplicate:true at the sequence the batch gave them), and no
// webhook was answered 200 that is not in the log after the restart. Each incarnation's
// batch-size histogram, read just before the kill, shows that batches of more than one
// webhook were being written.
func TestCrashKill9MidBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("256 senders: not in -short")
	}
	crashUnderLoad(t, crashLoad{senders: 256, minKills: 2, maxKills: 3, acksBetween: 500, pause: 300 * time.Millisecond, batches: true})
}

type crashLoad struct {
	senders            int
	minKills, maxKills int
	acksBetween        int           // webhooks answered 200 since the (re)start before a kill
	pause              time.Duration // then a random moment up to this long
	batches            bool          // require multi-webhook batches before the kills
}

func crashUnderLoad(t *testing.T, c crashLoad) {
	needBins(t)
	var seedBytes [8]byte
	rand.Read(seedBytes[:])
	seed := uint64(seedBytes[0]) | uint64(seedBytes[1])<<8 | uint64(seedBytes[2])<<16 | uint64(seedBytes[3])<<24
	rng := mrand.New(mrand.NewPCG(seed, 1))
	kills := c.minKills + rng.IntN(c.maxKills-c.minKills+1)
	t.Logf("seed %d: %d senders, %d kills", seed, c.senders, kills)

	s := newBinService(t)
	p := s.start(t)
	g := newLoadGen(t, s, c.senders, true)
	g.run()
	defer g.stopAndWait()
	multi := 0.0
	for k := range kills {
		// Under load: some webhooks answered since the (re)start, then a random moment.
		g.waitAcks(t, c.acksBetween, 60*time.Second)
		time.Sleep(time.Duration(rng.Int64N(int64(c.pause))))
		var batches, single, inflight float64
		if c.batches {
			m := scrapeMetrics(t, s.apiURL+"/metrics")
			batches, single, inflight = m["kycstate_ingest_commit_batch_size_count"], m[`kycstate_ingest_commit_batch_size_bucket{le="1"}`], m["kycstate_ingest_inflight"]
			multi += batches - single
		}
		before := g.count()
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-p.done
		t.Logf("kill %d: SIGKILL after %d webhooks answered 200; this incarnation wrote %.0f batches, %.0f of more than one webhook; %.0f requests in flight just before",
			k+1, before, batches, batches-single, inflight)
		p = s.start(t)
	}
	if c.batches && multi == 0 {
		t.Errorf("no batch of more than one webhook was written before a kill: the kills did not hit group commit")
	}
	g.waitAcks(t, c.acksBetween, 60*time.Second)
	g.stopAndWait()
	if t.Failed() {
		t.FailNow()
	}
	acks := g.snapshot()

	lostBefore, appendedBeforeKill := 0, 0
	for _, a := range acks {
		if a.lost > 0 {
			lostBefore++
			if a.dup {
				appendedBeforeKill++
			}
		}
	}
	t.Logf("%d webhooks answered 200; %d of them after attempts without an answer, %d of those already appended (answered duplicate:true)",
		len(acks), lostBefore, appendedBeforeKill)

	// Every acknowledged webhook sent again is recognised: the duplicate window survived
	// the kills, and the answer names the original sequence.
	resend := make(chan ack)
	var wg sync.WaitGroup
	var mu sync.Mutex
	bad := 0
	for range min(c.senders, 32) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range resend {
				got, err := postHook(g.client, s.ingestURL, s.app.Name, a.h)
				if err != nil || got.code != http.StatusOK || !got.dup || got.seq != a.seq {
					mu.Lock()
					if bad++; bad <= 10 {
						t.Errorf("resending acknowledged webhook %s (seq %d): %+v %v; want 200 duplicate:true seq %d", a.h.nonce, a.seq, got, err, a.seq)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, a := range acks {
		resend <- a
	}
	close(resend)
	wg.Wait()

	checkAcksInProjection(t, s, acks)
	p.mustTerm(t)

	events := s.exportLog(t)
	checkAcksInLog(t, acks, events)
	if len(events) != len(acks) {
		t.Errorf("the log has %d events, %d distinct webhooks were acknowledged: every webhook was resent until answered, so the log should hold exactly those", len(events), len(acks))
	}
	mustVerify(t, s, len(acks))
	out := s.mustOps(t, "rebuild")
	t.Logf("rebuild: %s", out)
	mustVerify(t, s, len(acks))
}

// scrapeMetrics reads a Prometheus text exposition into series -> value (labels kept as
// written, so `name{le="1"}` is one key).
func scrapeMetrics(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("metrics: %v", err)
	}
	return out
}

// waitHistories waits until the service's projection has applied seq (asking again with
// ?minSeq, which waits a bounded time per request), then checks that each applicant's
// history holds exactly the sequences in per, in order.
func waitHistories(t *testing.T, s *binService, per map[string][]uint64, seq uint64, within time.Duration) {
	t.Helper()
	var any string
	for id := range per {
		any = id
		break
	}
	deadline := time.Now().Add(within)
	for {
		code, body := getJSON(t, fmt.Sprintf("%s/v1/applicants/%s?minSeq=%d", s.apiURL, any, seq), s.reader, nil)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("projection did not reach seq %d: %d %s", seq, code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for id, want := range per {
		if got := historySeqs(t, s.apiURL, s.auditor, id); !slices.Equal(got, want) {
			t.Errorf("history of %s: seqs %v, want %v", id, got, want)
		}
	}
}
