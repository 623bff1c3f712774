package eventlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go/jetstream"
)

// sampleShare counts the messages and bytes (subject, headers and data) on the sample
// subjects of KYC_REJECTS.
func sampleShare(tb testing.TB, l *EventLog) (msgs, bytes int) {
	tb.Helper()
	ctx := context.Background()
	for seq := uint64(1); ; {
		m, err := l.rejects.GetMsg(ctx, seq, jetstream.WithGetMsgSubject("kyc.rejects.unauth.>"))
		if err != nil {
			return msgs, bytes
		}
		seq = m.Sequence + 1
		msgs++
		bytes += len(m.Subject) + len(m.Data)
		for k, vs := range m.Header {
			for _, v := range vs {
				bytes += len(k) + len(v)
			}
		}
	}
}

// TestSamplesCannotEvictAuthenticatedRejects: a flood of samples from many sources,
// more than the whole stream holds, stays inside the sample ring's share; the
// authenticated reject kept before it is still there.
func TestSamplesCannotEvictAuthenticatedRejects(t *testing.T) {
	c := natsStart(t, NATSConfig{SyncInterval: time.Minute})
	l := logOpen(t, c, Config{RejectsMaxBytes: 4 << 20}, nil)
	ctx := context.Background()
	if err := l.Reject(ctx, logReject(1, "invalid_payload")); err != nil {
		t.Fatal(err)
	}
	junk := strings.Repeat("<junk>", 1<<20/6) // a 1 MB body, cut to its first 4 KiB
	const n = 1000                            // ~7 MB of samples into a 4 MiB stream
	for i := range n {
		if err := l.Reject(ctx, logSample(i, fmt.Sprintf("203.0.113.%d:%d", i%50, 1000+i), junk)); err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
	}
	msgs, size := sampleShare(t, l)
	share := l.SampleShareBytes()
	if slots := sampleSlots(4 << 20); msgs > SampleBuckets*slots || int64(size) > share+int64(64*msgs) || share > 1<<20 {
		t.Fatalf("samples hold %d messages, %d bytes; the share is %d messages, %d bytes (a quarter of 4 MiB)",
			msgs, size, SampleBuckets*slots, share)
	}
	t.Logf("%d samples sent; %d kept, %d bytes (share bound %d)", n, msgs, size, share)
	got := readRejects(t, l)
	if len(got) == 0 || got[0].Seq != 1 || got[0].Kept != domain.KeptAuthenticated || got[0].ApplicantID != logApplicant(1) {
		t.Fatalf("the authenticated reject is gone: first kept %+v", got[0])
	}
	if len(got) != msgs+1 {
		t.Fatalf("%d rejects listed, want %d samples and the authenticated one", len(got), msgs)
	}
}

// TestRejectStreamOfEarlierVersion: KYC_REJECTS as the version before the split made it
// (no rollups, no age bound, rejects on kyc.rejects.<reason>) is updated on Open without
// losing a reject: the old ones keep listing, whole, and new ones of both kinds are kept.
func TestRejectStreamOfEarlierVersion(t *testing.T) {
	c := natsStart(t, NATSConfig{SyncInterval: time.Minute})
	ctx := context.Background()
	old := RejectStreamConfig(Config{})
	old.AllowRollup, old.MaxAge = false, 0
	s, err := c.JS.CreateStream(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	var legacy []domain.Reject
	for i, reason := range []string{"bad_signature", "invalid_payload", "bad_signature"} {
		r := domain.Reject{App: "main", Reason: reason, Message: "old", Status: 401,
			Body: fmt.Sprintf(`{"data":"old-%d"}`, i), Headers: map[string]string{"x-allpass-signature": "ab"},
			RemoteAddr: "192.0.2.1:1", ReceivedAt: time.Date(2025, 1, 1, 0, 0, i, 0, time.UTC)}
		data, _ := json.Marshal(r)
		if _, err := c.JS.Publish(ctx, "kyc.rejects."+reason, data); err != nil {
			t.Fatal(err)
		}
		r.Seq = uint64(i + 1)
		legacy = append(legacy, r)
	}
	if info, _ := s.Info(ctx); info.Config.AllowRollup {
		t.Fatal("the old stream allows rollups already")
	}

	l := logOpen(t, c, Config{}, nil)
	info, err := l.rejects.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Config.AllowRollup || info.Config.MaxAge != DefaultRejectsMaxAge || info.State.Msgs != 3 {
		t.Fatalf("after Open: rollup %v, max age %s, %d messages", info.Config.AllowRollup, info.Config.MaxAge, info.State.Msgs)
	}
	if err := l.Reject(ctx, logReject(1, "invalid_payload")); err != nil {
		t.Fatal(err)
	}
	slots := sampleSlots(DefaultRejectsMaxBytes)
	for i := range 2 * slots {
		if err := l.Reject(ctx, logSample(i, "192.0.2.200:9", "x")); err != nil {
			t.Fatal(err)
		}
	}
	got := readRejects(t, l)
	if len(got) != 3+1+slots {
		t.Fatalf("%d rejects; want 3 old, 1 authenticated and one bucket of samples", len(got))
	}
	for i, want := range legacy {
		if fmt.Sprint(got[i]) != fmt.Sprint(want) || got[i].Kept != "" || got[i].Truncated() {
			t.Fatalf("old reject %d:\n got %+v\nwant %+v", i, got[i], want)
		}
	}
	// Opened again (the next start): nothing more to update, nothing lost.
	l2 := logOpen(t, c, Config{}, nil)
	if n := len(readRejects(t, l2)); n != len(got) {
		t.Fatalf("%d rejects after a second Open, want %d", n, len(got))
	}
}

// storeHolds reports the files under dir that contain needle.
func storeHolds(tb testing.TB, dir string, needle []byte) []string {
	tb.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, needle) {
			hits = append(hits, path)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return hits
}

// TestDeleteRejects: the authenticated rejects of one applicant, of every provider, are
// deleted and their bytes overwritten in the store's files; those of other applicants,
// of no applicant and the samples stay. A second run finds nothing.
func TestDeleteRejects(t *testing.T) {
	dir := t.TempDir()
	c := natsStart(t, NATSConfig{StoreDir: dir, SyncInterval: time.Minute})
	l := logOpen(t, c, Config{}, nil)
	ctx := context.Background()
	mark := func(who string) string { return "body-of-" + who + "-7f3a9c" }
	keep := func(r domain.Reject, who string) {
		t.Helper()
		r.Body = mark(who)
		if err := l.Reject(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	erased := logReject(1, "invalid_payload")
	keep(erased, "erased-1")
	other := logReject(2, "invalid_payload")
	keep(other, "other")
	onfido := logReject(1, "invalid_payload")
	onfido.Provider = "onfido"
	keep(onfido, "erased-2")
	none := logReject(3, "invalid_payload")
	none.ApplicantID = ""
	keep(none, "none")
	otherApp := logReject(1, "invalid_payload")
	otherApp.AppKey = logApp(2)
	keep(otherApp, "other-app")
	keep(logSample(1, "192.0.2.9:1", ""), "sample")
	keep(erased, "erased-3")

	for _, who := range []string{"erased-1", "erased-2", "erased-3", "other"} {
		if len(storeHolds(t, dir, []byte(mark(who)))) == 0 {
			t.Fatalf("%s is not in the store files before the deletion: the check would prove nothing", who)
		}
	}
	n, err := l.DeleteRejects(ctx, logApp(1), logApplicant(1))
	if err != nil || n != 3 {
		t.Fatalf("DeleteRejects: %d, %v; want 3", n, err)
	}
	var left []string
	for _, r := range readRejects(t, l) {
		left = append(left, r.Body)
	}
	want := []string{mark("other"), mark("none"), mark("other-app"), mark("sample")}
	if fmt.Sprint(left) != fmt.Sprint(want) {
		t.Fatalf("left %v, want %v", left, want)
	}
	for _, who := range []string{"erased-1", "erased-2", "erased-3"} {
		if hits := storeHolds(t, dir, []byte(mark(who))); len(hits) > 0 {
			t.Fatalf("%s still in %v", who, hits)
		}
	}
	if hits := storeHolds(t, dir, []byte(mark("other"))); len(hits) == 0 {
		t.Fatal("another applicant's reject left the store files")
	}
	if n, err := l.DeleteRejects(ctx, logApp(1), logApplicant(1)); err != nil || n != 0 {
		t.Fatalf("second DeleteRejects: %d, %v", n, err)
	}
	if _, err := l.DeleteRejects(ctx, "a.b", logApplicant(1)); domain.KindOf(err) != domain.KindInvalid {
		t.Fatalf("bad app: %v", err)
	}
	if _, err := l.DeleteRejects(ctx, logApp(1), "*"); domain.KindOf(err) != domain.KindInvalid {
		t.Fatalf("bad applicant: %v", err)
	}
}

// TestSamplesCannotEvictFromAFullStream: in a KYC_REJECTS its authenticated rejects have
// filled, a sample would be stored (dropping the oldest reject to make room) before its
// rollup removed the sample it replaces; so samples are refused there
// (domain.ErrNoRoomForSample) and every authenticated reject stays. Before, each sample
// of a flood dropped one.
func TestSamplesCannotEvictFromAFullStream(t *testing.T) {
	c := natsStart(t, NATSConfig{SyncInterval: time.Minute})
	const bound = 1 << 20
	l := logOpen(t, c, Config{RejectsMaxBytes: bound}, nil)
	ctx := context.Background()
	pad := strings.Repeat("p", 40<<10)
	for i := 0; ; i++ {
		r := logReject(i, "invalid_payload")
		r.Body += pad
		if err := l.Reject(ctx, r); err != nil {
			t.Fatal(err)
		}
		info, err := l.rejects.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.FirstSeq > 1 { // full: the bound dropped the first
			break
		}
	}
	before := readRejects(t, l)
	refused := 0
	for i := range 200 {
		err := l.Reject(ctx, logSample(i, fmt.Sprintf("203.0.113.%d:1", i%50), strings.Repeat("j", 3000)))
		switch {
		case errors.Is(err, domain.ErrNoRoomForSample) && domain.KindOf(err) == domain.KindUnavailable:
			refused++
		case err != nil:
			t.Fatalf("sample %d: %v", i, err)
		}
	}
	after := readRejects(t, l)
	if len(after) != len(before) || after[0].Seq != before[0].Seq {
		t.Fatalf("%d authenticated rejects from seq %d before 200 samples, %d from seq %d after; %d samples refused",
			len(before), before[0].Seq, len(after), after[0].Seq, refused)
	}
	if refused != 200 {
		t.Fatalf("%d of 200 samples refused in a full stream", refused)
	}
}

// TestSamplesKeptWhileThereIsRoom: the headroom check refuses nothing in a stream that
// has room, past the samples' own share.
func TestSamplesKeptWhileThereIsRoom(t *testing.T) {
	c := natsStart(t, NATSConfig{SyncInterval: time.Minute})
	l := logOpen(t, c, Config{RejectsMaxBytes: 1 << 20}, nil)
	ctx := context.Background()
	for i := range 100 {
		if err := l.Reject(ctx, logSample(i, fmt.Sprintf("203.0.113.%d:1", i), strings.Repeat("j", 4000))); err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
	}
	if msgs, _ := sampleShare(t, l); msgs == 0 || msgs > SampleBuckets*sampleSlots(1<<20) {
		t.Fatalf("%d samples kept", msgs)
	}
}
