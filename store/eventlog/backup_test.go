package eventlog

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// A backup of KYC_EVENTS and KYC_KEYS restores into a fresh server as the same log: the
// same messages at the same sequences, every kept key opening its events, and the key of
// an applicant erased before the backup in no file of the backup or of the new server.
func TestBackupRestoreStreams(t *testing.T) {
	ctx := context.Background()
	src := natsStart(t, NATSConfig{SyncInterval: time.Minute})
	l := keyedLog(t, src, testMasterA)
	for n := 0; n < 3; n++ {
		for k := 0; k < 4; k++ {
			logAppend(t, l, logEvent(logApp(0), logApplicant(n), domain.EventInProgress, 10*n+k))
		}
	}
	erased := logApplicant(1)
	keyMsg, err := l.Keys().stream.GetLastMsgForSubject(ctx, "kyc.keys.app."+string(logApp(0))+"."+string(erased))
	if err != nil {
		t.Fatal(err)
	}
	e, err := l.Keys().BeginErasure(ctx, logApp(0), erased, "admin", "ticket 7")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Keys().DestroyKey(ctx, logApp(0), erased); err != nil {
		t.Fatal(err)
	}
	if err := l.Keys().EndErasure(ctx, e); err != nil {
		t.Fatal(err)
	}
	want := readAll(t, l)

	dir := t.TempDir()
	backups := map[string]StreamBackup{}
	for _, s := range []string{EventStream, KeyStream} {
		b, err := BackupStream(ctx, src, s, filepath.Join(dir, s))
		if err != nil {
			t.Fatalf("BackupStream %s: %v", s, err)
		}
		backups[s] = b
	}
	if b := backups[EventStream]; b.Messages != uint64(len(want)) || b.LastSeq != want[len(want)-1].Seq || b.SHA256 == "" {
		t.Fatalf("events backup = %+v, want %d messages up to seq %d", b, len(want), want[len(want)-1].Seq)
	}
	if _, err := BackupStream(ctx, src, EventStream, filepath.Join(dir, EventStream)); domain.KindOf(err) != domain.KindConflict {
		t.Fatalf("backup over a backup = %v, want KindConflict", err)
	}
	if _, err := BackupStream(ctx, src, "NO_SUCH", filepath.Join(dir, "none")); domain.KindOf(err) != domain.KindNotFound {
		t.Fatalf("backup of a missing stream = %v, want KindNotFound", err)
	}
	secret := [][]byte{keyMsg.Data, []byte("ticket 7")}
	assertNoFileHolds(t, dir, secret...)

	dstDir := t.TempDir()
	dst := natsStart(t, NATSConfig{StoreDir: dstDir, SyncInterval: time.Minute})
	for _, s := range []string{EventStream, KeyStream} {
		got, err := RestoreStream(ctx, dst, s, filepath.Join(dir, s), backups[s].SHA256, nil, 0)
		if err != nil {
			t.Fatalf("RestoreStream %s: %v", s, err)
		}
		if got.Messages != backups[s].Messages || got.LastSeq != backups[s].LastSeq {
			t.Fatalf("restored %s = %+v, backed up %+v", s, got, backups[s])
		}
	}
	if _, err := RestoreStream(ctx, dst, EventStream, filepath.Join(dir, EventStream), "", nil, 0); domain.KindOf(err) != domain.KindConflict {
		t.Fatalf("restore over an existing stream = %v, want KindConflict", err)
	}
	r := keyedLog(t, dst, testMasterA)
	got := readAll(t, r)
	if len(got) != len(want) {
		t.Fatalf("restored log has %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Seq != want[i].Seq || !bytes.Equal(got[i].Stored, want[i].Stored) {
			t.Fatalf("event %d differs after restore: seq %d vs %d", i, got[i].Seq, want[i].Seq)
		}
		ev, _ := DecodeEvent(got[i].Seq, got[i].Stored)
		err := r.Keys().Open(ctx, &ev)
		if ev.ApplicantID == erased {
			if domain.KindOf(err) != domain.KindNotFound {
				t.Fatalf("erased applicant's event opens after restore: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("event %d does not open after restore: %v", got[i].Seq, err)
		}
	}
	assertNoFileHolds(t, dstDir, secret...)
}

// A damaged archive is refused before anything reaches the server.
func TestRestoreRefusesDamagedBackup(t *testing.T) {
	ctx := context.Background()
	src := natsStart(t, NATSConfig{SyncInterval: time.Minute})
	l := keyedLog(t, src, testMasterA)
	logAppend(t, l, logEvent(logApp(0), logApplicant(0), domain.EventCreated, 0))
	dir := filepath.Join(t.TempDir(), EventStream)
	b, err := BackupStream(ctx, src, EventStream, dir)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, BackupArchiveFile)
	data, _ := os.ReadFile(archive)
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(archive, data, 0o600); err != nil {
		t.Fatal(err)
	}
	dst := natsStart(t, NATSConfig{SyncInterval: time.Minute})
	if _, err := RestoreStream(ctx, dst, EventStream, dir, b.SHA256, nil, 0); domain.KindOf(err) != domain.KindInvalid {
		t.Fatalf("restore of a damaged archive = %v, want KindInvalid", err)
	}
	if _, err := RestoreStream(ctx, dst, KeyStream, dir, "", nil, 0); domain.KindOf(err) != domain.KindInvalid {
		t.Fatalf("restore of another stream's backup = %v, want KindInvalid", err)
	}
	if ok, _, err := StreamExists(ctx, dst, EventStream); err != nil || ok {
		t.Fatalf("after refused restores the server has %s: %v, %v", EventStream, ok, err)
	}
}

// assertNoFileHolds fails the test if any file under dir holds one of the needles.
func assertNoFileHolds(tb testing.TB, dir string, needles ...[]byte) {
	tb.Helper()
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(data, n) {
				tb.Errorf("%s holds %.40q", path, n)
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}
