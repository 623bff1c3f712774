package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/erase"
	"github.com/kycstate/kycstate/internal/jstest"
	"github.com/kycstate/kycstate/projector"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// cluster is one event log (a real embedded nats-server with the key ring) with the
// snapshot store and leases, which query nodes share.
type cluster struct {
	t      *testing.T
	events *eventlog.EventLog
	store  *eventlog.Snapshots
	leases *eventlog.Leases
	logs   *observer.ObservedLogs
	log    *zap.Logger
	next   int // events appended so far
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	master, err := eventlog.ParseMasterKey(strings.Repeat("5e", 32))
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	log := zap.New(core)
	srv := jstest.Start(t)
	events := srv.EventLog(t, eventlog.Config{Keys: &eventlog.MasterKeys{Current: master}}, log)
	ctx := context.Background()
	store, err := eventlog.OpenSnapshots(ctx, srv.Conn(t), 1, true)
	if err != nil {
		t.Fatal(err)
	}
	leases, err := eventlog.OpenLeases(ctx, srv.Conn(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{t: t, events: events, store: store, leases: leases, logs: logs, log: log}
}

var (
	testApp = domain.AppKey("71f2c0c6-c720-423b-8df0-7763102ad57e")
	base    = time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	journey = []domain.EventType{domain.EventCreated, domain.EventInProgress, domain.EventStepPassed,
		domain.EventCompleted, domain.EventApproved, domain.EventRejected}
)

func applicant(n int) domain.ApplicantID {
	return domain.ApplicantID(fmt.Sprintf("%08x-0000-4000-8000-0000000000bb", n))
}

func externalID(n int) domain.ExternalUserID {
	return domain.ExternalUserID(fmt.Sprintf("customer-%d@example.com", n))
}

// add appends n webhook events over applicants, journeys in turn.
func (c *cluster) add(n, applicants int) {
	c.t.Helper()
	for range n {
		i := c.next
		c.next++
		a := i % applicants
		step := i / applicants
		ev := &domain.Event{
			Provider: "allpass", AppKey: testApp, ApplicantID: applicant(a), ExternalUserID: externalID(a),
			Type: journey[step%len(journey)], StepName: "document", EventAt: base.Add(time.Duration(i) * time.Second),
			EventAtSource: domain.SourcePayloadUpdatedAt, ReceivedAt: base.Add(time.Duration(i) * time.Second),
			Payload: []byte(fmt.Sprintf(`{"n":%d}`, i)),
		}
		if _, _, err := c.events.Append(context.Background(), ev, fmt.Sprintf("msg-%d", i)); err != nil {
			c.t.Fatalf("append %d: %v", i, err)
		}
	}
}

// node is one query node: its data dir, projection, snapshotter and projector.
type node struct {
	dir  string
	path string
	proj *projection.Projection
	snap *Snapshotter
	keys *eventlog.Keyring // the projection's Indexer, as on a query node
}

func (c *cluster) node(name string, mod func(*Config)) *node {
	c.t.Helper()
	dir := filepath.Join(c.t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		c.t.Fatal(err)
	}
	n := &node{dir: dir, path: filepath.Join(dir, "projection.db"), keys: c.events.Keys()}
	cfg := Config{Store: c.store, Keys: c.events.Keys(), Leases: c.leases, Holder: name, TempDir: dir,
		Every: time.Hour, Keep: 3, Version: "test", Logger: c.log.With(zap.String("node", name))}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	n.snap = s
	return n
}

// open opens the node's projection (restored or not) as the snapshots' source.
func (n *node) open(t *testing.T) {
	t.Helper()
	p, err := projection.Open(n.path, projection.Options{Indexer: n.keys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	n.proj = p
	n.snap.cfg.Projection = p
}

// catchUp runs the node's projector, guarded, until it has folded the whole log.
func (c *cluster) catchUp(n *node) {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	last, err := c.events.LastSeq(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	pj := projector.New(c.events, n.snap.Guard(ctx, n.proj), projector.Config{}, zap.NewNop(), nil)
	done := make(chan error, 1)
	go func() { done <- pj.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	got := n.proj.WaitFor(wctx, last)
	wcancel()
	cancel()
	<-done
	if got < last {
		c.t.Fatalf("projection at %d, log at %d", got, last)
	}
}

func (c *cluster) take(n *node) eventlog.SnapshotInfo {
	c.t.Helper()
	info, err := n.snap.Take(context.Background())
	if err != nil {
		c.t.Fatalf("Take: %v", err)
	}
	return info
}

// digests maps every applicant to its digest.
func digests(t *testing.T, p *projection.Projection) map[domain.ApplicantKey]domain.Digest {
	t.Helper()
	out := map[domain.ApplicantKey]domain.Digest{}
	if err := p.Digests(func(id domain.ApplicantKey, d domain.Digest) error { out[id] = d; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameDigests(t *testing.T, want, got map[domain.ApplicantKey]domain.Digest) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("%d applicants, want %d", len(got), len(want))
	}
	for id, d := range want {
		if got[id] != d {
			t.Fatalf("applicant %s: digest %s, want %s", id, got[id], d)
		}
	}
}

// A node started from a snapshot and caught up holds what a node folded from sequence 1
// holds, digest for digest, and verify finds no difference.
func TestRestoredNodeEqualsFoldFromOne(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	c.add(1500, 120)
	a := c.node("a", nil)
	a.open(t)
	c.catchUp(a)
	info := c.take(a)
	if info.Checkpoint != 1500 || info.Size == 0 || info.Stored <= uint64(info.Size) || len(info.Digest) != 64 {
		t.Fatalf("snapshot %+v", info)
	}
	c.add(700, 150) // after the snapshot: a restored node folds these

	b := c.node("b", nil)
	got, ok, err := b.snap.Restore(ctx, b.path)
	if err != nil || !ok || got.Name != info.Name {
		t.Fatalf("Restore = %+v, %v, %v; want %s", got, ok, err, info.Name)
	}
	b.open(t)
	if b.proj.Checkpoint() != info.Checkpoint {
		t.Fatalf("restored at %d, snapshot at %d", b.proj.Checkpoint(), info.Checkpoint)
	}
	c.catchUp(b)

	scratch := c.node("scratch", nil)
	scratch.open(t)
	c.catchUp(scratch)
	if b.proj.Checkpoint() != scratch.proj.Checkpoint() {
		t.Fatalf("checkpoints %d and %d", b.proj.Checkpoint(), scratch.proj.Checkpoint())
	}
	sameDigests(t, digests(t, scratch.proj), digests(t, b.proj))
	res, err := projection.Verify(ctx, c.events, b.proj)
	if err != nil || len(res.Differences) != 0 {
		t.Fatalf("verify of the restored node: %+v, %v", res, err)
	}
	left, _ := filepath.Glob(filepath.Join(a.dir, sealedPrefix+"*"))
	if len(left) != 0 {
		t.Fatalf("sealed copies left: %v", left)
	}
	if _, _, err := b.snap.Restore(ctx, b.path); domain.KindOf(err) != domain.KindConflict {
		t.Fatalf("Restore over a projection: %v", err)
	}
}

// putLike stores the bytes of the projection file at path as a snapshot described by
// info, sealed as Take seals: a snapshot as another build or a damaged store would leave.
func (c *cluster) putLike(path string, info eventlog.SnapshotInfo) {
	c.t.Helper()
	ctx := context.Background()
	plain, err := os.ReadFile(path)
	if err != nil {
		c.t.Fatal(err)
	}
	var sealed bytes.Buffer
	w, err := c.events.Keys().SealSnapshot(ctx, info.Name, &sealed)
	if err != nil {
		c.t.Fatal(err)
	}
	w.Write(plain)
	w.Close()
	if err := c.store.Put(ctx, info, &sealed); err != nil {
		c.t.Fatal(err)
	}
}

// Snapshots this build cannot use are passed over, each with a log line that says why
// (a newer schema named), and the newest it can use is restored.
func TestRestoreSkipsWhatItCannotRead(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	c.add(300, 40)
	a := c.node("a", nil)
	a.open(t)
	c.catchUp(a)
	good := c.take(a)

	copyPath := filepath.Join(t.TempDir(), "copy.db")
	var plain bytes.Buffer
	a.proj.Snapshot(func(cp *projection.Copy) error { _, err := cp.WriteTo(&plain); return err })
	if err := os.WriteFile(copyPath, plain.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	newer := eventlog.SnapshotInfo{Name: eventlog.NewSnapshotName(900, now), Checkpoint: 900,
		Schema: projection.SchemaVersion + 1, Version: "v9.0.0", Created: now, Size: good.Size, Digest: good.Digest}
	c.putLike(copyPath, newer)
	wrongDigest := newer
	wrongDigest.Name, wrongDigest.Checkpoint, wrongDigest.Schema = eventlog.NewSnapshotName(800, now), 800, projection.SchemaVersion
	wrongDigest.Digest = strings.Repeat("0", 64)
	c.putLike(copyPath, wrongDigest)
	noKey := wrongDigest
	noKey.Name, noKey.Checkpoint, noKey.Digest = eventlog.NewSnapshotName(700, now), 700, good.Digest
	c.putLike(copyPath, noKey)
	if err := c.events.Keys().DestroySnapshotKey(ctx, noKey.Name); err != nil {
		t.Fatal(err)
	}

	b := c.node("b", nil)
	got, ok, err := b.snap.Restore(ctx, b.path)
	if err != nil || !ok || got.Name != good.Name {
		t.Fatalf("Restore = %s, %v, %v; want %s", got.Name, ok, err, good.Name)
	}
	why := map[string]string{}
	for _, e := range c.logs.FilterMessage("snapshot skipped").All() {
		why[e.ContextMap()["snapshot"].(string)] = e.ContextMap()["why"].(string)
	}
	for name, want := range map[string]string{
		newer.Name:       fmt.Sprintf("newer kycstate (v9.0.0) at projection schema %d", projection.SchemaVersion+1),
		wrongDigest.Name: "not the one recorded",
		noKey.Name:       "key is destroyed",
	} {
		if !strings.Contains(why[name], want) {
			t.Errorf("skip of %s logged as %q, want it to say %q", name, why[name], want)
		}
	}
	if _, err := os.Stat(b.path + ".restore"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a partial file is left: %v", err)
	}
}

// An erasure reaches the snapshots taken before it: their keys are destroyed as the
// projector commits the erasure, they no longer open, a new snapshot is due, and a node
// restored from what is left holds no trace of the applicant's blind index.
func TestErasureMakesOlderSnapshotsUnreadable(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	c.add(400, 50)
	a := c.node("a", nil)
	a.open(t)
	c.catchUp(a)
	before := c.take(a)

	victim := applicant(7)
	index := []byte(c.events.Keys().Index(testApp, externalID(7)))
	raw, err := os.ReadFile(a.path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, index) {
		t.Fatal("test setup: the projection does not hold the applicant's blind index; the test would prove nothing")
	}
	er, err := erase.New(erase.Config{Events: c.events, Keys: c.events.Keys(), Rejects: c.events})
	if err != nil {
		t.Fatal(err)
	}
	seq, _, err := er.Erase(ctx, testApp, victim, "test", "a request")
	if err != nil {
		t.Fatal(err)
	}
	if seq <= before.Checkpoint {
		t.Fatalf("erasure at %d, snapshot at %d", seq, before.Checkpoint)
	}
	c.catchUp(a)

	obj, err := c.store.Open(ctx, before.Name)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.events.Keys().OpenSnapshot(ctx, before.Name, obj)
	obj.Close()
	if !errors.Is(err, eventlog.ErrNoKey) {
		t.Fatalf("the snapshot from before the erasure still opens: %v", err)
	}
	if due, _ := a.snap.due(before, true, time.Now().Add(erasureSettle)); !due {
		t.Fatal("no new snapshot due after an erasure made the newest unreadable")
	}
	if _, ok, _ := c.node("early", nil).snap.Restore(ctx, filepath.Join(t.TempDir(), "early.db")); ok {
		t.Fatal("a snapshot was restored although the only one is from before the erasure")
	}

	after := c.take(a)
	if after.Checkpoint < seq {
		t.Fatalf("snapshot after the erasure at %d", after.Checkpoint)
	}
	if list, _ := c.store.List(ctx); len(list) != 1 || list[0].Name != after.Name {
		t.Fatalf("snapshots kept: %+v; the unreadable one should be gone", list)
	}
	b := c.node("b", nil)
	if got, ok, err := b.snap.Restore(ctx, b.path); err != nil || !ok || got.Name != after.Name {
		t.Fatalf("Restore = %s, %v, %v", got.Name, ok, err)
	}
	// What the projection itself keeps of the applicant after its erasure (its history
	// records, say) is the projection's business: a fresh fold's copy says what that is.
	// What a snapshot adds is what this test is about.
	scratch := c.node("scratch", nil)
	scratch.open(t)
	c.catchUp(scratch)
	var fresh bytes.Buffer
	scratch.proj.Snapshot(func(cp *projection.Copy) error { _, err := cp.WriteTo(&fresh); return err })
	liveIndex := bytes.Contains(fresh.Bytes(), index)
	if liveIndex {
		t.Log("the projection keeps the erased applicant's blind index in live data; only the id is checked")
	}
	err = filepath.Walk(b.dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if !liveIndex && bytes.Contains(data, index) {
			t.Errorf("%s holds the erased applicant's blind index", path)
		}
		if bytes.Contains(data, []byte(externalID(7))) {
			t.Errorf("%s holds the erased applicant's externalUserId", path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	b.open(t)
	st, found, err := b.proj.State(victim)
	if err != nil || !found || !st.Erased || st.ExternalUserIndex != "" || st.SealedExternalUserID != "" {
		t.Fatalf("restored state of the erased applicant: %+v, %v, %v", st, found, err)
	}
}

// A snapshot under way when this node commits an erasure is one the erasure reaches:
// its key exists before the commit looks for keys to destroy.
func TestErasureDuringUpload(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	c.add(300, 30)
	held, release := make(chan struct{}), make(chan struct{})
	a := c.node("a", func(cfg *Config) {
		cfg.MidUpload = func(ctx context.Context) error {
			close(held)
			<-release
			return nil
		}
	})
	a.open(t)
	c.catchUp(a)
	var wg sync.WaitGroup
	var info eventlog.SnapshotInfo
	var takeErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		info, takeErr = a.snap.Take(ctx)
	}()
	<-held
	er, err := erase.New(erase.Config{Events: c.events, Keys: c.events.Keys(), Rejects: c.events})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := er.Erase(ctx, testApp, applicant(3), "test", "during an upload"); err != nil {
		t.Fatal(err)
	}
	c.catchUp(a)
	close(release)
	wg.Wait()
	if takeErr != nil {
		t.Fatal(takeErr)
	}
	// Its key was destroyed while it uploaded, and Take's pruning removed it.
	if keys, err := c.events.Keys().SnapshotKeys(ctx); err != nil || len(keys) != 0 {
		t.Fatalf("keys %v, %v; the snapshot's key outlived the erasure", keys, err)
	}
	if list, err := c.store.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("snapshots %+v, %v; want %s removed as unreadable", list, err, info.Name)
	}
}

// Of two nodes, one takes a snapshot: the other finds the lease held while it works, and
// the snapshot taken once it is done.
func TestLeaseLetsOneNodeSnapshot(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	c.add(200, 20)
	held, release := make(chan struct{}), make(chan struct{})
	a := c.node("a", func(cfg *Config) {
		cfg.MidUpload = func(ctx context.Context) error {
			close(held)
			<-release
			return nil
		}
	})
	b := c.node("b", nil)
	a.open(t)
	b.open(t)
	c.catchUp(a)
	c.catchUp(b)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.snap.round(ctx, time.Now())
	}()
	<-held
	if _, err := b.snap.Take(ctx); !errors.Is(err, ErrBusy) || domain.KindOf(err) != domain.KindConflict {
		t.Fatalf("b's Take while a holds the lease: %v", err)
	}
	b.snap.round(ctx, time.Now())
	close(release)
	<-done
	list, err := c.store.List(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("%d snapshots, %v; want a's alone", len(list), err)
	}
	b.snap.round(ctx, time.Now())
	if list, _ := c.store.List(ctx); len(list) != 1 {
		t.Fatalf("b took another snapshot although a's is fresh: %d", len(list))
	}
	b.snap.round(ctx, time.Now().Add(time.Hour)) // due again
	if list, _ := c.store.List(ctx); len(list) != 2 {
		t.Fatalf("b took none when one was due: %d", len(list))
	}
}

// Take keeps the newest Keep snapshots and removes older ones with their keys.
func TestTakeKeepsTheNewest(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	a := c.node("a", func(cfg *Config) { cfg.Keep = 2 })
	a.open(t)
	var names []string
	for range 4 {
		c.add(50, 10)
		c.catchUp(a)
		names = append(names, c.take(a).Name)
	}
	list, err := c.store.List(ctx)
	if err != nil || len(list) != 2 || list[0].Name != names[3] || list[1].Name != names[2] {
		t.Fatalf("kept %+v, %v; want the two newest", list, err)
	}
	keys, err := c.events.Keys().SnapshotKeys(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys %v, %v; want the two kept snapshots'", keys, err)
	}
}

// Run takes the first snapshot at once (none exists) and stops with ctx.
func TestRunTakesTheFirstSnapshot(t *testing.T) {
	c := newCluster(t)
	c.add(100, 10)
	a := c.node("a", func(cfg *Config) { cfg.Ready = func(context.Context) error { return nil } })
	a.open(t)
	c.catchUp(a)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.snap.Run(ctx) }()
	// Polled: the test waits for an outcome, it does not order anything by the clock.
	for deadline := time.Now().Add(30 * time.Second); c.logs.FilterMessage("snapshot taken").Len() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no snapshot taken")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
	if list, _ := c.store.List(context.Background()); len(list) != 1 {
		t.Fatalf("%d snapshots, want 1", len(list))
	}
}
