package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Fault runs: the service under a full disk, a damaged projection file and a NATS that is
// down (this file and fault_*_test.go). Helpers here are prefixed f; they reuse the binary
// tests' binService, hooks and checks from bin_helpers_test.go and crash_test.go.

// fNATS is one external nats-server (the harness's build of the pinned version) on a
// loopback port, with its JetStream store in a directory of the test's. start runs it
// again on the same port and store, as a restarted machine would.
type fNATS struct {
	t    *testing.T
	dir  string
	conf string
	addr string
	url  string
	proc *proc
}

// fNewNATS writes the server's config: max_payload as kycstate needs (eventlog.EmbeddedMaxPayload)
// and fsync on every write, as deploy/nats/nats-cluster.conf has. It does not start it.
func fNewNATS(t *testing.T) *fNATS {
	t.Helper()
	dir := t.TempDir()
	n := &fNATS{t: t, dir: dir, conf: filepath.Join(dir, "nats.conf"), addr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	n.url = "nats://" + n.addr
	conf := fmt.Sprintf("listen: %q\nmax_payload: 8MB\njetstream {\n  store_dir: %q\n  sync_interval: always\n}\n",
		n.addr, filepath.Join(dir, "store"))
	if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() && n.proc != nil {
			t.Logf("--- nats-server output (tail):\n%s", tail(n.proc.Output(), 3000))
		}
	})
	return n
}

// start runs the server and waits until it greets a client.
func (n *fNATS) start() {
	n.t.Helper()
	n.proc = start(n.t, n.dir, nil, bins.natsServer, "-c", n.conf)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", n.addr, time.Second)
		if err == nil {
			c.SetReadDeadline(time.Now().Add(time.Second))
			line := make([]byte, 4)
			_, err = io.ReadFull(c, line)
			c.Close()
			if err == nil && string(line) == "INFO" {
				return
			}
		}
		select {
		case <-n.proc.done:
			n.t.Fatalf("nats-server exited: %v\n%s", n.proc.err, n.proc.Output())
		default:
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("nats-server not accepting clients on %s after 30 s\n%s", n.addr, n.proc.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fTmpfs mounts a tmpfs of size (like "16m") on a fresh directory and unmounts it at the
// end of the test. A tmpfs is a small filesystem the test controls: filling it gives the
// real ENOSPC a full disk gives. Mounting needs root (CAP_SYS_ADMIN); without it the test
// is skipped, saying so.
func fTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("this test needs a small filesystem of its own, and mount -t tmpfs failed (run as root): %v %s", err, out)
	}
	// Registered after t.TempDir, so it runs before the directory is removed; and after
	// any process started later has been killed by its own cleanup.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// fFill writes a ballast file at path until the filesystem is full, and returns its size.
// Anything but ENOSPC ends the test.
func fFill(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		m, err := f.Write(buf)
		n += int64(m)
		if err == nil {
			continue
		}
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("filling %s: %v (want ENOSPC)", path, err)
		}
		// Smaller writes take the last partial chunk too, so nothing at all is left.
		for _, sz := range []int{4096, 512, 1} {
			for {
				m, err := f.Write(buf[:sz])
				n += int64(m)
				if err != nil {
					break
				}
			}
		}
		return n
	}
}

// fStatus GETs url (no token) and returns the status and body; 0 when there is no answer.
func fStatus(url string) (int, string) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(b)
}

// fWaitStatus polls url until it answers want, failing the test after d.
func fWaitStatus(t *testing.T, url string, want int, d time.Duration, p *proc) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		code, body := fStatus(url)
		if code == want {
			return body
		}
		if p != nil {
			select {
			case <-p.done:
				t.Fatalf("process exited while waiting for %s to answer %d: %v\n%s", url, want, p.err, tail(p.Output(), 4000))
			default:
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s answers %d %s, not %d, after %s", url, code, body, want, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fLogLine is one JSON log line of the service.
type fLogLine struct {
	Level  string `json:"level"`
	Logger string `json:"logger"`
	Msg    string `json:"msg"`
	Error  string `json:"error"`
	raw    string
}

// fLogLines parses the JSON lines of out; other lines are skipped.
func fLogLines(out string) []fLogLine {
	var ls []fLogLine
	for _, line := range strings.Split(out, "\n") {
		var l fLogLine
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg != "" {
			l.raw = line
			ls = append(ls, l)
		}
	}
	return ls
}

// fNoPanic fails the test if out shows a Go panic or a fatal runtime error.
func fNoPanic(t *testing.T, what, out string) {
	t.Helper()
	for _, sign := range []string{"panic:", "fatal error:", "goroutine 1 ["} {
		if strings.Contains(out, sign) {
			t.Errorf("%s printed %q:\n%s", what, sign, tail(out, 6000))
			return
		}
	}
}

// fAlive fails the test if p has exited.
func fAlive(t *testing.T, p *proc, what string) {
	t.Helper()
	select {
	case <-p.done:
		t.Fatalf("%s: the service exited: %v\n%s", what, p.err, tail(p.Output(), 6000))
	default:
	}
}

// fExternal points s at an external NATS: every command it runs (serve, ops) uses n.
func (n *fNATS) fExternal(s *binService) {
	s.env = append(s.env, "KYCSTATE_NATS_URL="+n.url)
}

// TestFaultDiskFullProjection puts the projection on a 16 MiB tmpfs and fills it while webhooks keep
// coming. The event log is on another disk (an external nats-server: with nats.url set,
// data_dir holds only projection.db and the lock), so this is the projection's disk alone
// running out. Promised: ingest keeps answering 200 (the log is fine); the projector stops
// with a clear error naming the cause and /readyz answers 503; nothing panics or exits;
// once space returns the projector resumes by itself and the projection catches up with
// every acknowledged webhook; verify passes after stop.
func TestFaultDiskFullProjection(t *testing.T) {
	needBins(t)
	began := time.Now()
	small := fTmpfs(t, "16m")
	n := fNewNATS(t)
	n.start()
	s := newBinService(t)
	s.dataDir = filepath.Join(small, "data")
	s.setKeys(t, testKeys{s.secretHex, s.hmacHex}) // rewrite the config with the new data_dir
	n.fExternal(s)
	p := s.start(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- serve output (tail):\n%s", tail(p.Output(), 6000))
		}
	})

	acks := map[string]ack{}
	at := time.Now().Add(-time.Hour)
	send := func(i int) ack {
		t.Helper()
		h := sealHook(t, s.app, s.app.Keys[0], newID(), "applicantCreated", "", at.Add(time.Duration(i)*time.Millisecond),
			fmt.Sprintf("full-%d-%s", i, randomHex(200)))
		a := mustPost(t, s.ingestURL, s.app.Name, h)
		acks[h.nonce] = ack{h: h, seq: a.seq, dup: a.dup}
		return acks[h.nonce]
	}
	for i := range 20 {
		send(i)
	}
	checkAcksInProjection(t, s, acks)
	fWaitStatus(t, s.apiURL+"/readyz", http.StatusOK, 30*time.Second, p)

	ballast := filepath.Join(small, "ballast")
	filled := fFill(t, ballast)
	beforeFull := len(acks)
	t.Logf("filled the projection's filesystem with a %d KiB ballast", filled>>10)

	// bbolt reuses freed pages first, so the disk shows full only once a commit needs a
	// new one: keep sending until the service says it is not ready.
	var readyBody string
	deadline := time.Now().Add(90 * time.Second)
	i := 20
	for {
		send(i)
		i++
		code, body := fStatus(s.apiURL + "/readyz")
		if code == http.StatusServiceUnavailable {
			readyBody = body
			break
		}
		if code != http.StatusOK {
			t.Fatalf("/readyz answered %d %s", code, body)
		}
		if time.Now().After(deadline) || i > 5000 {
			t.Fatalf("projection filesystem full, %d webhooks sent, and /readyz still answers 200", i)
		}
	}
	t.Logf("/readyz 503 after %d webhooks sent to a full disk: %s", len(acks)-beforeFull, readyBody)
	// The log is on another disk: webhooks are still accepted and acknowledged.
	for range 30 {
		send(i)
		i++
	}
	if code, body := fStatus(s.apiURL + "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with the projection's disk still full: %d %s, want 503", code, body)
	}
	var stalled *fLogLine
	for _, l := range fLogLines(p.Output()) {
		if l.Level == "error" && strings.Contains(l.Msg, "projection") && strings.Contains(l.Error, "no space left on device") {
			stalled = &l
			break
		}
	}
	if stalled == nil {
		t.Errorf("no error logged that names the cause (no space left on device) of the stalled projection:\n%s", tail(p.Output(), 4000))
	} else {
		t.Logf("logged: %s", stalled.raw)
	}
	fAlive(t, p, "projection's disk full")
	fNoPanic(t, "serve with its projection's disk full", p.Output())

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	freedAt := time.Now()
	fWaitStatus(t, s.apiURL+"/readyz", http.StatusOK, 60*time.Second, p)
	t.Logf("ready again %s after the space returned", time.Since(freedAt).Round(time.Millisecond))
	checkAcksInProjection(t, s, acks)
	if !strings.Contains(p.Output(), "projection resumed") {
		t.Errorf("no log line says the projection resumed")
	}
	fNoPanic(t, "serve after the disk-full episode", p.Output())
	p.mustTerm(t)
	mustVerify(t, s, len(acks))
	t.Logf("%d webhooks acknowledged, %d of them after the disk filled; done in %s",
		len(acks), len(acks)-beforeFull, time.Since(began).Round(time.Millisecond))
}

// TestFaultDiskFullLog puts the whole data dir of serve (the embedded NATS store and the
// projection) on a tmpfs and fills it. The log cannot store anything, so ingest must
// refuse every webhook with 503 and Retry-After (Allpass resends it) and never answer 200;
// the cause is logged; nothing panics. After space returns and serve restarts, the
// webhooks refused meanwhile are accepted when resent, the events acknowledged before are
// all still there, and verify passes.
//
// The tmpfs is 400 MiB: JetStream counts KYC_REJECTS's bound (nats.rejects_max_bytes)
// against 75% of the disk's free space when the stream is created, and the test was sized
// when that bound was 256 MiB. Whether appends resume without a restart once space
// returns is logged, not required: nats-server keeps a message block's first write error
// and refuses every later write to it until the server restarts.
func TestFaultDiskFullLog(t *testing.T) {
	needBins(t)
	began := time.Now()
	small := fTmpfs(t, "400m")
	s := newBinService(t)
	s.dataDir = filepath.Join(small, "data")
	s.setKeys(t, testKeys{s.secretHex, s.hmacHex})
	// A shorter bound than the default 5 s, so each refused webhook takes less time.
	s.env = append(s.env, "KYCSTATE_INGEST_APPEND_TIMEOUT=1s")
	p := s.start(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- serve output (tail):\n%s", tail(p.Output(), 6000))
		}
	})
	client := &http.Client{Timeout: 30 * time.Second}

	acks := map[string]ack{}
	at := time.Now().Add(-time.Hour)
	newHook := func(i int) hook {
		return sealHook(t, s.app, s.app.Keys[0], newID(), "applicantCreated", "", at.Add(time.Duration(i)*time.Millisecond),
			fmt.Sprintf("logfull-%d-%s", i, randomHex(100)))
	}
	for i := range 20 {
		h := newHook(i)
		a := mustPost(t, s.ingestURL, s.app.Name, h)
		acks[h.nonce] = ack{h: h, seq: a.seq}
	}
	checkAcksInProjection(t, s, acks)

	ballast := filepath.Join(small, "ballast")
	t.Logf("filled the data dir's filesystem with a %d MiB ballast", fFill(t, ballast)>>20)
	// A write that fits in a page the log's file already has still succeeds, durably; so
	// 200s may come first. Every 200 must be in the log at the end (checked below); once
	// the disk refuses, each answer must be 503 with Retry-After.
	var refused []hook
	for i := 20; i < 60 && len(refused) < 3; i++ {
		h := newHook(i)
		a, err := postHook(client, s.ingestURL, s.app.Name, h)
		switch {
		case err != nil:
			t.Fatalf("webhook with the log's disk full: %v", err)
		case a.code == http.StatusOK && len(refused) == 0:
			acks[h.nonce] = ack{h: h, seq: a.seq, dup: a.dup}
		case a.code == http.StatusOK:
			t.Errorf("webhook answered 200 (seq %d) after the full disk refused a write", a.seq)
			acks[h.nonce] = ack{h: h, seq: a.seq, dup: a.dup}
		case a.code != http.StatusServiceUnavailable || a.retryAfter == "":
			t.Errorf("webhook with the log's disk full: %d (Retry-After %q) %s, want 503 with Retry-After", a.code, a.retryAfter, a.body)
		default:
			refused = append(refused, h)
		}
	}
	if len(refused) == 0 {
		t.Fatalf("40 webhooks sent to a full disk, none refused")
	}
	t.Logf("with the disk full: %d webhooks answered 200 (written into pages the log already had), then %d refused with 503",
		len(acks)-20, len(refused))
	if !strings.Contains(p.Output(), "no space left on device") {
		t.Errorf("nothing logged names the cause (no space left on device)")
	}
	fAlive(t, p, "log's disk full")
	fNoPanic(t, "serve with its disk full", p.Output())

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	// Allpass resends: with space back, each answer is 200 or 503, nothing else.
	recovered := 0
	for _, h := range refused {
		a, err := postHook(client, s.ingestURL, s.app.Name, h)
		if err != nil {
			t.Fatalf("resending after the space returned: %v", err)
		}
		switch a.code {
		case http.StatusOK:
			recovered++
			acks[h.nonce] = ack{h: h, seq: a.seq, dup: a.dup}
		case http.StatusServiceUnavailable:
		default:
			t.Errorf("resending after the space returned: %d %s, want 200 or 503", a.code, a.body)
		}
	}
	t.Logf("space returned, serve not restarted: %d of %d refused webhooks accepted when resent", recovered, len(refused))

	p.mustTerm(t)
	fNoPanic(t, "serve stopping after a full disk", p.Output())
	p = s.start(t)
	for _, h := range refused {
		deadline := time.Now().Add(30 * time.Second)
		for {
			a, err := postHook(client, s.ingestURL, s.app.Name, h)
			if err != nil {
				t.Fatalf("resending after the restart: %v", err)
			}
			if a.code == http.StatusOK {
				if prev, ok := acks[h.nonce]; ok && prev.seq != a.seq {
					t.Errorf("webhook %s answered 200 with seq %d, then with seq %d", h.nonce, prev.seq, a.seq)
				}
				acks[h.nonce] = ack{h: h, seq: a.seq, dup: a.dup}
				break
			}
			if a.code != http.StatusServiceUnavailable || time.Now().After(deadline) {
				t.Fatalf("resending after the restart: %d %s, want 200", a.code, a.body)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for i := 25; i < 30; i++ {
		h := newHook(i)
		a := mustPost(t, s.ingestURL, s.app.Name, h)
		acks[h.nonce] = ack{h: h, seq: a.seq}
	}
	checkAcksInProjection(t, s, acks)
	fNoPanic(t, "serve after the restart", p.Output())
	p.mustTerm(t)
	events := s.exportLog(t)
	checkAcksInLog(t, acks, events)
	if len(events) != len(acks) {
		t.Errorf("the log has %d events, %d webhooks were acknowledged", len(events), len(acks))
	}
	mustVerify(t, s, len(acks))
	t.Logf("%d webhooks acknowledged, %d refused while full and accepted after; done in %s",
		len(acks), len(refused), time.Since(began).Round(time.Millisecond))
}
