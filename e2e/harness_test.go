package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// bins holds the binaries TestMain builds once for every test: kycstate from this module
// and nats-server at the version go.mod pins (built from the module graph, so no download).
var bins struct {
	dir        string
	kycstate   string
	natsServer string

	// hooked is kycstate built with -tags kycstate_testhooks, for the crash tests that
	// stop it at a chosen point; built on first use (hookedKycstate), as few tests need it.
	hookedOnce sync.Once
	hooked     string
	hookedErr  error
}

// testHooksTag builds the binary with the crash tests' hooks (cmd/kycstate/testhooks.go).
const testHooksTag = "kycstate_testhooks"

// hookedKycstate returns the path of kycstate built with the crash tests' hooks.
func hookedKycstate(t *testing.T) string {
	t.Helper()
	bins.hookedOnce.Do(func() {
		out := filepath.Join(bins.dir, "kycstate-testhooks")
		cmd := exec.Command("go", "build", "-tags", testHooksTag, "-o", out, "github.com/kycstate/kycstate/cmd/kycstate")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if bins.hookedErr = cmd.Run(); bins.hookedErr == nil {
			bins.hooked = out
		}
	})
	if bins.hookedErr != nil {
		t.Fatalf("building kycstate with -tags %s: %v", testHooksTag, bins.hookedErr)
	}
	return bins.hooked
}

// TestProductionBinaryHasNoTestHooks: the binary built as released carries none of the
// crash tests' hooks, not even the name of the variable that would switch one on.
func TestProductionBinaryHasNoTestHooks(t *testing.T) {
	needBins(t)
	b, err := os.ReadFile(bins.kycstate)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("KYCSTATE_TEST_")) {
		t.Fatal("the production binary holds a KYCSTATE_TEST_ variable name: a test hook ships in it")
	}
	hooked, err := os.ReadFile(hookedKycstate(t))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(hooked, []byte("KYCSTATE_TEST_HOLD_AFTER_ERASE_APPEND")) || !bytes.Contains(hooked, []byte("KYCSTATE_TEST_HOLD_AFTER_KEYS_WRITE")) {
		t.Fatal("the binary built with the hooks does not hold the hook's variable: this test would pass for any binary")
	}
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "kycstate-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.dir = dir
	bins.kycstate = filepath.Join(dir, "kycstate")
	bins.natsServer = filepath.Join(dir, "nats-server")
	build := func(out, pkg string) error {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		return cmd.Run()
	}
	if err := build(bins.kycstate, "github.com/kycstate/kycstate/cmd/kycstate"); err != nil {
		fmt.Fprintln(os.Stderr, "building kycstate:", err)
		os.Exit(1)
	}
	if err := build(bins.natsServer, "github.com/nats-io/nats-server/v2"); err != nil {
		fmt.Fprintln(os.Stderr, "building nats-server:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func needBins(t *testing.T) {
	t.Helper()
	if testing.Short() || bins.kycstate == "" {
		t.Skip("end-to-end tests build binaries; skipped with -short")
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// proc is a running binary with its output captured.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

type lockedWriter struct{ p *proc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

// start runs bin with args and env (added to a minimal environment) in dir.
func start(t *testing.T, dir string, env []string, bin string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	p := &proc{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = lockedWriter{p}, lockedWriter{p}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	return p
}

// Output returns everything the process printed so far.
func (p *proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// kill sends SIGKILL and waits.
func (p *proc) kill() {
	if p.cmd.Process != nil {
		p.cmd.Process.Kill()
	}
	<-p.done
}

// stop sends SIGTERM and waits up to d; it returns the exit error.
func (p *proc) stop(t *testing.T, d time.Duration) error {
	t.Helper()
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		t.Fatalf("process did not stop within %s after SIGTERM; output:\n%s", d, p.Output())
		return nil
	}
}

// wait waits for the process to exit within d and returns its exit error.
func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		t.Fatalf("process still running after %s; output:\n%s", d, p.Output())
		return nil
	}
}

// runCmd runs bin to completion within d and returns combined output and exit error.
func runCmd(t *testing.T, dir string, env []string, d time.Duration, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitHTTP polls url until it answers 200 or d passes.
func waitHTTP(t *testing.T, url string, d time.Duration, p *proc) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if p != nil {
			select {
			case <-p.done:
				t.Fatalf("process exited while waiting for %s: %v\n%s", url, p.err, p.Output())
			default:
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	out := ""
	if p != nil {
		out = p.Output()
	}
	t.Fatalf("%s not ready after %s\n%s", url, d, out)
}

// contains reports whether s has every one of subs.
func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
