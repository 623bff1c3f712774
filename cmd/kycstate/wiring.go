package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kycstate/kycstate/api"
	"github.com/kycstate/kycstate/erase"
	"github.com/kycstate/kycstate/reconcile"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Wiring: how the config becomes each package's options, and the process-wide pieces
// (logger, data-dir lock, metrics handler) that several commands share.

func withMetrics(h http.Handler, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.Handle("GET /metrics", promhttpHandler(reg))
	return mux
}

// natsSeedName is the file under data_dir holding the nkey seed that serve's embedded
// server, once nats.listen is set, requires of every client (itself included). serve
// makes it (0600) the first time; the tools read it.
const natsSeedName = "nats-client.nk"

// natsConfig is the connection r describes. With nats.url set and no credentials
// configured, the listener credentials under data_dir are presented when they exist: an
// operator runs the tools against a running serve with its config and
// KYCSTATE_NATS_URL, nothing else.
func natsConfig(r *Resolved, name string) eventlog.NATSConfig {
	c := eventlog.NATSConfig{
		URLs: r.URLs, StoreDir: filepath.Join(r.DataDir, "nats"), Listen: r.NATS.Listen,
		ListenSeed:   filepath.Join(r.DataDir, natsSeedName),
		SyncInterval: r.Sync, Name: "kycstate-" + name,
		Credentials: r.NATS.Credentials, User: r.NATS.User, Password: r.NATSPassword,
		TLS: eventlog.TLSFiles{CA: r.NATS.TLS.CA, Cert: r.NATS.TLS.Cert, Key: r.NATS.TLS.Key},
	}
	if len(c.URLs) > 0 && c.Credentials == "" && c.User == "" {
		if _, err := os.Stat(c.ListenSeed); err == nil {
			c.Credentials = c.ListenSeed
		}
	}
	return c
}

func logConfig(r *Resolved) eventlog.Config {
	return eventlog.Config{
		Replicas: r.NATS.Replicas, DuplicateWindow: time.Duration(r.NATS.DuplicateWindow),
		RejectsMaxBytes: r.NATS.RejectsMaxBytes, RejectsMaxAge: time.Duration(r.NATS.RejectsMaxAge),
		Keys: r.Keys,
	}
}

func reconcileConfig(r *Resolved) reconcile.Config {
	return reconcile.Config{
		Every: time.Duration(r.Reconcile.Every), StaleAfter: time.Duration(r.Reconcile.StaleAfter),
		FullEvery: time.Duration(r.Reconcile.FullEvery), Rate: r.Reconcile.Rate,
		KeepRaw:       r.Ingest.KeepRaw == nil || *r.Ingest.KeepRaw,
		AppendTimeout: time.Duration(r.Ingest.AppendTimeout),
	}
}

// leaseHolder names this process in a lease: mode, host and pid, and a random suffix so
// that a restarted process with the same pid is a new holder.
func leaseHolder(mode string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s@%s/%d/%s", mode, host, os.Getpid(), randHex(4))
}

func apiTokens(r *Resolved) []api.Token {
	out := make([]api.Token, 0, len(r.Tokens))
	for _, t := range r.Tokens {
		out = append(out, api.Token{Name: t.Name, Role: t.Role, Secret: t.Secret})
	}
	return out
}

func newLogger(c LogConfig, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, cfgErr("log.level", "must be debug, info, warn or error")
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if c.Format == "console" {
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), lvl)), nil
}

// lockDataDir takes an exclusive lock on data_dir, so a second instance fails fast with a
// clear message instead of two embedded servers writing one store.
func lockDataDir(dir string) (func(), error) {
	path := filepath.Join(dir, "kycstate.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data_dir %s is in use by another kycstate process (lock %s held); stop it first or use another data_dir", dir, path)
	}
	return func() { f.Close() }, nil
}

func promhttpHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// retentionLease is the retention sweep's MayRun: this node sweeps while it holds the
// lease "retention", taken for a round and a minute and taken again each round, so the
// holder keeps it and another node takes over a round after the holder is gone.
func retentionLease(leases *eventlog.Leases, holder string, every time.Duration) func(ctx context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		_, err := leases.Acquire(ctx, "retention", holder, every+time.Minute)
		if errors.Is(err, eventlog.ErrLeaseHeld) {
			return false, nil
		}
		return err == nil, err
	}
}

// indexerOf is the log's key ring as the projection's Indexer (the blind index of sealed
// externalUserIds): nil, not a nil *eventlog.Keyring in a non-nil interface, without one.
func indexerOf(events *eventlog.EventLog) projection.Indexer {
	if k := events.Keys(); k != nil {
		return k
	}
	return nil
}

// rebuildIndexer is the Indexer of a rebuild: a snapshot of the key ring, read once,
// so that the rebuild does not fetch a data key per applicant (eventlog.KeySnapshot).
func rebuildIndexer(ctx context.Context, events *eventlog.EventLog) (projection.Indexer, error) {
	k := events.Keys()
	if k == nil {
		return nil, nil
	}
	s, err := k.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// keyringOf is the log's key ring for erase.Config: nil, not a nil *eventlog.Keyring in
// a non-nil interface, when the log was opened without master keys, so that erase.New
// refuses it rather than an erasure failing on it later.
func keyringOf(events *eventlog.EventLog) erase.Keyring {
	if k := events.Keys(); k != nil {
		return k
	}
	return nil
}
