package eventlog

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// domainServer starts an embedded server in its own JetStream domain; leafPort > 0 makes
// it accept leafnode connections there, remote connects it as a leafnode to one. The
// connection and the server end with the test.
func domainServer(tb testing.TB, dir, jsDomain string, leafPort int, remote string) *Conn {
	tb.Helper()
	o := &server.Options{ServerName: jsDomain, JetStream: true, JetStreamDomain: jsDomain, StoreDir: dir,
		DontListen: true, NoSigs: true, MaxPayload: EmbeddedMaxPayload}
	if leafPort > 0 {
		o.LeafNode.Host, o.LeafNode.Port = "127.0.0.1", leafPort
	}
	if remote != "" {
		u, err := url.Parse(remote)
		if err != nil {
			tb.Fatal(err)
		}
		// The standby's own publishes on kyc.> never reach the primary: only the primary's
		// nodes write its log.
		o.LeafNode.Remotes = []*server.RemoteLeafOpts{{URLs: []*url.URL{u}, DenyExports: []string{"kyc.>"}}}
	}
	ns, err := server.NewServer(o)
	if err != nil {
		tb.Fatal(err)
	}
	ns.SetLoggerV2(serverLogger{natsTestLogger(tb)}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns))
	if err != nil {
		tb.Fatal(err)
	}
	c, err := Wrap(nc)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		nc.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return c
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitMirrored waits until the standby's mirror of stream holds the origin's last seq.
func waitMirrored(tb testing.TB, standby *Conn, stream string, last uint64) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := standby.JS.Stream(context.Background(), stream)
		if err == nil {
			if info, err := s.Info(context.Background()); err == nil && info.State.LastSeq >= last {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the mirror of %s did not reach seq %d", stream, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A standby's mirrors follow the primary but not its secure deletes: the erased key
// stays in the standby's files until the standby's own ring shreds it. Its messages can
// be deleted, and promoting turns the mirrors into streams that take appends at the next
// sequence.
func TestStandbyMirrorShredsAndPromotes(t *testing.T) {
	ctx := context.Background()
	port := freePort(t)
	primary := domainServer(t, t.TempDir(), "primary", port, "")
	standbyDir := t.TempDir()
	standby := domainServer(t, standbyDir, "standby", 0, "nats-leaf://127.0.0.1:"+strconv.Itoa(port))

	pl := keyedLog(t, primary, testMasterA)
	for n := range 3 {
		logAppend(t, pl, logEvent(logApp(0), logApplicant(n), domain.EventCreated, n))
	}
	if err := CreateMirrors(ctx, standby, Config{}, "primary", natsTestLogger(t)); err != nil {
		t.Fatal(err)
	}
	if err := CreateMirrors(ctx, standby, Config{}, "primary", nil); err != nil {
		t.Fatalf("CreateMirrors twice: %v", err)
	}
	if err := CreateMirrors(ctx, primary, Config{}, "standby", nil); domain.KindOf(err) != domain.KindConflict {
		t.Fatalf("CreateMirrors on the primary = %v, want KindConflict", err)
	}

	erased := logApplicant(1)
	keyMsg, err := pl.Keys().stream.GetLastMsgForSubject(ctx, "kyc.keys.app."+string(logApp(0))+"."+string(erased))
	if err != nil {
		t.Fatal(err)
	}
	last, _ := pl.LastSeq(ctx)
	waitMirrored(t, standby, EventStream, last)
	keysLast, _ := lastSeq(ctx, "", pl.Keys().stream)
	waitMirrored(t, standby, KeyStream, keysLast)

	// The erasure on the primary, in the erase package's order.
	e, err := pl.Keys().BeginErasure(ctx, logApp(0), erased, "admin", "ticket 99")
	if err != nil {
		t.Fatal(err)
	}
	pendingMsg, err := pl.Keys().stream.GetMsg(ctx, e.Seq)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]string{"by": "admin", "reason": "ticket 99"})
	erasure := &domain.Event{Provider: "allpass", Origin: domain.OriginOperator, AppKey: logApp(0), ApplicantID: erased,
		Type: domain.EventErased, EventAt: logBase, EventAtSource: domain.SourceReceived, ReceivedAt: logBase, Payload: payload}
	if _, _, err := pl.Append(ctx, erasure, "erase-1"); err != nil {
		t.Fatal(err)
	}
	if err := pl.Keys().DestroyKey(ctx, logApp(0), erased); err != nil {
		t.Fatal(err)
	}
	if err := pl.Keys().EndErasure(ctx, e); err != nil {
		t.Fatal(err)
	}
	last, _ = pl.LastSeq(ctx)
	keysLast, _ = lastSeq(ctx, "", pl.Keys().stream)
	waitMirrored(t, standby, EventStream, last)
	waitMirrored(t, standby, KeyStream, keysLast)
	if !dirHolds(t, standbyDir, keyMsg.Data) {
		t.Fatal("the primary's secure delete reached the mirror: nats-server now mirrors deletes; " +
			"the standby notes in store/eventlog/standby.go and docs/OPERATIONS.md need updating")
	}

	keysDir := filepath.Join(standbyDir, "jetstream", "$G", "streams", KeyStream)
	if !dirHolds(t, keysDir, pendingMsg.Data) {
		t.Fatal("the mirrored record of the erasure under way is not in the standby's files: the test proves nothing")
	}
	if dirHolds(t, standbyDir, []byte("ticket 99")) {
		t.Fatal("the reason of the erasure is in clear in the standby's files (the record seals it)")
	}
	// The standby's own publishes do not reach the primary's log (the leafnode denies
	// kyc.> outward): only the primary's nodes write it.
	subject, _ := Subject(logApp(0), logApplicant(7))
	if _, err := standby.JS.Publish(ctx, subject, []byte("{}")); err == nil {
		t.Fatal("a publish on the standby was stored somewhere")
	}
	if now, _ := pl.LastSeq(ctx); now != last {
		t.Fatalf("the primary's log moved from %d to %d on a standby's publish", last, now)
	}

	sl := keyedLog(t, standby, testMasterA)
	if !sl.IsMirror() || !sl.Keys().Mirror() {
		t.Fatal("the standby's log does not know it reads mirrors")
	}
	// Folding the erasure on the standby shreds the mirrored key and the mirrored record
	// of the erasure under way (its reason).
	if err := sl.Keys().ShredApplicant(ctx, logApp(0), erased); err != nil {
		t.Fatal(err)
	}
	assertNoFileHolds(t, standbyDir, keyMsg.Data)
	// The log keeps the erasure's reason (sealed under the log key once events carry
	// MACs); the ring keeps nothing of it.
	assertNoFileHolds(t, keysDir, pendingMsg.Data)
	assertNoFileHolds(t, keysDir, []byte("ticket 99"))
	rep, err := sl.Keys().ShredErased(ctx)
	if err != nil || rep.Erased != 1 || rep.Destroyed != 0 {
		t.Fatalf("ShredErased after the fold = %+v, %v; want one erased, nothing left to destroy", rep, err)
	}
	if erasedNow, err := sl.Keys().Erased(ctx, logApp(0), erased); err != nil || !erasedNow {
		t.Fatalf("the standby's ring says erased = %v, %v", erasedNow, err)
	}
	// The kept applicants still open on the standby.
	evs, err := sl.Applicant(ctx, logApp(0), logApplicant(2))
	if err != nil || len(evs) != 1 {
		t.Fatalf("standby applicant 2: %v, %v", evs, err)
	}
	ev, _ := DecodeEvent(evs[0].Seq, evs[0].Stored)
	if err := sl.Keys().Open(ctx, &ev); err != nil {
		t.Fatalf("applicant 2 does not open on the standby: %v", err)
	}

	promoted, err := Promote(ctx, standby, Config{})
	if err != nil || len(promoted) != 2 {
		t.Fatalf("Promote = %v, %v", promoted, err)
	}
	if again, err := Promote(ctx, standby, Config{}); err != nil || len(again) != 0 {
		t.Fatalf("Promote twice = %v, %v", again, err)
	}
	after := keyedLog(t, standby, testMasterA)
	if after.IsMirror() {
		t.Fatal("still a mirror after Promote")
	}
	seq := logAppend(t, after, logEvent(logApp(0), logApplicant(5), domain.EventCreated, 50))
	if seq != last+1 {
		t.Fatalf("first append after promotion at seq %d, want %d", seq, last+1)
	}
}

// ShredErased on the ring of record leaves an erasure under way to the erase package
// (append, then destroy), and destroys a key left behind by a finished one (a restored
// backup of a standby's mirror).
func TestShredErasedLeavesErasuresUnderWay(t *testing.T) {
	ctx := context.Background()
	c := natsStart(t, NATSConfig{SyncInterval: time.Minute})
	l := keyedLog(t, c, testMasterA)
	for n := range 3 {
		logAppend(t, l, logEvent(logApp(0), logApplicant(n), domain.EventCreated, n))
	}
	if _, err := l.Keys().BeginErasure(ctx, logApp(0), logApplicant(0), "admin", "under way"); err != nil {
		t.Fatal(err)
	}
	rep, err := l.Keys().ShredErased(ctx)
	if err != nil || rep.Erased != 1 || rep.Left != 1 || rep.Destroyed != 0 {
		t.Fatalf("ShredErased = %+v, %v; want the erasure under way left alone", rep, err)
	}
	if _, err := l.Keys().stream.GetLastMsgForSubject(ctx, "kyc.keys.app."+string(logApp(0))+"."+string(logApplicant(0))); err != nil {
		t.Fatal(err)
	}
	// A tombstone over a key no erasure is finishing: what a restored copy looks like.
	if err := l.Keys().tombstone(ctx, "kyc.keys.app."+string(logApp(0))+"."+string(logApplicant(2)), logApp(0), logApplicant(2)); err != nil {
		t.Fatal(err)
	}
	rep, err = l.Keys().ShredErased(ctx)
	if err != nil || rep.Erased != 2 || rep.Left != 1 || rep.Destroyed != 1 || rep.Keys < 5 {
		t.Fatalf("ShredErased = %+v, %v; want applicant 2's key destroyed", rep, err)
	}
	evs, _ := l.Applicant(ctx, logApp(0), logApplicant(2))
	ev, _ := DecodeEvent(evs[0].Seq, evs[0].Stored)
	if err := l.Keys().Open(ctx, &ev); domain.KindOf(err) != domain.KindNotFound {
		t.Fatalf("applicant 2 opens after the shred: %v", err)
	}
}

// dirHolds reports whether any file under dir holds needle.
func dirHolds(tb testing.TB, dir string, needle []byte) bool {
	tb.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err == nil && bytes.Contains(data, needle) {
			found = true
		}
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return found
}

// A standby's node started before its mirror copied the primary's index key (a query node
// started right after kycstate standby --primary-domain) waits for that key, then uses
// it: it makes none of its own, which the mirror would refuse.
func TestStandbyNodeWaitsForTheIndexKey(t *testing.T) {
	ctx := context.Background()
	port := freePort(t)
	primary := domainServer(t, t.TempDir(), "primary", port, "")
	standby := domainServer(t, t.TempDir(), "standby", 0, "nats-leaf://127.0.0.1:"+strconv.Itoa(port))
	if err := CreateMirrors(ctx, standby, Config{}, "primary", natsTestLogger(t)); err != nil {
		t.Fatal(err)
	}
	type opened struct {
		l   *EventLog
		err error
	}
	done := make(chan opened, 1)
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cfg, log := Config{Keys: &MasterKeys{Current: mustMaster(t, testMasterA)}}, natsTestLogger(t)
	go func() {
		l, err := Open(octx, standby, cfg, log)
		done <- opened{l, err}
	}()
	select {
	case o := <-done:
		t.Fatalf("the standby's node started before the primary had an index key: %v", o.err)
	case <-time.After(time.Second):
	}
	pl := keyedLog(t, primary, testMasterA)
	o := <-done
	if o.err != nil {
		t.Fatalf("the standby's node once the primary has an index key: %v", o.err)
	}
	if !o.l.Keys().Mirror() || !bytes.Equal(o.l.Keys().index, pl.Keys().index) {
		t.Fatal("the standby's node does not use the primary's index key")
	}
}
