package eventlog

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestOpenEventLogCreatesStreams(t *testing.T) {
	l := startLog(t)
	ctx := context.Background()

	ev, err := l.js.Stream(ctx, EventStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ev.CachedInfo().Config
	if got := strings.Join(cfg.Subjects, ","); got != EventSubjects {
		t.Errorf("subjects %q", got)
	}
	if cfg.Storage != jetstream.FileStorage || cfg.Retention != jetstream.LimitsPolicy ||
		cfg.Discard != jetstream.DiscardNew || cfg.MaxAge != 0 || cfg.Duplicates != 24*time.Hour ||
		cfg.Replicas != 1 || cfg.MaxMsgsPerSubject != -1 || cfg.MaxMsgs != -1 || cfg.MaxBytes != -1 ||
		!cfg.AllowDirect || cfg.DenyDelete || cfg.DenyPurge {
		t.Errorf("KYC_EVENTS config %+v", cfg)
	}

	rj, err := l.js.Stream(ctx, RejectStream)
	if err != nil {
		t.Fatal(err)
	}
	rcfg := rj.CachedInfo().Config
	if got := strings.Join(rcfg.Subjects, ","); got != RejectSubjects {
		t.Errorf("reject subjects %q", got)
	}
	if rcfg.Storage != jetstream.FileStorage || rcfg.Discard != jetstream.DiscardOld ||
		rcfg.MaxBytes != DefaultRejectsMaxBytes || rcfg.Duplicates > time.Hour || rcfg.Replicas != 1 {
		t.Errorf("KYC_REJECTS config %+v", rcfg)
	}
}

func TestOpenEventLogReopenReportsDifferences(t *testing.T) {
	c := natsStart(t, NATSConfig{})
	l := logOpen(t, c, Config{}, nil)
	logAppend(t, l, logNth(0, 1))

	// Same settings: nothing to report, nothing lost.
	core, logs := observer.New(zapcore.WarnLevel)
	l2 := logOpen(t, c, Config{}, zap.New(core))
	if logs.Len() != 0 {
		t.Fatalf("re-open with the same settings warned: %v", logs.All())
	}
	if last, _ := l2.LastSeq(context.Background()); last != 1 {
		t.Fatalf("after re-open LastSeq %d, want 1", last)
	}

	// Different settings: one warning per setting, stream left as it was.
	core, logs = observer.New(zapcore.WarnLevel)
	logOpen(t, c, Config{DuplicateWindow: time.Hour, RejectsMaxBytes: 1 << 20}, zap.New(core))
	got := map[string]string{}
	for _, e := range logs.FilterMessage("stream setting differs from configuration; left unchanged").All() {
		f := e.ContextMap()
		got[fmt.Sprint(f["stream"], "/", f["setting"])] = fmt.Sprint(f["want"], " vs ", f["have"])
	}
	want := map[string]string{
		"KYC_EVENTS/duplicate_window": "1h0m0s vs 24h0m0s",
		"KYC_REJECTS/max_bytes":       "1048576 vs 67108864",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || logs.Len() != len(want) {
		t.Fatalf("warnings %v (all: %v), want %v", got, logs.All(), want)
	}
	s, err := l.js.Stream(context.Background(), EventStream)
	if err != nil {
		t.Fatal(err)
	}
	if d := s.CachedInfo().Config.Duplicates; d != 24*time.Hour {
		t.Fatalf("existing stream was changed: duplicates %v", d)
	}
}

func TestOpenEventLogRefusesImpossibleReplicas(t *testing.T) {
	c := natsStart(t, NATSConfig{})
	_, err := Open(context.Background(), c, Config{Replicas: 3}, zap.NewNop())
	if err == nil {
		t.Fatal("R3 on a single embedded server accepted")
	}
	if k := domain.KindOf(err); k != domain.KindInvalid && k != domain.KindUnavailable {
		t.Fatalf("kind %v: %v", k, err)
	}
}
