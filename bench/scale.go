package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kycstate/kycstate/api"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/projector"
	"github.com/kycstate/kycstate/snapshot"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// The scale run (DESIGN.md section 14, `bench/run --scale N`): a log of N applicants, about
// five events each, loaded at raw speed, and the same figures measured on it and on a log of
// scaleBaseEvents from the same run. Each size has its own embedded server and directory.
const (
	// DefaultScale is --scale's default: 2,000,000 applicants, about 10,000,000 events.
	DefaultScale = 2_000_000
	// scaleBaseEvents is the size of the baseline log every scale figure is compared with.
	scaleBaseEvents = 100_000
	// scaleChunk is how many deliveries the loader draws, seals and prepares at once; one
	// AppendBatch call writes them as atomic batches of eventlog.MaxBatchMsgs.
	scaleChunk = 5_000
	// scaleIDs bounds the applicants the GETs of scale_api spread over, sampled evenly from
	// every applicant of the log: more than the key ring's cache (50,000) holds.
	scaleIDs = 100_000
	// scaleWindow is the duplicate window the phases after scale_mem_dd run with. A log
	// loaded in minutes has every message id inside a 24h window, which a server that has
	// run for years never has; the window's memory is measured apart (scale_mem_dd).
	scaleWindow = time.Second
)

// Disk the scale run needs, per event and per applicant. `bench/run --scale 2000 --only
// scale` measured, at 100,000 events: KYC_EVENTS 2,332 bytes an event on disk, KYC_KEYS 556
// bytes an applicant, projection.db 947 bytes an event. Each is rounded up, and the
// projection counted three times: at most three copies exist at once (the rebuilt file,
// the snapshot in KYC_SNAPSHOTS, and either the sealed copy on its way up or a new node's
// file).
const (
	diskPerEvent     = 2400 + 3*1000
	diskPerApplicant = 600
	diskEventsPer    = 5.3 // events an applicant: the short journey draws 5.2
)

// scaleSize is one of the scale run's two logs.
type scaleSize struct {
	large bool
}

func (s scaleSize) suffix() string {
	if s.large {
		return ""
	}
	return "_base"
}

func (s scaleSize) dir(o options) (string, error) {
	if s.large {
		return phaseDir(o, "scale")
	}
	return phaseDir(o, "scale-base")
}

// scalePhases are the scale run's phases: each step on the baseline log, then on the
// large one, so the two come from the same minutes of the machine's life.
func scalePhases() []phaseSpec {
	var ps []phaseSpec
	step := func(name string, fn func(ctx context.Context, o options, r *result, s scaleSize) error) {
		for _, s := range []scaleSize{{false}, {true}} {
			ps = append(ps, phaseSpec{name + s.suffix(), "scale", func(ctx context.Context, o options, r *result) error {
				return fn(ctx, o, r, s)
			}})
		}
	}
	step("scale_load", phaseScaleLoad)
	step("scale_mem_dd", func(ctx context.Context, o options, r *result, s scaleSize) error {
		return phaseScaleMem(ctx, o, r, s, true)
	})
	step("scale_mem", func(ctx context.Context, o options, r *result, s scaleSize) error {
		return phaseScaleMem(ctx, o, r, s, false)
	})
	step("scale_rebuild", phaseScaleRebuild)
	step("scale_boot1", func(ctx context.Context, o options, r *result, s scaleSize) error {
		return phaseScaleBoot(ctx, o, r, s, false)
	})
	step("scale_snap", phaseScaleSnapshot)
	step("scale_boot_snap", func(ctx context.Context, o options, r *result, s scaleSize) error {
		return phaseScaleBoot(ctx, o, r, s, true)
	})
	ps = append(ps, phaseSpec{"scale_api", "scale", phaseScaleAPI})
	return ps
}

// scaleDiskCheck refuses a scale run that would not fit on the disk under dir.
func scaleDiskCheck(dir string, applicants int) error {
	free, ok, err := freeBytes(dir)
	if err != nil {
		return fmt.Errorf("--scale: free space under %s: %w", dir, err)
	}
	if !ok {
		fmt.Fprintf(os.Stderr, "bench: free space under %s not checked on this system\n", dir)
		return nil
	}
	const base = scaleBaseEvents * diskPerEvent
	perApplicant := diskEventsPer*diskPerEvent + diskPerApplicant
	need := func(n int) float64 { return base + float64(n)*perApplicant }
	room := 0.9 * float64(free) // the rest for the machine's other work
	if need(applicants) <= room {
		return nil
	}
	fits := int((room - base) / perApplicant)
	return fmt.Errorf("--scale %d needs about %.1f GiB under %s and %.1f GiB are free (about %d applicants would fit); "+
		"free some space or give --dir on a larger disk", applicants, need(applicants)/(1<<30), dir, float64(free)/(1<<30), max(0, fits))
}

// openScaleLog opens the event log in dir as openLog does, with the given duplicate window
// (0: the default) so that a window shortened by scale_mem_dd is not reported as a
// difference on every open.
func openScaleLog(ctx context.Context, dir string, relaxed bool, window time.Duration, log *zap.Logger) (c *eventlog.Conn, events *eventlog.EventLog, err error) {
	cfg := eventlog.NATSConfig{StoreDir: dir, Name: "kycstate-bench"}
	if relaxed {
		cfg.SyncInterval = time.Minute
	}
	labelled(ctx, "nats", func() {
		if c, err = eventlog.Connect(ctx, cfg, log); err != nil {
			return
		}
		if events, err = eventlog.Open(ctx, c, eventlog.Config{Keys: benchMasterKeys(), DuplicateWindow: window}, log); err != nil {
			c.Close()
		}
	})
	return c, events, err
}

// phaseScaleLoad writes the log: the baseline's scaleBaseEvents, or o.Scale applicants'
// whole journeys. Each delivery is sealed as Allpass seals it, opened as ingest opens it,
// prepared by EventLog.Prepare (sealed under the applicant's data key, made in KYC_KEYS on
// its first event) and written by EventLog.AppendBatch, the group commit's path, in atomic
// batches. Drawing, sealing and preparing run on every core, one chunk ahead of the
// writer. As for the rebuild's load, the server syncs every minute during the load only.
func phaseScaleLoad(ctx context.Context, o options, r *result, s scaleSize) error {
	dir, err := s.dir(o)
	if err != nil {
		return err
	}
	log := newLogger()
	c, events, err := openScaleLog(ctx, filepath.Join(dir, "stream"), true, 0, log)
	if err != nil {
		return err
	}
	defer c.Close()

	app := benchApp(o.Seed)
	target, expected := scaleBaseEvents, scaleBaseEvents/5
	inFlight := scaleBaseEvents / 100
	w := newWorkload(o.Seed+5, app, inFlight)
	w.short = true
	if s.large {
		target, expected = math.MaxInt, o.Scale
		inFlight = max(1, min(o.Scale/100, 20_000))
		w = newWorkload(o.Seed+6, app, inFlight)
		w.short, w.limit = true, o.Scale
	}
	stride := max(1, expected/scaleIDs)
	// ids is written by the producer and read once it has closed chunks; firsts is also
	// read by the progress lines meanwhile.
	var ids []string
	var firsts atomic.Int64
	w.onFirst = func(id string) {
		if firsts.Load()%int64(stride) == 0 {
			ids = append(ids, id)
		}
		firsts.Add(1)
	}

	type chunk struct {
		ps  []*domain.Pending
		err error
	}
	chunks := make(chan chunk, 2)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	producerDone := make(chan struct{})
	go func() {
		defer close(producerDone)
		defer close(chunks)
		drawn := 0
		for drawn < target && w.more() {
			ds := make([]delivery, 0, scaleChunk)
			for len(ds) < scaleChunk && drawn < target && w.more() {
				ds = append(ds, w.next())
				drawn++
			}
			ps, err := prepareDeliveries(pctx, events, app, ds)
			select {
			case chunks <- chunk{ps, err}:
			case <-pctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() { cancel(); <-producerDone }()

	var written, dups int
	start := time.Now()
	lastReport := start
	for ch := range chunks {
		if ch.err != nil {
			return ch.err
		}
		events.AppendBatch(ctx, ch.ps)
		for _, p := range ch.ps {
			if p.Err != nil {
				return fmt.Errorf("append after %d events: %w", written, p.Err)
			}
			if p.Duplicate {
				dups++
				continue
			}
			written++
		}
		if time.Since(lastReport) > 10*time.Second {
			lastReport = time.Now()
			progress("loaded %d events (%.0f/s), %d applicants", written, float64(written)/time.Since(start).Seconds(), firsts.Load())
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	took := time.Since(start)
	last, err := events.LastSeq(ctx)
	if err != nil {
		return err
	}
	if last != uint64(written) {
		return fmt.Errorf("stream's last sequence is %d after %d events written", last, written)
	}
	if err := os.WriteFile(filepath.Join(dir, "ids.txt"), []byte(strings.Join(ids, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	r.set("events", float64(written))
	r.set("duplicates", float64(dups))
	r.set("applicants", float64(firsts.Load()))
	r.set("rate", float64(written)/took.Seconds())
	r.set("seconds", took.Seconds())
	r.set("ids", float64(len(ids)))
	return nil
}

// prepareDeliveries seals each delivery as Allpass does, opens it as the ingest handler
// does (raw body kept) and prepares it as the group commit does, on four goroutines a core:
// an applicant's first event waits for KYC_KEYS.
func prepareDeliveries(ctx context.Context, events *eventlog.EventLog, app *allpass.App, ds []delivery) ([]*domain.Pending, error) {
	out := make([]*domain.Pending, len(ds))
	err := parallelN(len(ds), 4*runtime.GOMAXPROCS(0), func(i int) error {
		body, sig, err := allpass.Seal(app.Method, app.Keys[0], ds[i].plaintext, ds[i].envTime, nil)
		if err != nil {
			return err
		}
		ev, msgID, err := app.Open(body, sig, ds[i].received, allpass.Options{KeepRaw: true})
		if err != nil {
			return err
		}
		p := &domain.Pending{Event: &ev, MsgID: msgID}
		if err := events.Prepare(ctx, p); err != nil {
			return err
		}
		out[i] = p
		return nil
	})
	return out, err
}

// phaseScaleMem restarts the server on a size's log and measures, once it is up and the
// heap settled, its memory and the stream's bytes on disk. With dd (scale_mem_dd) every
// message id of the log is in the duplicate window (loaded minutes ago), so the server
// rebuilds its duplicate map at start; afterwards the window is set to scaleWindow, and
// scale_mem measures the server as it is after years, the window holding a day at most.
func phaseScaleMem(ctx context.Context, o options, r *result, s scaleSize, dd bool) error {
	dir, err := s.dir(o)
	if err != nil {
		return err
	}
	window := scaleWindow
	if dd {
		window = 0
	}
	start := time.Now()
	c, events, err := openScaleLog(ctx, filepath.Join(dir, "stream"), false, window, newLogger())
	if err != nil {
		return err
	}
	defer c.Close()
	r.set("start_s", time.Since(start).Seconds())
	stream, err := c.JS.Stream(ctx, eventlog.EventStream)
	if err != nil {
		return err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return err
	}
	last, err := events.LastSeq(ctx)
	if err != nil {
		return err
	}
	heap, rss := settledMemory()
	r.set("heap_mib", heap)
	r.set("rss_mib", rss)
	r.set("msgs", float64(info.State.Msgs))
	r.set("last", float64(last))
	r.set("subjects", float64(info.State.NumSubjects))
	r.set("stream_bytes", float64(info.State.Bytes))
	disk, err := streamDisk(filepath.Join(dir, "stream"))
	if err != nil {
		return err
	}
	r.set("events_disk", float64(disk[eventlog.EventStream]))
	r.set("keys_disk", float64(disk[eventlog.KeyStream]))
	if ks, err := c.JS.Stream(ctx, eventlog.KeyStream); err == nil {
		if ki, err := ks.Info(ctx); err == nil {
			r.set("keys_msgs", float64(ki.State.Msgs))
		}
	}
	if !dd {
		return nil
	}
	cfg := stream.CachedInfo().Config
	cfg.Duplicates = scaleWindow
	_, err = c.JS.UpdateStream(ctx, cfg)
	return err
}

// settledMemory collects garbage and returns the Go heap in use and the resident set, MiB.
func settledMemory() (heap, rss float64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap = float64(ms.HeapInuse) / (1 << 20)
	rss = -1
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				var kib int64
				if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kib); err == nil {
					rss = float64(kib) / 1024
				}
			}
		}
	}
	return heap, rss
}

// streamDisk sums the bytes of each stream's files under an embedded server's store
// directory (…/streams/<name>/…), by stream name.
func streamDisk(storeDir string) (map[string]int64, error) {
	sizes := map[string]int64{}
	sep := string(filepath.Separator)
	err := filepath.WalkDir(storeDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		_, rest, ok := strings.Cut(path, sep+"streams"+sep)
		if !ok {
			return nil
		}
		name, _, _ := strings.Cut(rest, sep)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		sizes[name] += fi.Size()
		return nil
	})
	return sizes, err
}

// phaseScaleRebuild runs projection.Rebuild over a size's whole log (the server syncing
// every write) and keeps the file: scale_snap copies it and scale_api reads it.
func phaseScaleRebuild(ctx context.Context, o options, r *result, s scaleSize) error {
	dir, err := s.dir(o)
	if err != nil {
		return err
	}
	c, events, err := openScaleLog(ctx, filepath.Join(dir, "stream"), false, scaleWindow, newLogger())
	if err != nil {
		return err
	}
	defer c.Close()
	last, err := events.LastSeq(ctx)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "projection.db")
	stopProf, err := profile(o, r.Phase)
	if err != nil {
		return err
	}
	start := time.Now()
	lastReport := start
	labelled(ctx, "rebuild", func() {
		var ix projection.Indexer
		if ix, err = events.Keys().Snapshot(ctx); err != nil {
			return
		}
		err = projection.Rebuild(ctx, events, path, projection.RebuildOptions{Indexer: ix, Progress: func(done, total uint64) {
			if time.Since(lastReport) > 10*time.Second {
				lastReport = time.Now()
				progress("rebuilt %d/%d events (%.0f/s)", done, total, float64(done)/time.Since(start).Seconds())
			}
		}})
	})
	took := time.Since(start)
	if perr := stopProf(); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return err
	}
	size, err := rebuiltSize(path, last)
	if err != nil {
		return err
	}
	r.set("events", float64(last))
	r.set("rate", float64(last)/took.Seconds())
	r.set("seconds", took.Seconds())
	r.set("file_bytes", float64(size))
	return nil
}

// phaseScaleBoot starts a query node with no projection, as `kycstate query` does, and
// times it until ready: its projection has folded the log's last sequence. The node
// first checks KYC_KEYS for erased keys (as every query node does before it serves), then
// folds from sequence 1, or (fromSnapshot) restores the newest snapshot and folds what came
// after it. The snapshot scale_snap took is at the log's end; what a snapshot six hours old
// adds is those hours' events at the projector's rate (docs/SCALE.md).
func phaseScaleBoot(ctx context.Context, o options, r *result, s scaleSize, fromSnapshot bool) error {
	dir, err := s.dir(o)
	if err != nil {
		return err
	}
	log := newLogger()
	c, events, err := openScaleLog(ctx, filepath.Join(dir, "stream"), false, scaleWindow, log)
	if err != nil {
		return err
	}
	defer c.Close()
	last, err := events.LastSeq(ctx)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "node.db")
	os.Remove(path)
	defer os.Remove(path)

	stopProf, err := profile(o, r.Phase)
	if err != nil {
		return err
	}
	defer stopProf()
	start := time.Now()
	if _, err := events.Keys().ShredErased(ctx); err != nil {
		return err
	}
	r.set("shred_s", time.Since(start).Seconds())
	var from uint64
	if fromSnapshot {
		rstart := time.Now()
		store, err := eventlog.OpenSnapshots(ctx, c, 1, false)
		if err != nil {
			return err
		}
		snap, err := snapshot.New(snapshot.Config{Store: store, Keys: events.Keys(), TempDir: dir, Logger: log})
		if err != nil {
			return err
		}
		info, ok, err := snap.Restore(ctx, path)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("no snapshot restored")
		}
		from = info.Checkpoint
		r.set("restore_s", time.Since(rstart).Seconds())
	}
	proj, err := projection.Open(path, projection.Options{})
	if err != nil {
		return err
	}
	defer proj.Close()
	pj := projector.New(events, proj, projector.Config{Shredder: events.Keys()}, log, nil)
	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	labelled(ctx, "projector", func() { wg.Go(func() { pj.Run(pctx) }) })
	stopReport := make(chan struct{})
	wg.Go(func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopReport:
				return
			case <-t.C:
				cp := proj.Checkpoint()
				progress("folded %d/%d events (%.0f/s)", cp, last, float64(cp-from)/time.Since(start).Seconds())
			}
		}
	})
	got := proj.WaitFor(ctx, last)
	took := time.Since(start)
	close(stopReport)
	cancel()
	wg.Wait()
	if got < last {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fmt.Errorf("node's projection reached %d of %d", got, last)
	}
	r.set("seconds", took.Seconds())
	r.set("events", float64(last-from))
	r.set("from", float64(from))
	if last > from {
		r.set("rate", float64(last-from)/(took.Seconds()-r.Values["shred_s"]-r.Values["restore_s"]))
	}
	return nil
}

// phaseScaleSnapshot takes a snapshot of the rebuilt projection into KYC_SNAPSHOTS, as
// `kycstate snapshot` does (snapshot.Snapshotter.Take, with no lease: alone on the data).
func phaseScaleSnapshot(ctx context.Context, o options, r *result, s scaleSize) error {
	dir, err := s.dir(o)
	if err != nil {
		return err
	}
	log := newLogger()
	c, events, err := openScaleLog(ctx, filepath.Join(dir, "stream"), false, scaleWindow, log)
	if err != nil {
		return err
	}
	defer c.Close()
	proj, err := projection.Open(filepath.Join(dir, "projection.db"), projection.Options{})
	if err != nil {
		return err
	}
	defer proj.Close()
	store, err := eventlog.OpenSnapshots(ctx, c, 1, true)
	if err != nil {
		return err
	}
	snap, err := snapshot.New(snapshot.Config{Store: store, Keys: events.Keys(), Projection: proj,
		TempDir: dir, Version: "bench", Logger: log})
	if err != nil {
		return err
	}
	start := time.Now()
	info, err := snap.Take(ctx)
	if err != nil {
		return err
	}
	r.set("seconds", time.Since(start).Seconds())
	r.set("bytes", float64(info.Size))
	r.set("stored", float64(info.Stored))
	r.set("checkpoint", float64(info.Checkpoint))
	return nil
}

// phaseScaleAPI measures GET /v1/applicants/{id} through api.NewServer on both logs at once
// (each its own embedded server, key ring and rebuilt projection), in alternating rounds
// over 32 keep-alive connections, each side spread over applicants sampled evenly from its
// whole log. Every answer must be 200 and name the applicant asked for.
func phaseScaleAPI(ctx context.Context, o options, r *result) error {
	const rounds, perRound = 8, 10_000
	type side struct {
		url  string
		ids  []domain.ApplicantID
		took time.Duration
		lats []time.Duration
	}
	var sides [2]*side
	log := newLogger()
	for i, s := range []scaleSize{{false}, {true}} {
		dir, err := s.dir(o)
		if err != nil {
			return err
		}
		c, events, err := openScaleLog(ctx, filepath.Join(dir, "stream"), false, scaleWindow, log)
		if err != nil {
			return err
		}
		defer c.Close()
		proj, err := projection.Open(filepath.Join(dir, "projection.db"), projection.Options{})
		if err != nil {
			return err
		}
		defer proj.Close()
		h, err := api.NewServer(api.Config{Projection: proj, Logger: log, Metrics: prometheus.NewRegistry(),
			Tokens: []api.Token{{Name: "product", Role: domain.RoleReader, Secret: readerTok}}, Keys: events.Keys()})
		if err != nil {
			return err
		}
		url, stop, err := serve(api.NewHTTPServer("127.0.0.1:0", h), "api")
		if err != nil {
			return err
		}
		defer stop()
		ids, err := readIDs(filepath.Join(dir, "ids.txt"))
		if err != nil {
			return err
		}
		sides[i] = &side{url: url, ids: ids}
	}
	client := keepAliveClient(apiConns)
	defer client.CloseIdleConnections()
	for _, sd := range sides {
		if _, _, err := scaleGets(ctx, client, sd.url, sd.ids, apiConns*50); err != nil {
			return err
		}
	}
	var pairs []float64
	for k := range rounds {
		var took [2]time.Duration
		order := []int{0, 1}
		if k%2 == 1 {
			order = []int{1, 0} // alternate which side goes first
		}
		for _, i := range order {
			sd := sides[i]
			d, lats, err := scaleGets(ctx, client, sd.url, sd.ids, perRound)
			if err != nil {
				return err
			}
			sd.took += d
			sd.lats = append(sd.lats, lats...)
			took[i] = d
		}
		pairs = append(pairs, took[0].Seconds()/took[1].Seconds())
	}
	n := float64(rounds * perRound)
	base, large := sides[0], sides[1]
	r.set("rate_base", n/base.took.Seconds())
	r.set("rate", n/large.took.Seconds())
	r.set("p50_ms_base", ms(percentile(base.lats, 0.5)))
	r.set("p99_ms_base", ms(percentile(base.lats, 0.99)))
	r.set("p50_ms", ms(percentile(large.lats, 0.5)))
	r.set("p99_ms", ms(percentile(large.lats, 0.99)))
	r.set("ratio", median(pairs))
	r.set("ratio_min", slices.Min(pairs))
	r.set("ratio_max", slices.Max(pairs))
	r.set("ratio_totals", base.took.Seconds()/large.took.Seconds())
	r.set("requests", n)
	r.set("ids_base", float64(len(base.ids)))
	r.set("ids", float64(len(large.ids)))
	r.set("rounds", rounds)
	return nil
}

func readIDs(path string) ([]domain.ApplicantID, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ids []domain.ApplicantID
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			ids = append(ids, domain.ApplicantID(line))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%s: no applicant ids", path)
	}
	return ids, nil
}

// scaleGets sends n GETs over apiConns connections, rotating over ids, and checks that
// each answer is the applicant asked for. It returns the wall time and each latency.
func scaleGets(ctx context.Context, client *http.Client, base string, ids []domain.ApplicantID, n int) (time.Duration, []time.Duration, error) {
	return getAll(ctx, client, base, ids, func(id string, body []byte) error {
		if !bytes.Contains(body, []byte(`"applicantId":"`+id+`"`)) {
			return fmt.Errorf("GET %s: the answer is not that applicant's state", id)
		}
		return nil
	}, n)
}

// scaleRows prints the scale run's rows, each figure at the scale size beside the same
// figure at scaleBaseEvents, and returns its ratio lines.
func scaleRows(v func(phase, name string) float64, row rowFunc) []ratio {
	nan := math.NaN()
	if math.IsNaN(v("scale_load", "events")) && math.IsNaN(v("scale_load_base", "events")) {
		return nil
	}
	var ratios []ratio
	const at = "same at 100k events"
	pair := func(phase, figure, name, vfmt string, goal string) float64 {
		x, b := v(phase, name), v(phase+"_base", name)
		row(phase, figure, x, vfmt, at, b, vfmt, x/b, goal)
		return x / b
	}
	per := func(phase, name, unit string) (float64, float64) {
		return v(phase, name) / v("scale_load", unit), v(phase+"_base", name) / v("scale_load_base", unit)
	}
	row("scale_load", "applicants", v("scale_load", "applicants"), "%.0f", at, v("scale_load_base", "applicants"), "%.0f", nan, "")
	row("scale_load", "events", v("scale_load", "events"), "%.0f", at, v("scale_load_base", "events"), "%.0f", nan, "")
	pair("scale_load", "events/s loaded (seal, open, prepare, atomic batches)", "rate", "%.0f", "")
	x, b := per("scale_mem", "events_disk", "events")
	row("scale_mem", "KYC_EVENTS bytes per event on disk", x, "%.0f", at, b, "%.0f", x/b, "")
	x, b = per("scale_mem", "keys_disk", "applicants")
	row("scale_mem", "KYC_KEYS bytes per applicant on disk", x, "%.0f", at, b, "%.0f", x/b, "")
	x, b = per("scale_rebuild", "file_bytes", "applicants")
	row("scale_rebuild", "projection.db bytes per applicant", x, "%.0f", at, b, "%.0f", x/b, "")
	x, b = per("scale_rebuild", "file_bytes", "events")
	row("scale_rebuild", "projection.db bytes per event", x, "%.0f", at, b, "%.0f", x/b, "")
	pair("scale_mem", "subjects in KYC_EVENTS", "subjects", "%.0f", "")
	pair("scale_mem", "Go heap MiB after a restart (server inside), window 1 s", "heap_mib", "%.0f", "")
	pair("scale_mem", "RSS MiB after a restart, window 1 s", "rss_mib", "%.0f", "")
	dApps := v("scale_mem", "subjects") - v("scale_mem_base", "subjects")
	row("scale_mem", "=> heap MiB per million applicants (subjects)", (v("scale_mem", "heap_mib")-v("scale_mem_base", "heap_mib"))/dApps*1e6, "%.0f",
		"RSS MiB per million", (v("scale_mem", "rss_mib")-v("scale_mem_base", "rss_mib"))/dApps*1e6, "%.0f", nan, "")
	pair("scale_mem_dd", "Go heap MiB after a restart, every id in the 24h window", "heap_mib", "%.0f", "")
	row("scale_mem_dd", "=> heap MiB per million message ids in the window",
		(v("scale_mem_dd", "heap_mib")-v("scale_mem", "heap_mib"))/v("scale_mem", "msgs")*1e6, "%.0f",
		"RSS MiB per million ids", (v("scale_mem_dd", "rss_mib")-v("scale_mem", "rss_mib"))/v("scale_mem", "msgs")*1e6, "%.0f", nan, "")
	pair("scale_mem_dd", "server start s, every id in the window", "start_s", "%.1f", "")
	pair("scale_mem", "server start s, window 1 s", "start_s", "%.1f", "")
	x = pair("scale_rebuild", "rebuild events/s", "rate", "%.0f", ">= 0.8")
	ratios = append(ratios, ratio{"scale_rebuild", x})
	pair("scale_rebuild", "rebuild seconds", "seconds", "%.1f", "")
	pair("scale_boot1", "query node from sequence 1: seconds to ready", "seconds", "%.1f", "")
	pair("scale_boot1", "   of which KYC_KEYS checked for erasures, s", "shred_s", "%.2f", "")
	pair("scale_boot1", "   projector events/s", "rate", "%.0f", "")
	pair("scale_snap", "snapshot taken, s", "seconds", "%.1f", "")
	pair("scale_snap", "snapshot bytes (projection file)", "bytes", "%.0f", "")
	pair("scale_boot_snap", "query node from the newest snapshot: seconds to ready", "seconds", "%.1f", "")
	pair("scale_boot_snap", "   of which restoring the snapshot, s", "restore_s", "%.1f", "")
	boot := v("scale_boot1", "seconds") / v("scale_boot_snap", "seconds")
	row("bootstrap", "from sequence 1 over from a snapshot, at scale", boot, "%.1f",
		"same at 100k events", v("scale_boot1_base", "seconds")/v("scale_boot_snap_base", "seconds"), "%.1f", boot, ">= 10")
	ratios = append(ratios, ratio{"bootstrap", boot})
	if !math.IsNaN(v("scale_api", "rate")) {
		x := v("scale_api", "ratio")
		row("scale_api", fmt.Sprintf("GET /v1/applicants/{id} req/s, %d conns", apiConns), v("scale_api", "rate"), "%.0f",
			at, v("scale_api", "rate_base"), "%.0f", x, ">= 0.8")
		p99 := v("scale_api", "p99_ms") / v("scale_api", "p99_ms_base")
		row("scale_api", "latency p99 ms", v("scale_api", "p99_ms"), "%.2f", at, v("scale_api", "p99_ms_base"), "%.2f", p99, "<= 2")
		row("scale_api", "latency p50 ms", v("scale_api", "p50_ms"), "%.2f", at, v("scale_api", "p50_ms_base"), "%.2f",
			v("scale_api", "p50_ms")/v("scale_api", "p50_ms_base"), "")
		ratios = append(ratios, ratio{"scale_api", x}, ratio{"scale_api_p99", p99})
	}
	return ratios
}

// scaleWhat describes what a scale phase did.
func scaleWhat(name string, r *result) string {
	x := r.Values
	size := "scale"
	if strings.HasSuffix(name, "_base") {
		size, name = "100k", strings.TrimSuffix(name, "_base")
	}
	switch name {
	case "scale_load":
		return fmt.Sprintf("%s: %.0f events over %.0f applicants at %.0f events/s; AppendBatch, sync relaxed to 1m for the load only",
			size, x["events"], x["applicants"], x["rate"])
	case "scale_mem_dd":
		return fmt.Sprintf("%s: server restarted, %.0f messages in the duplicate window; then the window set to %s", size, x["msgs"], scaleWindow)
	case "scale_mem":
		return fmt.Sprintf("%s: server restarted, window %s; KYC_EVENTS %.0f MiB, KYC_KEYS %.0f MiB on disk", size, scaleWindow,
			x["events_disk"]/(1<<20), x["keys_disk"]/(1<<20))
	case "scale_rebuild":
		return fmt.Sprintf("%s: projection.Rebuild of %.0f events into %.0f MiB", size, x["events"], x["file_bytes"]/(1<<20))
	case "scale_boot1":
		return fmt.Sprintf("%s: new node, KYC_KEYS check, projector.Run from 1 until WaitFor(last)", size)
	case "scale_snap":
		return fmt.Sprintf("%s: snapshot.Take of the rebuilt file at checkpoint %.0f into KYC_SNAPSHOTS", size, x["checkpoint"])
	case "scale_boot_snap":
		return fmt.Sprintf("%s: new node, KYC_KEYS check, snapshot.Restore at %.0f, projector.Run until WaitFor(last)", size, x["from"])
	case "scale_api":
		return fmt.Sprintf("%.0f GETs each side, %.0f rounds, over %.0f (100k) and %.0f (scale) sampled applicants",
			x["requests"], x["rounds"], x["ids_base"], x["ids"])
	}
	return ""
}
