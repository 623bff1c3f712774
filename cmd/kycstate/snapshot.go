package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/kycstate/kycstate/projector"
	"github.com/kycstate/kycstate/snapshot"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
)

const snapshotHelp = `Takes a snapshot of the projection now into the JetStream object store KYC_SNAPSHOTS
(DESIGN.md section 14), sealed under a key of its own in KYC_KEYS, then removes what is not
kept (projection.snapshots_keep readable snapshots; those an erasure made unreadable). Query
nodes take one every projection.snapshot_every on their own; this is for an operator who
wants one now (before an upgrade, say). With --list it lists the snapshots instead.

Offline, on a stopped serve's data dir, it copies <data_dir>/projection.db. Through nats.url
(a cluster, or a serve whose embedded server listens: nats.listen) it copies
<data_dir>/projection.db when no node holds that data dir; otherwise it builds the copy
itself, as a new query node would: from the newest snapshot it can read, or from sequence 1,
caught up with the log in a temporary directory under data_dir, removed afterwards. It needs
keys.master (or a serve's development key under data_dir). One snapshot is written at a time
across the cluster (the lease "snapshot" in KYC_LEASES): while a node writes one it refuses.`

func cmdSnapshot(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "snapshot", snapshotHelp+offlineNote)
	cfgPath := fs.String("config", "", "YAML config file")
	list := fs.Bool("list", false, "list the snapshots, newest first, and whether this build can restore each")
	if err := parse(fs, args); err != nil {
		return err
	}
	o, err := openOps(ctx, e, *cfgPath, opsOptions{NeedKeys: true})
	if err != nil {
		return err
	}
	defer o.Close()
	store, err := eventlog.OpenSnapshots(ctx, o.conn, o.r.NATS.Replicas, !*list)
	if err != nil {
		return err
	}
	if *list {
		return listSnapshots(ctx, e, store, o.events.Keys())
	}
	leases, err := eventlog.OpenLeases(ctx, o.conn, o.r.NATS.Replicas)
	if err != nil {
		return err
	}
	start := time.Now()
	proj, cleanup, err := snapshotSource(ctx, e, o, store)
	if err != nil {
		return err
	}
	defer cleanup()
	snapper, err := snapshot.New(snapshot.Config{Store: store, Keys: o.events.Keys(), Projection: proj,
		Leases: leases, Holder: leaseHolder("snapshot"), TempDir: filepath.Dir(proj.Path()),
		Keep: o.r.Projection.SnapshotsKeep, Version: Version, Logger: o.log})
	if err != nil {
		return err
	}
	info, err := snapper.Take(ctx)
	if errors.Is(err, snapshot.ErrBusy) {
		return fmt.Errorf("%w: a node is writing a snapshot now (lease %q in %s); try again in a minute", err, snapshot.LeaseName, eventlog.LeaseBucket)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "snapshot %s: checkpoint %d, %d bytes (%d sealed), took %s\n",
		info.Name, info.Checkpoint, info.Size, info.Stored, time.Since(start).Round(time.Millisecond))
	return nil
}

// snapshotSource opens the projection to copy: <data_dir>/projection.db when this
// process holds the data dir (offline, or no node there), else one folded here.
func snapshotSource(ctx context.Context, e *env, o *opsSetup, store *eventlog.Snapshots) (*projection.Projection, func(), error) {
	dir := o.r.DataDir
	path := filepath.Join(dir, "projection.db")
	var closers []func()
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	own := len(o.r.URLs) == 0 // openOps holds the data dir's lock
	if !own {
		if _, err := os.Stat(dir); err == nil {
			if unlock, err := lockDataDir(dir); err == nil {
				closers = append(closers, unlock)
				own = true
			}
		}
	}
	if _, err := os.Stat(path); own && err == nil {
		proj, err := projection.Open(path, projection.Options{ReadOnly: true})
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		closers = append(closers, func() { proj.Close() })
		return proj, cleanup, nil
	}
	// No projection this process may read: fold one where it can.
	base := dir
	if _, err := os.Stat(dir); err != nil {
		base = os.TempDir()
	}
	tmp, err := os.MkdirTemp(base, "kycstate-snapshot-fold-")
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("temporary projection: %w", err)
	}
	closers = append(closers, func() { os.RemoveAll(tmp) })
	proj, err := foldProjection(ctx, e, o, store, filepath.Join(tmp, "projection.db"))
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	closers = append(closers, func() { proj.Close() })
	return proj, cleanup, nil
}

// foldProjection builds a projection at path as a new query node does: the newest
// snapshot it can read, then the log folded from its checkpoint + 1 up to the log's last
// sequence now, through the snapshots' guard (an erasure folded here destroys the keys
// of the snapshots before it, as on any node).
func foldProjection(ctx context.Context, e *env, o *opsSetup, store *eventlog.Snapshots, path string) (*projection.Projection, error) {
	restorer, err := snapshot.New(snapshot.Config{Store: store, Keys: o.events.Keys(), Logger: o.log})
	if err != nil {
		return nil, err
	}
	from, restored, err := restorer.Restore(ctx, path)
	if err != nil {
		return nil, err
	}
	last, err := o.events.LastSeq(ctx)
	if err != nil {
		return nil, err
	}
	if restored {
		fmt.Fprintf(e.stderr, "folding the log into a temporary projection: from snapshot %s (sequence %d) to %d\n", from.Name, from.Checkpoint, last)
	} else {
		fmt.Fprintf(e.stderr, "folding the log into a temporary projection: from sequence 1 to %d\n", last)
	}
	proj, err := projection.Open(path, projection.Options{Indexer: indexerOf(o.events)})
	if err != nil {
		return nil, err
	}
	pj := projector.New(o.events, restorer.Guard(ctx, proj), projector.Config{
		MaxBatch: o.r.Projector.Batch, MaxWait: time.Duration(o.r.Projector.BatchWait)}, o.log.Named("fold"), nil)
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- pj.Run(fctx) }()
	got := proj.WaitFor(ctx, last)
	cancel()
	<-done
	if got < last {
		proj.Close()
		return nil, fmt.Errorf("folding stopped at sequence %d of %d: %w", got, last, ctx.Err())
	}
	return proj, nil
}

func listSnapshots(ctx context.Context, e *env, store *eventlog.Snapshots, keys *eventlog.Keyring) error {
	list, err := store.List(ctx)
	if err != nil {
		return err
	}
	names, err := keys.SnapshotKeys(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tCHECKPOINT\tTAKEN\tBYTES\tSCHEMA\tKYCSTATE\tRESTORABLE")
	for _, s := range list {
		can := "yes"
		switch {
		case s.Problem != "":
			can = "no: " + s.Problem
		case !slices.Contains(names, s.Name):
			can = "no: its key is destroyed"
		case s.Schema > projection.SchemaVersion:
			can = fmt.Sprintf("no: schema %d is newer than this build's %d", s.Schema, projection.SchemaVersion)
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%d\t%d\t%s\t%s\n", s.Name, s.Checkpoint, s.Created.Format(time.RFC3339), s.Size, s.Schema, s.Version, can)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if len(list) == 0 {
		fmt.Fprintln(e.stderr, "no snapshots in", eventlog.SnapshotBucket)
	}
	return nil
}
