package erase

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/jstest"
	"github.com/kycstate/kycstate/store/eventlog"
	"go.uber.org/zap/zaptest"
)

// failingRejects refuses the first fail deletions, then passes them to the log.
type failingRejects struct {
	*eventlog.EventLog
	fail atomic.Int32
}

func (f *failingRejects) DeleteProviderRejects(ctx context.Context, p domain.Provider, app domain.AppKey, id domain.ApplicantID) (int, error) {
	if f.fail.Add(-1) >= 0 {
		return 0, domain.E("test", domain.KindUnavailable, "rejects not deleted")
	}
	return f.EventLog.DeleteProviderRejects(ctx, p, app, id)
}

// filesHolding lists the files under dir that contain needle.
func filesHolding(t *testing.T, dir string, needle string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(needle)) {
			hits = append(hits, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// TestErasureDeletesRejects: erasing an applicant securely deletes its authenticated
// rejects (no byte of their bodies stays in the store's files) and leaves another
// applicant's. A deletion that fails leaves the erasure pending; Run's retry finishes it.
func TestErasureDeletesRejects(t *testing.T) {
	m, err := eventlog.ParseMasterKey(master)
	if err != nil {
		t.Fatal(err)
	}
	js := jstest.Start(t)
	events := js.EventLog(t, eventlog.Config{Keys: &eventlog.MasterKeys{Current: m}}, zaptest.NewLogger(t))
	ctx := context.Background()
	erased, kept := applicant(1), applicant(2)
	webhook(t, events, erased, "applicantCreated", 1, base)
	webhook(t, events, kept, "applicantCreated", 1, base)
	reject := func(id domain.ApplicantID, body string) {
		t.Helper()
		err := events.Reject(ctx, domain.Reject{Reason: "invalid_payload", Status: 422, Body: body, RemoteAddr: "192.0.2.1:1",
			ReceivedAt: base, Kept: domain.KeptAuthenticated, Provider: "allpass", AppKey: app, ApplicantID: id})
		if err != nil {
			t.Fatal(err)
		}
	}
	reject(erased, "refused-body-of-the-erased-one-a1")
	reject(kept, "refused-body-of-the-kept-one-b2")
	reject(erased, "refused-body-of-the-erased-one-a3")
	for _, b := range []string{"refused-body-of-the-erased-one-a1", "refused-body-of-the-erased-one-a3"} {
		if len(filesHolding(t, js.Dir, b)) == 0 {
			t.Fatalf("%s is not in the store files before erasure: the check would prove nothing", b)
		}
	}

	rejects := &failingRejects{EventLog: events}
	rejects.fail.Store(1)
	e, err := New(Config{Events: events, Keys: events.Keys(), Rejects: rejects, Logger: zaptest.NewLogger(t), RetryEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	seq, pending, err := e.Erase(ctx, app, erased, "dpo", "request 42")
	if err != nil || seq == 0 || !pending {
		t.Fatalf("erase with the rejects' deletion refused: seq %d pending %v %v; want appended and pending", seq, pending, err)
	}
	if n := len(listRejects(t, events)); n != 3 {
		t.Fatalf("%d rejects after a refused deletion", n)
	}
	if n, err := e.ResumePending(ctx); err != nil || n != 1 {
		t.Fatalf("resume: %d %v", n, err)
	}
	rs := listRejects(t, events)
	if len(rs) != 1 || rs[0].ApplicantID != kept {
		t.Fatalf("rejects left %+v; want the other applicant's only", rs)
	}
	for _, b := range []string{"refused-body-of-the-erased-one-a1", "refused-body-of-the-erased-one-a3"} {
		if hits := filesHolding(t, js.Dir, b); len(hits) > 0 {
			t.Fatalf("%s still in %v", b, hits)
		}
	}
	if len(filesHolding(t, js.Dir, "refused-body-of-the-kept-one-b2")) == 0 {
		t.Fatal("the other applicant's reject left the store files")
	}
	if pend, err := events.Keys().PendingErasures(ctx); err != nil || len(pend) != 0 {
		t.Fatalf("pending erasures %v %v", pend, err)
	}
}

func listRejects(t *testing.T, events *eventlog.EventLog) []domain.Reject {
	t.Helper()
	var out []domain.Reject
	if err := events.Rejects(context.Background(), 1, func(r domain.Reject) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}
