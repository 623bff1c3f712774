package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/kycstate/kycstate/store/projection"
)

func cmdRebuild(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "rebuild", `Folds the whole log from sequence 1 into a new projection file and swaps it in
atomically (<data_dir>/projection.db). A crash during rebuild leaves the old file serving.
The query node must be stopped (the file is locked while it runs); a query node can also be
rebuilt by deleting its file and starting it.`+offlineNote)
	cfgPath := fs.String("config", "", "YAML config file")
	if err := parse(fs, args); err != nil {
		return err
	}
	o, err := openOps(ctx, e, *cfgPath, opsOptions{OwnsProjection: true})
	if err != nil {
		return err
	}
	defer o.Close()
	path := filepath.Join(o.r.DataDir, "projection.db")
	start := time.Now()
	ix, err := rebuildIndexer(ctx, o.events)
	if err != nil {
		return err
	}
	p := newProgress(e, "rebuild")
	var total uint64
	err = projection.Rebuild(ctx, o.events, path, projection.RebuildOptions{Indexer: ix,
		Progress: func(done, last uint64) { total = done; p.report(done, last) }})
	p.done()
	if err != nil {
		return err
	}
	el := time.Since(start)
	fmt.Fprintf(e.stdout, "rebuilt %s: %d events in %s (%.0f events/s)\n", path, total, el.Round(time.Millisecond), float64(total)/el.Seconds())
	return nil
}
