package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/kycstate/kycstate/api"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest"
	"github.com/kycstate/kycstate/projector"
	"github.com/kycstate/kycstate/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

const serveHelp = `Runs the whole service in one process: an embedded nats-server (JetStream, fsync on every
write, no TCP port unless nats.listen is set; or the external NATS at nats.url), the webhook
endpoint (ingest.listen, default :8080), the projector, and the read API (api.listen, default
127.0.0.1:8081). Data lives under data_dir (default ./data).

With no --config and no KYCSTATE_APPS_* variables it starts in development mode: it generates
an Allpass app's keys and two API tokens, writes them to <data_dir>/dev.yaml, and prints them
once. "kycstate sim" picks them up from there.

SIGINT or SIGTERM stops accepting webhooks, finishes the appends in flight, then closes the log.`

const ingestHelp = `Runs only the webhook endpoint against an external NATS (nats.url, several URLs for a
cluster, comma-separated). Stateless: run as many as you like behind a load balancer.`

const queryHelp = `Runs a query node against an external NATS (nats.url): the projector folds the whole log into
<data_dir>/projection.db and the read API serves it. Each query node keeps its own file; a new
one catches up from sequence 1.`

func cmdServe(ctx context.Context, e *env, args []string) error {
	return runService(ctx, e, args, "serve", serveHelp, true, true)
}

func cmdIngest(ctx context.Context, e *env, args []string) error {
	return runService(ctx, e, args, "ingest", ingestHelp, true, false)
}

func cmdQuery(ctx context.Context, e *env, args []string) error {
	return runService(ctx, e, args, "query", queryHelp, false, true)
}

// runService runs the ingest half, the query half, or both, until ctx ends.
func runService(ctx context.Context, e *env, args []string, name, help string, withIngest, withQuery bool) error {
	fs := newFlags(e, name, help)
	cfgPath := fs.String("config", "", "YAML config file")
	if err := parse(fs, args); err != nil {
		return err
	}
	embedded := name == "serve"
	cfg, err := loadServiceConfig(e, *cfgPath, embedded)
	if err != nil {
		return err
	}
	r, err := resolveConfig(cfg, e.getenv, withIngest, withQuery)
	if err != nil {
		return err
	}
	if !embedded && len(r.URLs) == 0 {
		return cfgErr("nats.url", "%s needs an external NATS; use serve for the embedded one", name)
	}
	lg, err := newLogger(r.Log, e.stderr)
	if err != nil {
		return err
	}
	defer lg.Sync() //nolint:errcheck // stderr sync errors are not actionable
	lg = lg.With(zap.String("mode", name))

	if err := os.MkdirAll(r.DataDir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	if embedded || withQuery {
		unlock, err := lockDataDir(r.DataDir)
		if err != nil {
			return err
		}
		defer unlock()
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	conn, err := store.Connect(ctx, natsConfig(r, name), lg)
	if err != nil {
		return err
	}
	defer conn.Close()
	elog, err := store.OpenEventLog(ctx, conn, logConfig(r), lg)
	if err != nil {
		return err
	}

	var (
		wg       sync.WaitGroup
		servers  []*http.Server
		errc     = make(chan error, 4)
		runCtx   context.Context
		stopRest context.CancelFunc
	)
	runCtx, stopRest = context.WithCancel(context.WithoutCancel(ctx))
	defer stopRest()

	var proj *store.Projection
	if withQuery {
		proj, err = store.OpenProjection(filepath.Join(r.DataDir, "projection.db"), store.ProjectionOptions{})
		if err != nil {
			return err
		}
		defer proj.Close()
		pj := projector.New(elog, proj, projector.Config{
			MaxBatch: r.Projector.Batch, MaxWait: time.Duration(r.Projector.BatchWait),
		}, lg, reg)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := pj.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- err
			}
		}()
		h, err := api.NewServer(api.Config{
			Projection: proj, Tokens: apiTokens(r), Logger: lg,
			Gatherer: reg, Metrics: reg, MaxWait: time.Duration(r.API.MaxWait),
			Ready:  func(ctx context.Context) error { return pj.Ready(ctx, r.API.ReadyLag) },
			Lag:    pj.Lag,
			Verify: func(ctx context.Context) (domain.VerifyResult, error) { return store.Verify(ctx, elog, proj) },
		})
		if err != nil {
			return err
		}
		servers = append(servers, api.NewHTTPServer(r.API.Listen, h))
	}
	var ingestSrv *http.Server
	if withIngest {
		h, err := ingest.NewHandler(ingest.HandlerConfig{
			Apps: r.Apps, Log: elog, Logger: lg, Metrics: reg,
			MaxBody: r.Ingest.MaxBody, MaxInFlight: r.Ingest.MaxInFlight,
			AppendTimeout: time.Duration(r.Ingest.AppendTimeout), KeepRaw: r.Ingest.KeepRaw == nil || *r.Ingest.KeepRaw,
			Ready: func(ctx context.Context) error { _, err := elog.LastSeq(ctx); return err },
		})
		if err != nil {
			return err
		}
		if !withQuery {
			h = withMetrics(h, reg)
		}
		ingestSrv = ingest.NewHTTPServer(r.Ingest.Listen, h)
		servers = append(servers, ingestSrv)
	}

	// Listen before announcing, so a port in use is a clear startup error.
	for _, srv := range servers {
		ln, err := net.Listen("tcp", srv.Addr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", srv.Addr, err)
		}
		lg.Info("listening", zap.String("addr", ln.Addr().String()))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	lg.Info("started", zap.Bool("embeddedNATS", len(r.URLs) == 0), zap.String("dataDir", r.DataDir))

	var runErr error
	select {
	case <-ctx.Done():
		lg.Info("stopping: signal received")
	case runErr = <-errc:
		lg.Error("stopping on error", zap.Error(runErr))
	}

	// Shutdown order is the durability contract: stop accepting webhooks and let every
	// in-flight append get its PubAck and its answer, then stop the readers, then close
	// the log. A webhook either got 200 after its append, or no answer it could trust.
	shutCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if ingestSrv != nil {
		if err := ingestSrv.Shutdown(shutCtx); err != nil {
			lg.Warn("ingest shutdown", zap.Error(err))
		}
	}
	for _, srv := range servers {
		if srv != ingestSrv {
			srv.Shutdown(shutCtx) //nolint:errcheck // readers may be cut at shutdown
		}
	}
	stopRest()
	wg.Wait()
	lg.Info("stopped")
	return runErr
}

func withMetrics(h http.Handler, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.Handle("GET /metrics", promhttpHandler(reg))
	return mux
}

func natsConfig(r *Resolved, name string) store.NATSConfig {
	return store.NATSConfig{
		URLs: r.URLs, StoreDir: filepath.Join(r.DataDir, "nats"), Listen: r.NATS.Listen,
		SyncInterval: r.Sync, Name: "kycstate-" + name,
	}
}

func logConfig(r *Resolved) store.LogConfig {
	return store.LogConfig{
		Replicas: r.NATS.Replicas, DuplicateWindow: time.Duration(r.NATS.DuplicateWindow),
		AppendTimeout: time.Duration(r.Ingest.AppendTimeout), RejectsMaxBytes: r.NATS.RejectsMaxBytes,
	}
}

func apiTokens(r *Resolved) []api.Token {
	out := make([]api.Token, 0, len(r.Tokens))
	for _, t := range r.Tokens {
		out = append(out, api.Token{Name: t.Name, Role: api.Role(t.Role), Secret: t.Secret})
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
