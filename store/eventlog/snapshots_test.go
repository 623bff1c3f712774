package eventlog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go/jetstream"
)

func sealed(t *testing.T, k *Keyring, name string, plain []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := k.SealSnapshot(context.Background(), name, &out)
	if err != nil {
		t.Fatal(err)
	}
	// Written in uneven pieces, as io.Copy and bbolt's copy write.
	for rest := plain; len(rest) > 0; {
		n := min(len(rest), 1+len(rest)%40000)
		if _, err := w.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func opened(k *Keyring, name string, b []byte) ([]byte, error) {
	r, err := k.OpenSnapshot(context.Background(), name, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func testSnapshotName(cp uint64) string {
	return NewSnapshotName(cp, time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC))
}

func TestSnapshotSealRoundTrip(t *testing.T) {
	l := keyedLog(t, natsStart(t, NATSConfig{SyncInterval: time.Minute}), testMasterA)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, sealChunk - 1, sealChunk, sealChunk + 1, 3*sealChunk + 5} {
		plain := make([]byte, size)
		for i := range plain {
			plain[i] = byte(rng.IntN(256))
		}
		name := testSnapshotName(uint64(size))
		b := sealed(t, l.Keys(), name, plain)
		got, err := opened(l.Keys(), name, b)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("size %d: %d bytes back, %v", size, len(got), err)
		}
		if size > 16 && bytes.Contains(b, plain[:16]) {
			t.Fatalf("size %d: plaintext in the sealed bytes", size)
		}
	}
	name := testSnapshotName(1)
	sealed(t, l.Keys(), name, nil)
	if _, err := l.Keys().SealSnapshot(context.Background(), name, io.Discard); domain.KindOf(err) != domain.KindConflict {
		t.Fatalf("a second key for one name: %v", err)
	}
	if _, err := l.Keys().SealSnapshot(context.Background(), "kyc.keys.>", io.Discard); domain.KindOf(err) != domain.KindInvalid {
		t.Fatalf("a name that is no snapshot's: %v", err)
	}
}

// frames splits sealed bytes into their header and length-prefixed chunks.
func frames(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for rest := b[len(sealMagic):]; len(rest) > 0; {
		n := 4 + int(binary.BigEndian.Uint32(rest))
		out = append(out, rest[:n])
		rest = rest[n:]
	}
	return out
}

func TestSnapshotSealRefusesDamage(t *testing.T) {
	l := keyedLog(t, natsStart(t, NATSConfig{SyncInterval: time.Minute}), testMasterA)
	plain := bytes.Repeat([]byte("projection page "), 3*sealChunk/16+100) // 4 chunks
	name := testSnapshotName(7)
	b := sealed(t, l.Keys(), name, plain)
	fs := frames(t, b)
	if len(fs) != 4 {
		t.Fatalf("%d chunks, want 4", len(fs))
	}
	join := func(parts ...[]byte) []byte {
		return append([]byte(sealMagic), bytes.Join(parts, nil)...)
	}
	flipped := bytes.Clone(b)
	flipped[len(flipped)/2] ^= 1
	other := testSnapshotName(8)
	otherSealed := sealed(t, l.Keys(), other, plain)
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"cut at a chunk boundary", join(fs[0], fs[1], fs[2])},
		{"cut inside a chunk", b[:len(b)-100]},
		{"cut to the header", b[:len(sealMagic)]},
		{"empty", nil},
		{"chunks swapped", join(fs[1], fs[0], fs[2], fs[3])},
		{"a chunk repeated", join(fs[0], fs[0], fs[1], fs[2], fs[3])},
		{"a byte flipped", flipped},
		{"bytes after the last chunk", append(bytes.Clone(b), 0)},
		{"another snapshot's chunk", join(fs[0], frames(t, otherSealed)[1], fs[2], fs[3])},
		{"a huge length", join(fs[0], []byte{0xff, 0xff, 0xff, 0xff})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := opened(l.Keys(), name, tc.b)
			if !errors.Is(err, ErrSnapshotDamaged) || domain.KindOf(err) != domain.KindInternal {
				t.Fatalf("opened %d bytes, err %v; want ErrSnapshotDamaged", len(got), err)
			}
		})
	}
	// Sealed for another name: the other name's key does not open it, nor does this
	// name's key open the other's bytes.
	if _, err := opened(l.Keys(), name, otherSealed); !errors.Is(err, ErrSnapshotDamaged) {
		t.Fatalf("another snapshot's bytes under this name: %v", err)
	}
}

// A snapshot's key is destroyed for good: the snapshot no longer opens, its key message
// is overwritten in KYC_KEYS's files, and SnapshotKeys no longer lists it. keys rewrap
// covers snapshot keys like data keys.
func TestSnapshotKeyDestroyAndRewrap(t *testing.T) {
	dir := t.TempDir()
	c := natsStart(t, NATSConfig{StoreDir: dir, SyncInterval: time.Minute})
	ctx := context.Background()
	la := keyedLog(t, c, testMasterA)
	keep, gone := testSnapshotName(10), testSnapshotName(20)
	plain := []byte(strings.Repeat("state ", 1000))
	keepSealed, goneSealed := sealed(t, la.Keys(), keep, plain), sealed(t, la.Keys(), gone, plain)
	names, err := la.Keys().SnapshotKeys(ctx)
	if err != nil || len(names) != 2 {
		t.Fatalf("SnapshotKeys = %v, %v", names, err)
	}
	msg, err := la.Keys().stream.GetLastMsgForSubject(ctx, snapshotKeyPrefix+gone)
	if err != nil {
		t.Fatal(err)
	}
	var m keyMsg
	if err := json.Unmarshal(msg.Data, &m); err != nil {
		t.Fatal(err)
	}

	stored := []byte(base64.StdEncoding.EncodeToString(m.Key)) // as the key message holds it
	if found := treeHolds(t, filepath.Join(dir, "jetstream"), stored); len(found) == 0 {
		t.Fatal("test setup: the wrapped key is in no file before it is destroyed; the test would prove nothing")
	}
	if err := la.Keys().DestroySnapshotKey(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if err := la.Keys().DestroySnapshotKey(ctx, gone); err != nil {
		t.Fatalf("destroyed twice: %v", err)
	}
	if _, err := opened(la.Keys(), gone, goneSealed); !errors.Is(err, ErrNoKey) || domain.KindOf(err) != domain.KindNotFound {
		t.Fatalf("open after its key is destroyed: %v", err)
	}
	if names, _ := la.Keys().SnapshotKeys(ctx); len(names) != 1 || names[0] != keep {
		t.Fatalf("SnapshotKeys after destroy = %v", names)
	}
	if found := treeHolds(t, filepath.Join(dir, "jetstream"), stored); len(found) > 0 {
		t.Fatalf("the destroyed key is still in %v", found)
	}

	// Rotation: keys.master B with A in keys.previous, rewrap, then B alone.
	lb := keyedLog(t, c, testMasterB, testMasterA)
	if _, err := lb.Keys().Rewrap(ctx); err != nil {
		t.Fatal(err)
	}
	lb2 := keyedLog(t, c, testMasterB)
	if got, err := opened(lb2.Keys(), keep, keepSealed); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("after rewrap, under the new key alone: %v", err)
	}
}

// treeHolds lists the files under dir that hold b.
func treeHolds(t *testing.T, dir string, b []byte) []string {
	t.Helper()
	var found []string
	err := filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, b) {
			found = append(found, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestSnapshotStore(t *testing.T) {
	c := natsStart(t, NATSConfig{SyncInterval: time.Minute})
	ctx := context.Background()
	none, err := OpenSnapshots(ctx, c, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	if list, err := none.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("no bucket: %v, %v", list, err)
	}
	s, err := OpenSnapshots(ctx, c, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSnapshots(ctx, c, 1, true); err != nil {
		t.Fatalf("opened twice: %v", err)
	}
	base := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	put := func(cp uint64, at time.Time, body []byte) SnapshotInfo {
		sum := sha256.Sum256(body)
		info := SnapshotInfo{Name: NewSnapshotName(cp, at), Checkpoint: cp, Schema: 2, Version: "test",
			Created: at, Size: int64(len(body)), Digest: hex.EncodeToString(sum[:])}
		if err := s.Put(ctx, info, bytes.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		return info
	}
	big := bytes.Repeat([]byte("x"), 300<<10) // several object chunks
	a := put(100, base, big)
	b := put(200, base.Add(time.Hour), []byte("b"))
	b2 := put(200, base.Add(2*time.Hour), []byte("b2"))
	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, i := range list {
		order = append(order, i.Name)
		if i.Problem != "" {
			t.Errorf("%s: %s", i.Name, i.Problem)
		}
	}
	if strings.Join(order, " ") != strings.Join([]string{b2.Name, b.Name, a.Name}, " ") {
		t.Fatalf("order %v, want newest checkpoint first, then newest time", order)
	}
	got := list[2]
	if got.Checkpoint != a.Checkpoint || got.Digest != a.Digest || got.Size != a.Size || !got.Created.Equal(a.Created) || got.Version != "test" || got.Schema != 2 {
		t.Fatalf("listed %+v, put %+v", got, a)
	}
	r, err := s.Open(ctx, a.Name)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(body, big) {
		t.Fatalf("read back %d bytes, %v", len(body), err)
	}
	if err := s.Delete(ctx, b.Name); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, b.Name); err != nil {
		t.Fatalf("deleted twice: %v", err)
	}
	if _, err := s.Open(ctx, b.Name); domain.KindOf(err) != domain.KindNotFound {
		t.Fatalf("open of a deleted snapshot: %v", err)
	}
	if list, _ := s.List(ctx); len(list) != 2 {
		t.Fatalf("after delete: %d listed", len(list))
	}
	if err := s.Put(ctx, SnapshotInfo{Name: "x.y"}, bytes.NewReader(nil)); domain.KindOf(err) != domain.KindInvalid {
		t.Fatalf("a bad name: %v", err)
	}
}

// failingReader gives n bytes, then an error, as a projection copy that fails half way.
type failingReader struct{ n int }

var errHalfWay = errors.New("the copy failed half way")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errHalfWay
	}
	n := min(len(p), f.n)
	f.n -= n
	return n, nil
}

// A Put cut short is never listed; its chunks, left by a crash, are purged by
// CleanPartial, which leaves the chunks of complete snapshots alone.
func TestSnapshotStorePartial(t *testing.T) {
	c := natsStart(t, NATSConfig{SyncInterval: time.Minute})
	ctx := context.Background()
	s, err := OpenSnapshots(ctx, c, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	whole := SnapshotInfo{Name: testSnapshotName(5), Checkpoint: 5, Created: time.Now(), Size: 3, Digest: strings.Repeat("0", 64)}
	if err := s.Put(ctx, whole, strings.NewReader("abc")); err != nil {
		t.Fatal(err)
	}
	half := SnapshotInfo{Name: testSnapshotName(9), Checkpoint: 9, Created: time.Now(), Digest: strings.Repeat("0", 64)}
	if err := s.Put(ctx, half, &failingReader{n: 400 << 10}); !errors.Is(err, errHalfWay) {
		t.Fatalf("Put of a failing reader: %v", err)
	}
	// What a process killed during a Put leaves: chunks, and no description.
	for i := range 3 {
		if _, err := c.JS.Publish(ctx, snapshotChunks+"KILLEDUPLOADNUID", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 1 || list[0].Name != whole.Name {
		t.Fatalf("listed %+v, %v; want the whole snapshot alone", list, err)
	}
	n, err := s.CleanPartial(ctx)
	if err != nil || n != 1 {
		t.Fatalf("CleanPartial = %d, %v; want the killed upload's chunks", n, err)
	}
	si, err := s.stream.Info(ctx, jetstream.WithSubjectFilter(snapshotChunks+">"))
	if err != nil {
		t.Fatal(err)
	}
	if len(si.State.Subjects) != 1 {
		t.Fatalf("chunk subjects left: %v", si.State.Subjects)
	}
	r, err := s.Open(ctx, whole.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if b, err := io.ReadAll(r); err != nil || string(b) != "abc" {
		t.Fatalf("the whole snapshot after cleaning: %q, %v", b, err)
	}
}
