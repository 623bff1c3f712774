package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kycstate/kycstate/api"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/erase"
	"github.com/kycstate/kycstate/ingest"
	"github.com/kycstate/kycstate/projector"
	"github.com/kycstate/kycstate/reconcile"
	"github.com/kycstate/kycstate/snapshot"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// Mode says which halves of the service a Main runs.
type Mode struct {
	Name   string // serve, ingest or query: names the process in logs and in NATS
	Ingest bool   // the webhook endpoint
	Query  bool   // the projector and the read API
	// Embedded allows the embedded nats-server (serve); the other modes need nats.url.
	Embedded bool
	// FromScratch: a query node without a projection folds the log from sequence 1
	// instead of restoring the newest snapshot it can read.
	FromScratch bool
}

// Start steps, in order. A failed start returns an error that begins "start <step>:".
const (
	stepDataDir     = "data dir"
	stepLock        = "lock"
	stepNATS        = "nats"
	stepEventLog    = "event log"
	stepShred       = "shred"
	stepRestore     = "restore"
	stepProjection  = "projection"
	stepSnapshot    = "snapshot"
	stepErase       = "erase"
	stepReconcile   = "reconcile"
	stepAPI         = "api"
	stepIngest      = "ingest"
	stepListenAPI   = "listen api"
	stepListenHooks = "listen ingest"
)

// shutdownTimeout bounds how long the webhook endpoint waits for in-flight appends (each
// is itself bounded by ingest.append_timeout) and the read API for its requests.
const shutdownTimeout = 30 * time.Second

// scrubWait bounds how long the scrub after an erasure waits for the API's reads that
// hold the freed pages (each lasts milliseconds); past it the next batch tries again.
const scrubWait = 2 * time.Second

// Main is one run of serve, ingest or query, for the binary and for in-process tests.
//
// Run opens everything that can fail first (data dir lock, NATS, event log, projection,
// handlers, listeners), in that order, and starts no goroutine until all of it has
// succeeded; a failed step closes what the earlier steps opened, in reverse, and Run
// returns an error naming the step. Then every component (projector, read API, webhook
// endpoint) runs under one errgroup: the first to fail stops the others. Whenever Run
// returns, every goroutine it started has ended and everything it opened is closed,
// the embedded nats-server included.
type Main struct {
	mode Mode
	cfg  *Resolved
	log  *zap.Logger

	// beforeStep, when set (by tests), runs before each start step with the step's name;
	// an error from it fails that step as the step's own error would.
	beforeStep func(step string) error
	// extraLoops, set by tests, run beside the projector: one that fails shows what a
	// component failing at run time does to the others.
	extraLoops []namedLoop
	// afterEraseAppend, set only in a binary built with the crash tests' hooks
	// (testhooks.go), holds every erasure between its append and the key's destruction.
	afterEraseAppend func(ctx context.Context) error
	// midSnapshotUpload, likewise, holds every snapshot upload half way.
	midSnapshotUpload func(ctx context.Context) error
	// afterKeysWrite, set likewise, holds every write of new data keys once they are
	// stored, before the events sealed under them are written.
	afterKeysWrite func(ctx context.Context)

	started chan struct{}       // closed once every component runs
	addrs   map[string]net.Addr // listen address by step, written before started closes

	mu     sync.Mutex
	ran    bool
	closed bool
	cancel context.CancelFunc // stops a running Run
	done   chan struct{}      // closed when Run returns
}

// NewMain returns a Main for mode with the resolved config; log is the process's logger.
func NewMain(mode Mode, cfg *Resolved, log *zap.Logger) *Main {
	return &Main{
		mode: mode, cfg: cfg, log: log,
		started: make(chan struct{}),
		addrs:   map[string]net.Addr{},
		done:    make(chan struct{}),
	}
}

// Started is closed once every component runs; Addr is valid from then on.
func (m *Main) Started() <-chan struct{} { return m.started }

// Addr returns where the read API ("api") or the webhook endpoint ("ingest") listens,
// once Started is closed; "" for a half this mode does not run.
func (m *Main) Addr(half string) string {
	select {
	case <-m.started:
	default:
		return ""
	}
	a := m.addrs["listen "+half]
	if a == nil {
		return ""
	}
	return a.String()
}

// Close stops a running Run and waits until it has returned; before Run, it makes Run
// refuse to start. Safe to call twice, and from any goroutine.
func (m *Main) Close() error {
	m.mu.Lock()
	m.closed = true
	ran, cancel := m.ran, m.cancel
	m.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if ran {
		<-m.done
	}
	return nil
}

// Run starts the service and runs it until ctx ends, Close is called, or a component
// fails. It returns nil after a requested stop, and the first error otherwise.
func (m *Main) Run(ctx context.Context) (err error) {
	m.mu.Lock()
	if m.closed || m.ran {
		m.mu.Unlock()
		return errors.New("kycstate: Main.Run called after Close or twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	m.ran, m.cancel = true, cancel
	m.mu.Unlock()
	defer close(m.done)
	defer cancel()

	// undo holds what the start steps opened; it runs in reverse on every return, after
	// every goroutine has ended, so nothing runs on a closed database or connection.
	var undo []func() error
	defer func() {
		for i := len(undo) - 1; i >= 0; i-- {
			if cerr := undo[i](); cerr != nil && err == nil {
				err = cerr
			}
		}
	}()
	c, err := m.start(ctx, &undo)
	if err != nil {
		return err
	}
	return m.serve(ctx, c)
}

// components is what start opened and serve runs.
type components struct {
	servers []namedServer // the webhook endpoint, if any, first: it stops first
	// background are the loops that feed or check what the servers answer from (the
	// projector; a periodic sweep goes here too). They stop after the servers.
	background []namedLoop
	embedded   bool
}

type namedLoop struct {
	name string
	run  func(ctx context.Context) error // returns once ctx ends
}

type namedServer struct {
	name  string
	srv   *http.Server
	ln    net.Listener
	limit func(net.Listener) (net.Listener, error) // nil: the listener as it is
}

// start runs the start steps. Each step that opens something appends its closer to undo.
func (m *Main) start(ctx context.Context, undo *[]func() error) (*components, error) {
	r, log := m.cfg, m.log
	step := func(name string, f func() error) error {
		if m.beforeStep != nil {
			if err := m.beforeStep(name); err != nil {
				return fmt.Errorf("start %s: %w", name, err)
			}
		}
		if err := f(); err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		return nil
	}
	if !m.mode.Embedded && len(r.URLs) == 0 {
		return nil, cfgErr("nats.url", "%s needs an external NATS; use serve for the embedded one", m.mode.Name)
	}
	if r.Keys == nil {
		// Nothing is stored in clear: without the key ring there is no node (serve's
		// development key is given before Main runs, by runService).
		return nil, errNoMasterKey(m.mode.Name + " nodes")
	}
	c := &components{embedded: len(r.URLs) == 0}

	if err := step(stepDataDir, func() error { return os.MkdirAll(r.DataDir, 0o700) }); err != nil {
		return nil, err
	}
	if m.mode.Embedded || m.mode.Query {
		if err := step(stepLock, func() error {
			unlock, err := lockDataDir(r.DataDir)
			if err != nil {
				return err
			}
			*undo = append(*undo, func() error { unlock(); return nil })
			return nil
		}); err != nil {
			return nil, err
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var conn *eventlog.Conn
	if err := step(stepNATS, func() (err error) {
		conn, err = eventlog.Connect(ctx, natsConfig(r, m.mode.Name), log)
		if err == nil {
			*undo = append(*undo, conn.Close)
		}
		return err
	}); err != nil {
		return nil, err
	}
	var events *eventlog.EventLog
	if err := step(stepEventLog, func() (err error) {
		lc := logConfig(r)
		lc.AfterKeysWrite = m.afterKeysWrite
		events, err = eventlog.Open(ctx, conn, lc, log)
		return err
	}); err != nil {
		return nil, err
	}

	// A node reading a standby (its KYC_EVENTS is a mirror) only reads: the primary's
	// nodes write the log (DESIGN.md section 14).
	standby := events.IsMirror()
	if standby && m.mode.Ingest {
		return nil, fmt.Errorf("start %s: KYC_EVENTS at nats.url is a mirror (a standby): webhooks go to the primary; promote the standby first (kycstate standby --promote)", stepEventLog)
	}
	if m.mode.Query {
		// Erasure survives every copy (DESIGN.md section 14): before it serves, the node
		// destroys every key its KYC_KEYS marks erased and still holds (a restored backup,
		// a standby's mirror, which copies no deletions).
		if err := step(stepShred, func() error {
			rep, err := events.Keys().ShredErased(ctx)
			if err != nil {
				return err
			}
			log.Info("erased applicants' keys checked", zap.Int("keyMessages", rep.Keys), zap.Int("erased", rep.Erased),
				zap.Int("destroyed", rep.Destroyed), zap.Int("underWay", rep.Left), zap.Duration("took", rep.Took),
				zap.Bool("standby", standby))
			return nil
		}); err != nil {
			return nil, err
		}
		path := filepath.Join(r.DataDir, "projection.db")
		// Snapshots (DESIGN.md section 14): a node without a projection starts from the
		// newest snapshot it can read and folds only what came after it. A standby's node
		// takes none: its KYC_KEYS is a mirror, which holds no key it could make.
		every := time.Duration(r.Projection.SnapshotEvery)
		if standby {
			every = 0
		}
		var snaps *eventlog.Snapshots
		if err := step(stepRestore, func() (err error) {
			snaps, err = eventlog.OpenSnapshots(ctx, conn, r.NATS.Replicas, every > 0)
			if err != nil {
				return err
			}
			if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
				return nil // there is a projection (or the projection step says what is wrong)
			}
			if m.mode.FromScratch {
				log.Info("no projection: folding the log from sequence 1, as --from-scratch asks")
				return nil
			}
			restorer, err := snapshot.New(snapshot.Config{Store: snaps, Keys: events.Keys(), Logger: log})
			if err != nil {
				return err
			}
			_, _, err = restorer.Restore(ctx, path)
			return err
		}); err != nil {
			return nil, err
		}
		var proj *projection.Projection
		if err := step(stepProjection, func() (err error) {
			proj, err = projection.Open(path, projection.Options{Indexer: indexerOf(events)})
			if err == nil {
				*undo = append(*undo, proj.Close)
			}
			return err
		}); err != nil {
			return nil, err
		}
		var pj *projector.Projector
		var snapper *snapshot.Snapshotter
		if err := step(stepSnapshot, func() (err error) {
			var leases *eventlog.Leases
			if every > 0 {
				if leases, err = eventlog.OpenLeases(ctx, conn, r.NATS.Replicas); err != nil {
					return err
				}
			}
			snapper, err = snapshot.New(snapshot.Config{Store: snaps, Keys: events.Keys(), Projection: proj,
				Leases: leases, Holder: leaseHolder(m.mode.Name), TempDir: r.DataDir,
				Every: every, Keep: r.Projection.SnapshotsKeep, Version: Version,
				Ready:     func(ctx context.Context) error { return pj.Ready(ctx, r.API.ReadyLag) },
				MidUpload: m.midSnapshotUpload, Logger: log, Metrics: reg})
			return err
		}); err != nil {
			return nil, err
		}
		// Erasure (DESIGN.md section 11): the endpoint, and beside the projector the loop
		// that finishes interrupted erasures and, with retention.erase_after, sweeps one
		// node at a time through a lease like reconciliation's.
		var eraser *erase.Eraser
		if err := step(stepErase, func() (err error) {
			var mayRun func(ctx context.Context) (bool, error)
			if r.Retention.EraseAfter > 0 {
				leases, err := eventlog.OpenLeases(ctx, conn, r.NATS.Replicas)
				if err != nil {
					return err
				}
				mayRun = retentionLease(leases, leaseHolder(m.mode.Name), time.Duration(r.Retention.Every))
			}
			eraser, err = erase.New(erase.Config{Events: events, Keys: keyringOf(events), Rejects: events, Projection: proj,
				EraseAfter: time.Duration(r.Retention.EraseAfter), SweepEvery: time.Duration(r.Retention.Every),
				MayRun: mayRun, Logger: log, Metrics: reg, AfterAppend: m.afterEraseAppend})
			return err
		}); err != nil {
			return nil, err
		}
		eraseFn := eraser.EraseProvider
		if standby {
			// Erasures, retention and their retries write the log: the primary's to do.
			eraseFn = func(context.Context, domain.Provider, domain.AppKey, domain.ApplicantID, string, string) (uint64, bool, error) {
				return 0, false, domain.Public("api.erase", domain.KindUnavailable, "",
					"this node reads a standby (a mirror of the primary's log): erase through the primary")
			}
		} else {
			c.background = append(c.background, namedLoop{name: "erase", run: eraser.Run})
		}
		// The projector folds through the snapshots' guard: an erasure is committed only
		// once every snapshot from before it is unreadable. Its destructions are bounded
		// by the key ring's own time-outs, and outlive the start's context as the
		// projector does.
		pj = projector.New(events, snapper.Guard(context.WithoutCancel(ctx), proj), projector.Config{
			MaxBatch: r.Projector.Batch, MaxWait: time.Duration(r.Projector.BatchWait),
			Shredder: events.Keys(),
			Scrub: func() error {
				res, err := proj.Scrub(scrubWait)
				if err == nil {
					log.Info("projection's free pages scrubbed after an erasure", zap.Int("freePages", res.FreePages),
						zap.Int("junkPages", res.JunkPages), zap.Duration("took", res.Took))
				}
				return err
			},
		}, log, reg)
		c.background = append(c.background, namedLoop{name: "projector", run: pj.Run})
		if every > 0 {
			c.background = append(c.background, namedLoop{name: "snapshot", run: snapper.Run})
		}
		// Reconciliation (DESIGN.md section 10): the endpoint on every query node with an
		// Open API configured, the sweep beside the projector unless reconcile.every is 0,
		// one node at a time through the lease.
		var checkOne func(ctx context.Context, id domain.ApplicantID, dryRun bool) (reconcile.Report, error)
		var checkKey func(ctx context.Context, k domain.ApplicantKey, dryRun bool) (reconcile.Report, error)
		var lastSweep func() time.Time
		if (len(r.OpenAPIs) > 0 || len(r.ProviderAPIs) > 0) && !standby {
			if err := step(stepReconcile, func() error {
				rec, err := reconcile.New(reconcileConfig(r), proj, events, r.OpenAPIs, log, reg)
				if err != nil {
					return err
				}
				*undo = append(*undo, func() error { rec.Close(); return nil })
				// Sumsub, Persona and Veriff apps with api: checked on request only.
				if err := rec.WithProviders(r.ProviderAPIs); err != nil {
					return err
				}
				checkOne = func(ctx context.Context, id domain.ApplicantID, dryRun bool) (reconcile.Report, error) {
					return rec.Check(ctx, id, reconcile.CheckOptions{DryRun: dryRun})
				}
				checkKey = func(ctx context.Context, k domain.ApplicantKey, dryRun bool) (reconcile.Report, error) {
					return rec.CheckKey(ctx, k, reconcile.CheckOptions{DryRun: dryRun})
				}
				if rec.Every() == 0 || len(r.OpenAPIs) == 0 {
					return nil
				}
				lastSweep = rec.LastSweep
				leases, err := eventlog.OpenLeases(ctx, conn, r.NATS.Replicas)
				if err != nil {
					return err
				}
				holder := leaseHolder(m.mode.Name)
				c.background = append(c.background, namedLoop{name: "reconcile", run: func(ctx context.Context) error {
					return rec.Run(ctx, leases, reconcile.RunOptions{Holder: holder})
				}})
				return nil
			}); err != nil {
				return nil, err
			}
		}
		var h http.Handler
		if err := step(stepAPI, func() (err error) {
			// A console session signed out on one query node ends on all of them.
			signOuts, err := eventlog.OpenSignOuts(ctx, events)
			if err != nil {
				return err
			}
			h, err = api.NewServer(api.Config{
				Reconcile: checkOne, ReconcileKey: checkKey,
				LastSweep:  lastSweep,
				Projection: proj, Tokens: apiTokens(r), Logger: log,
				Gatherer: reg, Metrics: reg, MaxWait: time.Duration(r.API.MaxWait), LastSeq: events.LastSeq,
				Ready:  func(ctx context.Context) error { return pj.Ready(ctx, r.API.ReadyLag) },
				Lag:    pj.Lag,
				Verify: func(ctx context.Context) (domain.VerifyResult, error) { return projection.Verify(ctx, events, proj) },
				Keys:   events.Keys(), Erase: eraseFn,
				ConsoleSessionKey: consoleSessionKey(r),
				ConsoleSignOuts:   signOuts,
				TrustedProxies:    r.TrustedProxies,
			})
			return err
		}); err != nil {
			return nil, err
		}
		c.servers = append(c.servers, namedServer{name: stepListenAPI, srv: api.NewHTTPServer(r.API.Listen, h)})
	}
	if m.mode.Ingest {
		var h http.Handler
		if err := step(stepIngest, func() (err error) {
			h, err = ingest.NewHandler(ingest.HandlerConfig{
				Apps: r.Apps, Providers: r.Providers, Events: events, Logger: log, Metrics: reg,
				MaxBody: r.Ingest.MaxBody, MaxInFlight: r.Ingest.MaxInFlight, QueueWait: time.Duration(r.Ingest.QueueWait),
				ReadTimeout:   time.Duration(r.Ingest.ReadTimeout),
				Times:         r.Ingest.times(),
				AppendTimeout: time.Duration(r.Ingest.AppendTimeout), KeepRaw: r.Ingest.KeepRaw == nil || *r.Ingest.KeepRaw,
				Ready: func(ctx context.Context) error { _, err := events.LastSeq(ctx); return err },
			})
			return err
		}); err != nil {
			return nil, err
		}
		// The server is made over the handler itself, so that its Shutdown refuses the
		// requests queued for a slot; the metrics wrapper then goes around it.
		srv := ingest.NewHTTPServer(r.Ingest.Listen, h)
		if !m.mode.Query {
			srv.Handler = withMetrics(h, reg)
		}
		// Connections per source are capped at the listener, before net/http reads a byte.
		limit := func(ln net.Listener) (net.Listener, error) {
			return ingest.Listener(ln, ingest.ListenerConfig{MaxConnsPerSource: r.Ingest.MaxConnsPerSource, Logger: log, Metrics: reg})
		}
		// First in the list: the webhook endpoint is the first to stop.
		c.servers = append([]namedServer{{name: stepListenHooks, srv: srv, limit: limit}}, c.servers...)
	}

	c.background = append(c.background, m.extraLoops...)

	// Listen before announcing, so a port in use is a clear startup error. The read API
	// listens first, as it always has: its port is the one operators watch.
	for i := len(c.servers) - 1; i >= 0; i-- {
		s := &c.servers[i]
		if err := step(s.name, func() error {
			ln, err := net.Listen("tcp", s.srv.Addr)
			if err != nil {
				return fmt.Errorf("listen %s: %w", s.srv.Addr, err)
			}
			// Serve closes the listener too; a second Close is harmless.
			*undo = append(*undo, func() error { ln.Close(); return nil })
			if s.limit != nil {
				if ln, err = s.limit(ln); err != nil {
					return err
				}
			}
			s.ln = ln
			m.addrs[s.name] = ln.Addr()
			return nil
		}); err != nil {
			return nil, err
		}
		log.Info("listening", zap.String("addr", s.ln.Addr().String()))
	}
	return c, nil
}

// serve runs the components under one errgroup until ctx ends or one fails, then stops
// them in the order of the durability contract and waits for all of them.
func (m *Main) serve(ctx context.Context, c *components) error {
	log := m.log
	// The background loops outlive the group's context: they stop only after both
	// servers have, so a read waiting on ?minSeq for an acknowledged webhook can still be
	// answered while the servers drain.
	readers, stopReaders := context.WithCancel(context.WithoutCancel(ctx))
	defer stopReaders()

	g, gctx := errgroup.WithContext(ctx)
	for _, l := range c.background {
		g.Go(func() error {
			err := l.run(readers)
			if readers.Err() != nil {
				return nil
			}
			if err == nil {
				err = errors.New("stopped on its own")
			}
			return fmt.Errorf("%s: %w", l.name, err)
		})
	}
	for _, s := range c.servers {
		g.Go(func() error {
			if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("%s: serve: %w", s.name, err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		if ctx.Err() != nil {
			log.Info("stopping: signal received")
		}
		// Shutdown order is the durability contract: stop accepting webhooks and let every
		// in-flight append get its PubAck and its answer, then stop the readers; the log
		// closes after Run's group has ended. A webhook either got 200 after its append,
		// or no answer it could trust.
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		for _, s := range c.servers {
			if err := s.srv.Shutdown(shutCtx); err != nil {
				log.Warn("shutdown", zap.String("server", s.name), zap.Error(err))
			}
		}
		stopReaders()
		return nil
	})
	log.Info("started", zap.Bool("embeddedNATS", c.embedded), zap.String("dataDir", m.cfg.DataDir))
	close(m.started)

	err := g.Wait()
	if err != nil {
		log.Error("stopping on error", zap.Error(err))
	}
	log.Info("stopped")
	return err
}
