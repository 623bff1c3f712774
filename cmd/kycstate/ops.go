package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/kycstate/kycstate/store/eventlog"
	"go.uber.org/zap"
)

const offlineNote = `
It reads the log through nats.url when set (a running cluster, with nats.credentials; or a
running serve's nats.listen, with the credentials serve keeps in <data_dir>), otherwise
offline from <data_dir>/nats of a stopped "kycstate serve" (it takes the data dir's lock,
so it refuses while serve runs there).`

// opsSetup is what an audit or operations command needs: config, logger and the event log.
type opsSetup struct {
	r      *Resolved
	log    *zap.Logger
	conn   *eventlog.Conn // for the buckets beside the log (snapshots, leases)
	events *eventlog.EventLog
	closer func()
}

// opsOptions says what an audit or operations command needs of openOps.
type opsOptions struct {
	// NeedApps: the command opens webhooks, so the config must name Allpass apps (and a
	// master key: it writes the log).
	NeedApps bool
	// OwnsProjection: the command reads or replaces <data_dir>/projection.db, so the data
	// dir's lock is taken even when the log is read through nats.url.
	OwnsProjection bool
	// NeedKeys: the command cannot work without the key ring, so it refuses to go on
	// without a master key: it writes the log or the ring (nothing is ever written in
	// clear), or opens sealed fields (export --open).
	NeedKeys bool
	// NewDataDir: offline, the data dir may hold no log yet (restore fills it).
	NewDataDir bool
}

// openOps loads the config at cfgPath and opens the log. The data dir's lock is taken
// when the log is read offline (the embedded store must not have two servers) and when
// opt.OwnsProjection. The key ring is opened when a master key is known (keys.master, or
// a serve's development key); opt.NeedKeys and opt.NeedApps refuse to go on without one.
func openOps(ctx context.Context, e *env, cfgPath string, opt opsOptions) (*opsSetup, error) {
	oc, err := openOpsConn(ctx, e, cfgPath, opt)
	if err != nil {
		return nil, err
	}
	events, err := eventlog.Open(ctx, oc.conn, logConfig(oc.r), oc.log)
	if err != nil {
		oc.Close()
		return nil, err
	}
	return &opsSetup{r: oc.r, log: oc.log, conn: oc.conn, events: events, closer: oc.Close}, nil
}

// opsConn is an operations command's connection to NATS before any stream is opened:
// what backup and restore need, which must not create the streams they copy.
type opsConn struct {
	r      *Resolved
	log    *zap.Logger
	conn   *eventlog.Conn
	closer func()
}

func (o *opsConn) Close() { o.closer() }

// openOpsConn is openOps up to the connection: config, master key, logger, the data
// dir's lock (offline, or opt.OwnsProjection) and NATS (embedded on <data_dir>/nats when
// nats.url is empty). With opt.NewDataDir an offline data dir need not hold a log yet.
func openOpsConn(ctx context.Context, e *env, cfgPath string, opt opsOptions) (*opsConn, error) {
	r, err := opsConfig(e, cfgPath, opt.NeedApps)
	if err != nil {
		return nil, err
	}
	if err := opsMasterKey(r); err != nil {
		return nil, err
	}
	if r.Keys == nil && (opt.NeedApps || opt.NeedKeys) {
		return nil, errNoMasterKey("a command that writes the log")
	}
	r.Log.Level = "warn"
	log, err := newLogger(r.Log, e.stderr)
	if err != nil {
		return nil, err
	}
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	if len(r.URLs) == 0 && !opt.NewDataDir {
		if _, err := os.Stat(filepath.Join(r.DataDir, "nats")); err != nil {
			return nil, fmt.Errorf("no event log at %s (set nats.url, or --config with the data_dir of a kycstate serve)", filepath.Join(r.DataDir, "nats"))
		}
	}
	if len(r.URLs) == 0 || opt.OwnsProjection {
		if err := os.MkdirAll(r.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data_dir: %w", err)
		}
		unlock, err := lockDataDir(r.DataDir)
		if err != nil {
			return nil, err
		}
		closers = append(closers, unlock)
	}
	conn, err := eventlog.Connect(ctx, natsConfig(r, "ops"), log)
	if err != nil {
		closeAll()
		return nil, err
	}
	closers = append(closers, func() { conn.Close() })
	return &opsConn{r: r, log: log, conn: conn, closer: closeAll}, nil
}

func (o *opsSetup) Close() { o.closer() }

// progress prints "<name>: N/M" on a terminal now and then, and nothing in a pipe.
type progress struct {
	w    io.Writer
	name string
	last time.Time
	on   bool
}

func newProgress(e *env, name string) *progress {
	f, ok := e.stderr.(*os.File)
	on := false
	if ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			on = true
		}
	}
	return &progress{w: e.stderr, name: name, on: on}
}

func (p *progress) report(done, total uint64) {
	if !p.on || time.Since(p.last) < 200*time.Millisecond {
		return
	}
	p.last = time.Now()
	pct := 100.0
	if total > 0 {
		pct = float64(done) * 100 / float64(total)
	}
	fmt.Fprintf(p.w, "\r%s: %d/%d (%.0f%%)", p.name, done, total, pct)
}

func (p *progress) done() {
	if p.on && !p.last.IsZero() {
		fmt.Fprintln(p.w)
	}
}
