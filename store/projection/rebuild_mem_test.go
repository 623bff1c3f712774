package projection

import (
	"bufio"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

var rebuildMem = flag.Int("rebuild-mem", 0, "run TestRebuildMemory over this many applicants (10 events each); run it alone")

// TestRebuildMemory checks that a bulk load keeps its memory bounded by the chunk, not by
// the log: it builds a file of rebuild-mem applicants x 10 events from a streaming
// generator and reports the process's peak RSS, which must stay under 300 MB for 100,000
// applicants. Heavy, so off unless asked for, and meant to run alone (an earlier test
// in the same process can only raise the peak, never hide one):
//
//	go test ./store/projection -run '^TestRebuildMemory$' -rebuild-mem 100000 -v
func TestRebuildMemory(t *testing.T) {
	if *rebuildMem <= 0 {
		t.Skip("set -rebuild-mem to run")
	}
	applicants := *rebuildMem
	events := applicants * 10
	// The generator's own share first: the same log made and dropped, batch by batch.
	g := newGen(90, applicants, events)
	for done := 0; done < events; done += 1000 {
		g.next(1000)
	}
	genPeak := procStatusKB(t, "VmHWM")
	g = newGen(90, applicants, events)
	start := time.Now()
	path := filepath.Join(t.TempDir(), "p.db")
	b, err := NewBuilder(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for done := 0; done < events; done += 1000 {
		if err := b.Add(g.next(1000)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Finish(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	peak := procStatusKB(t, "VmHWM")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fi, _ := os.Stat(path)
	t.Logf("%d events over %d applicants in %v (%.0f events/s, generator included); file %d MB; peak RSS %d MB, of which the generator alone reached %d MB (now: anonymous %d MB, file-backed %d MB); Go heap sys %d MB",
		events, applicants, took.Round(time.Millisecond), float64(events)/took.Seconds(), fi.Size()>>20, peak>>10, genPeak>>10,
		procStatusKB(t, "RssAnon")>>10, procStatusKB(t, "RssFile")>>10, ms.HeapSys>>20)
	if limit := int64(300 << 10); applicants <= 100_000 && peak > limit {
		t.Fatalf("peak RSS %d MB, want under %d MB", peak>>10, limit>>10)
	}
	p := mustOpen(t, path, Options{ReadOnly: true})
	if p.Checkpoint() != uint64(events) {
		t.Fatalf("checkpoint %d", p.Checkpoint())
	}
}

// procStatusKB reads a kB figure from /proc/self/status.
func procStatusKB(t *testing.T, field string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Fatalf("%s not in /proc/self/status", field)
	return 0
}
