// Command bench reproduces every performance figure kycstate claims, each beside a
// baseline measured in the same run on the same machine, as a ratio:
//
//  1. ingest: webhooks/s through ingest.NewHandler over loopback HTTP, against raw
//     JetStream publishes of the same stored bytes on the same embedded server;
//  2. rebuild: projection.Rebuild's events/s against a raw ordered drain of the same stream;
//  3. lag: how long after its 200 a webhook is visible in the projection, at a steady
//     1,000 webhooks/s, against the ingest latency of the same pacing alone;
//  4. api: GET /v1/applicants/{id} through api.NewServer against a bare net/http handler
//     serving the same bytes after the same token check;
//  5. ingest_r3 and ingest_burst_r3: the two ingest comparisons on a 3-node cluster of
//     nats-server processes on loopback, KYC_EVENTS with three replicas;
//  6. the peak RSS of each phase;
//  7. scale (only with -scale N or -only scale): a log of N applicants loaded at raw
//     speed, and its per-unit costs, rebuild, query-node start (from sequence 1 and from a
//     snapshot) and GET rate beside the same figures at 100,000 events (bench/scale.go).
//
// Each phase runs in its own child process (this binary again, with -phase), so each
// peak RSS (VmHWM) is that phase's own and no phase inherits another's heap or caches.
// The output ends with one line per comparison, `ratio <name> <value>`.
//
// A figure is never an absolute number to compare across machines, and never one the
// phase did not check: a phase whose work came out wrong (a stream short of events, a
// rebuilt projection behind the log, an answer other than the expected bytes) fails
// rather than report. It is a command, not a test: `go test ./...` compiles it and runs
// none of it.
//
// Run it through bench/run, which builds it first:
//
//	bench/run [--quick] [--profile DIR] [--only ingest,rebuild,lag,api,r3] [--scale N]
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// options are what every phase is told.
type options struct {
	Quick   bool
	Dir     string // scratch directory shared by the phases of one run
	Profile string // directory for CPU profiles; empty: none
	Seed    uint64
	// NATSServer and NATSConf are the nats-server binary and the cluster configuration
	// (deploy/nats/nats-cluster.conf) of the r3 phases; bench/run sets both.
	NATSServer string
	NATSConf   string
	// Scale is the scale run's number of applicants (DESIGN.md section 14); 0: no scale run.
	Scale int
}

// result is what a phase reports to the parent: named figures, notes, its peak RSS.
type result struct {
	Phase   string
	Values  map[string]float64
	Notes   []string
	PeakKiB int64   // VmHWM of the phase's process
	Seconds float64 // wall time of the phase, start-up included
}

func (r *result) set(name string, v float64) {
	if r.Values == nil {
		r.Values = map[string]float64{}
	}
	r.Values[name] = v
}

func (r *result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

type phaseSpec struct {
	name  string
	group string // what --only selects
	run   func(ctx context.Context, o options, r *result) error
}

// phases lists the phases in the order they run. load, drain, rebuild and drain2 share
// the stream in Dir.
func phases() []phaseSpec {
	return append([]phaseSpec{
		{"ingest", "ingest", phaseIngest},
		{"ingest_burst", "ingest", phaseIngestBurst},
		{"ingest_new", "ingest", phaseIngestNew},
		{"ingest_providers", "ingest", phaseIngestProviders},
		{"ingest_burst_new", "ingest", phaseIngestBurstNew},
		{"burst", "ingest", phaseBurst},
		{"load", "rebuild", phaseLoad},
		{"drain", "rebuild", phaseDrain},
		{"rebuild", "rebuild", phaseRebuild},
		{"drain2", "rebuild", phaseDrain},
		{"lag", "lag", phaseLag},
		{"api", "api", phaseAPI},
		{"ingest_r3", "r3", phaseIngestR3},
		{"ingest_burst_r3", "r3", phaseIngestBurstR3},
	}, scalePhases()...)
}

const resultPrefix = "RESULT "

func main() {
	var o options
	phase := flag.String("phase", "", "run one phase and print its result (internal: the parent runs each phase this way)")
	only := flag.String("only", "", "comma-separated groups to run: ingest, rebuild, lag, api, r3, scale (default all but scale)")
	flag.BoolVar(&o.Quick, "quick", false, "smaller sizes, under 3 minutes on 2 cores")
	flag.StringVar(&o.Dir, "dir", "", "scratch directory (default: a new temporary directory, removed afterwards)")
	flag.StringVar(&o.Profile, "profile", "", "write CPU profiles of the measured sections into this directory")
	flag.Uint64Var(&o.Seed, "seed", 1, "seed of the workload")
	flag.StringVar(&o.NATSServer, "nats-server", "", "nats-server binary for the r3 phases' cluster")
	flag.StringVar(&o.NATSConf, "nats-conf", "", "nats-server configuration of each cluster node (deploy/nats/nats-cluster.conf)")
	flag.IntVar(&o.Scale, "scale", 0, fmt.Sprintf("run the scale phases on a log of this many applicants (about 5 events each; -only scale alone: %d)", DefaultScale))
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *phase != "" {
		if err := child(ctx, *phase, o); err != nil {
			fmt.Fprintf(os.Stderr, "bench: phase %s: %v\n", *phase, err)
			os.Exit(1)
		}
		return
	}
	if err := parent(ctx, o, *only, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// child runs one phase and prints its result as one JSON line on stdout.
func child(ctx context.Context, name string, o options) error {
	for _, p := range phases() {
		if p.name != name {
			continue
		}
		start := time.Now()
		r := &result{Phase: name}
		var mem memSampler
		mctx, stop := context.WithCancel(ctx)
		sampled := make(chan struct{})
		go func() { defer close(sampled); mem.run(mctx) }()
		err := p.run(ctx, o, r)
		stop()
		<-sampled
		if err != nil {
			return err
		}
		r.Seconds = time.Since(start).Seconds()
		r.PeakKiB = peakRSS()
		r.set("max_rss_anon_mib", float64(mem.anonKiB)/1024)
		r.set("max_rss_file_mib", float64(mem.fileKiB)/1024)
		r.set("max_heap_inuse_mib", float64(mem.heapInuse)/(1<<20))
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		fmt.Printf("%s%s\n", resultPrefix, b)
		return nil
	}
	return fmt.Errorf("no phase %q", name)
}

// parent runs each phase in a child process and prints the table.
func parent(ctx context.Context, o options, only string, out io.Writer) error {
	mode := "full"
	if o.Quick {
		mode = "quick"
	}
	if o.Scale > 0 || strings.Contains(only, "scale") {
		mode = "scale"
	}
	fmt.Fprintf(out, "cpus %d\n", runtime.NumCPU())
	fmt.Fprintf(out, "go %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(out, "mode %s, started %s, %s\n", mode, time.Now().UTC().Format(time.RFC3339), loadAvg())

	groups := map[string]bool{}
	for g := range strings.SplitSeq(only, ",") {
		if g = strings.TrimSpace(g); g != "" {
			groups[g] = true
		}
	}
	for g := range groups {
		if !slices.ContainsFunc(phases(), func(p phaseSpec) bool { return p.group == g }) {
			return fmt.Errorf("--only: no group %q (ingest, rebuild, lag, api, r3, scale)", g)
		}
	}
	// The scale run is long and fills the disk: it runs only when asked for, alone when
	// --scale is given without --only.
	switch {
	case o.Scale < 0:
		return fmt.Errorf("--scale %d: the number of applicants must be positive", o.Scale)
	case o.Scale > 0 && len(groups) == 0:
		groups["scale"] = true
	case o.Scale > 0 && !groups["scale"]:
		return errors.New("--scale sets the size of the scale group: add scale to --only")
	case o.Scale == 0 && groups["scale"]:
		o.Scale = DefaultScale
	}
	if len(groups) == 0 {
		for _, p := range phases() {
			if p.group != "scale" {
				groups[p.group] = true
			}
		}
	}
	if groups["r3"] && (o.NATSServer == "" || o.NATSConf == "") {
		return errors.New("the r3 phases need -nats-server and -nats-conf (bench/run builds and passes them)")
	}
	if o.Dir == "" {
		dir, err := os.MkdirTemp("", "kycstate-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.Dir = dir
	}
	if groups["scale"] {
		fmt.Fprintf(out, "scale %d applicants under %s\n", o.Scale, o.Dir)
		if err := scaleDiskCheck(o.Dir, o.Scale); err != nil {
			return err
		}
	}
	if o.Profile != "" {
		if err := os.MkdirAll(o.Profile, 0o755); err != nil {
			return err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	start := time.Now()
	results := map[string]*result{}
	for _, p := range phases() {
		if !groups[p.group] {
			continue
		}
		fmt.Fprintf(os.Stderr, "== %s\n", p.name)
		r, err := runChild(ctx, self, p.name, o)
		if err != nil {
			return err
		}
		results[p.name] = r
	}
	fmt.Fprintln(out)
	report(out, results, time.Since(start), loadAvg())
	return nil
}

// loadAvg says how busy the machine is besides: the 1, 5 and 15 minute load averages,
// and the share of the last minute in which some task waited for the CPU or for I/O
// (Linux pressure stall information). Figures bounded by fsync move with the I/O share.
func loadAvg() string {
	s := "load average unknown"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			s = "load average " + strings.Join(f[:3], " ")
		}
	}
	for _, res := range []string{"cpu", "io"} {
		b, err := os.ReadFile("/proc/pressure/" + res)
		if err != nil {
			continue
		}
		for f := range strings.FieldsSeq(strings.SplitN(string(b), "\n", 2)[0]) {
			if v, ok := strings.CutPrefix(f, "avg60="); ok {
				s += fmt.Sprintf(", %s pressure %s%%", res, v)
			}
		}
	}
	return s
}

func runChild(ctx context.Context, self, name string, o options) (*result, error) {
	args := []string{"-phase", name, "-dir", o.Dir, "-seed", fmt.Sprint(o.Seed)}
	if o.Quick {
		args = append(args, "-quick")
	}
	if o.Profile != "" {
		args = append(args, "-profile", o.Profile)
	}
	if o.NATSServer != "" {
		args = append(args, "-nats-server", o.NATSServer, "-nats-conf", o.NATSConf)
	}
	if o.Scale > 0 {
		args = append(args, "-scale", fmt.Sprint(o.Scale))
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Stderr = os.Stderr
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("phase %s: %w", name, err)
	}
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), resultPrefix)
		if !ok {
			fmt.Fprintln(os.Stderr, sc.Text())
			continue
		}
		var r result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("phase %s: result: %w", name, err)
		}
		return &r, nil
	}
	return nil, errors.New("phase " + name + " printed no result")
}

// peakRSS reads this process's peak resident set size (VmHWM) in KiB, or -1.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	return vmHWM(b)
}

// vmHWM finds the peak RSS in KiB in the text of a /proc/PID/status file, or -1.
func vmHWM(status []byte) int64 {
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kib int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kib); err == nil {
				return kib
			}
		}
	}
	return -1
}

// memSampler watches, every 200 ms while a phase runs, what its resident memory is made
// of: anonymous memory (the Go heap of the one runtime that this program, the service's
// packages and the embedded NATS server share) and file-backed pages (bbolt's memory
// map, the stream's blocks), and the Go heap in use. It keeps the maximum of each; they
// need not peak at the same moment, so their sum may exceed VmHWM.
type memSampler struct {
	anonKiB, fileKiB int64
	heapInuse        uint64
}

func (m *memSampler) sample() {
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			var dst *int64
			v, ok := strings.CutPrefix(line, "RssAnon:")
			if ok {
				dst = &m.anonKiB
			} else if v, ok = strings.CutPrefix(line, "RssFile:"); ok {
				dst = &m.fileKiB
			} else {
				continue
			}
			var kib int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kib); err == nil {
				*dst = max(*dst, kib)
			}
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.heapInuse = max(m.heapInuse, ms.HeapInuse)
}

// run samples until ctx ends.
func (m *memSampler) run(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		m.sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// phaseDir is a phase's own scratch directory under the run's.
func phaseDir(o options, name string) (string, error) {
	dir := filepath.Join(o.Dir, name)
	return dir, os.MkdirAll(dir, 0o755)
}
