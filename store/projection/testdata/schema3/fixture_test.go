// This generator wrote testdata/schema3: a stream and a projection as kycstate wrote them
// at schema 3, before other providers (main at ab7cb1e52184eb83d094d222f840df5998543c5a).
// It is kept here, outside the build, to say how they were made. To make them again with
// that build, copy it into store/projection of a checkout of that commit and run
//
//	FIXTURE_DIR=$PWD/store/projection/testdata/schema3 go test -run TestWriteSchema3Fixture ./store/projection/
package projection

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/store/eventlog"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

func TestWriteSchema3Fixture(t *testing.T) {
	out := os.Getenv("FIXTURE_DIR")
	if out == "" {
		t.Skip("FIXTURE_DIR not set")
	}
	ctx := context.Background()
	c, err := eventlog.Connect(ctx, eventlog.NATSConfig{StoreDir: t.TempDir()}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mk, err := eventlog.ParseMasterKey(strings.Repeat("5c", 32))
	if err != nil {
		t.Fatal(err)
	}
	l, err := eventlog.Open(ctx, c, eventlog.Config{Keys: &eventlog.MasterKeys{Current: mk}}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	const app = domain.AppKey("71f2c0c6-c720-423b-8df0-7763102ad57e")
	ids := []domain.ApplicantID{"0d4c1c8e-6f7e-4e43-9a42-3f2a1f9f0c11", "5e1a8c2b-7d3f-4a6e-9b0c-1f2e3d4c5b6a", "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"}
	t0 := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	type step struct {
		id   int
		typ  domain.EventType
		at   int // seconds after t0
		step string
		ext  string
	}
	steps := []step{
		{0, "applicantCreated", 0, "", "user-1"}, {1, "applicantCreated", 1, "", "user-2"},
		{0, "applicantInProgress", 10, "", ""}, {0, "applicantStepPassed", 11, "IDENTITY", ""},
		{1, "applicantApproved", 12, "", "user-2"},                                  // irregular: INIT -> APPROVED
		{0, "applicantInReview", 20, "", ""}, {0, "applicantCompleted", 15, "", ""}, // stale
		{2, "applicantCreated", 30, "", "user-1"}, {2, "somethingNew", 31, "", ""},
		{0, "applicantApproved", 40, "", ""}, {2, "applicantInProgress", 41, "", ""},
		{0, "applicantApproved", 40, "", ""}, // duplicate: same type and time
		{1, "applicantRejected", 50, "", ""}, {2, "expiredDocument", 52, "", ""},
	}
	for i, s := range steps {
		payload := map[string]any{"type": s.typ, "id": ids[s.id], "appKey": app, "n": i}
		if s.ext != "" {
			payload["externalUserId"] = s.ext
		}
		pb, _ := json.Marshal(payload)
		at := t0.Add(time.Duration(s.at) * time.Second)
		ev := domain.Event{Provider: "allpass", Origin: domain.OriginWebhook, AppKey: app, ApplicantID: ids[s.id],
			ExternalUserID: domain.ExternalUserID(s.ext), Type: s.typ, StepName: s.step, EventAt: at,
			EventAtSource: domain.SourcePayloadUpdatedAt, ReceivedAt: at.Add(time.Second), Payload: pb,
			Raw:       &domain.Raw{Body: fmt.Sprintf(`{"data":"%d"}`, i), Signature: "sig"},
			ContentID: domain.NewContentID("allpass", string(app), fmt.Appendf(nil, "data-%d", i))}
		if _, _, err := l.Append(ctx, &ev, string(ev.ContentID)); err != nil {
			t.Fatal(err)
		}
	}
	var evs []domain.Event
	if err := l.Read(ctx, 1, 100, func(b []domain.Event) error { evs = append(evs, b...); return nil }); err != nil {
		t.Fatal(err)
	}
	var stream bytes.Buffer
	for _, ev := range evs {
		subject, _ := eventlog.Subject(ev.AppKey, ev.ApplicantID)
		fmt.Fprintf(&stream, "%d %s %s\n", ev.Seq, subject, base64.StdEncoding.EncodeToString(ev.Stored))
	}
	// The projection folds all but the last three events, which the new build applies
	// on top of it.
	path := filepath.Join(t.TempDir(), "p.db")
	p, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := domain.NewFolder()
	for i := 0; i+3 < len(evs); i += 4 {
		if _, err := p.Apply(evs[i:min(i+4, len(evs)-3)], f); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var proj bytes.Buffer
	db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			fmt.Fprintf(&proj, "bucket %s\n", name)
			return b.ForEach(func(k, v []byte) error {
				fmt.Fprintf(&proj, "%s %s\n", hex.EncodeToString(k), hex.EncodeToString(v))
				return nil
			})
		})
	})
	db.Close()
	if err := os.WriteFile(filepath.Join(out, "stream.txt"), stream.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "projection.txt"), proj.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
