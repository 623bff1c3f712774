package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

// Every test of this package ends with no goroutine left: the in-process serve tests
// below run the embedded nats-server, the projector and both HTTP servers, and each of
// them must be gone once Run has returned.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testAppKey      = "71f2c0c6-c720-423b-8df0-7763102ad57e"
	testReaderToken = "reader-token-0123456789"
	testMasterKey   = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
)

// serveConfig is a serve config on a fresh data dir with both listeners on free ports.
func serveConfig(t *testing.T, dataDir string) *Resolved {
	t.Helper()
	cfg := defaultConfig()
	cfg.DataDir = dataDir
	cfg.Ingest.Listen = "127.0.0.1:0"
	cfg.API.Listen = "127.0.0.1:0"
	cfg.Log.Level = "warn"
	cfg.Apps = []AppConfig{{Name: "main", AppKey: testAppKey, Method: "aes-256-cbc",
		SecretKey: testSecret, HMACKey: testHMAC}}
	cfg.API.Tokens = []TokenConfig{{Name: "product", Role: "reader", Token: testReaderToken}}
	cfg.Keys.Master = testMasterKey
	r, err := resolveConfig(cfg, func(string) string { return "" }, true, true)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func serveMode() Mode { return Mode{Name: "serve", Ingest: true, Query: true, Embedded: true} }

// startMain runs m in the background and waits until it has started; the returned
// channel yields Run's error.
func startMain(t *testing.T, ctx context.Context, m *Main) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- m.Run(ctx) }()
	select {
	case <-m.Started():
	case err := <-errc:
		t.Fatalf("Run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start in 30 s")
	}
	return errc
}

func waitRun(t *testing.T, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return within 60 s of its stop")
		return nil
	}
}

// sealedWebhook is an applicantCreated webhook encrypted and signed as Allpass does.
func sealedWebhook(t *testing.T, r *Resolved, applicant string) (body []byte, sig string) {
	t.Helper()
	plain, _ := json.Marshal(map[string]any{
		"type": "applicantCreated", "id": applicant, "appKey": testAppKey, "externalUserId": "user-1",
	})
	body, sig, err := allpass.Seal(allpass.MethodCBC, r.Apps[0].Keys[0], plain, time.Now().UTC().Format(time.RFC3339Nano), nil)
	if err != nil {
		t.Fatal(err)
	}
	return body, sig
}

// TestServeInProcess runs serve on a temp data dir, posts a real encrypted webhook, reads
// its own write back through the read API, stops, and leaves no goroutine behind.
func TestServeInProcess(t *testing.T) {
	defer goleak.VerifyNone(t)
	r := serveConfig(t, t.TempDir())
	m := NewMain(serveMode(), r, zap.NewNop())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := startMain(t, ctx, m)

	// One client whose idle connections are closed at the end: its keep-alive goroutines
	// would otherwise outlive the test.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}

	applicant := domain.NewUUID()
	body, sig := sealedWebhook(t, r, applicant)
	req, _ := http.NewRequest(http.MethodPost, "http://"+m.Addr("ingest")+"/webhooks/allpass/main", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-allpass-signature", sig)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ack struct {
		Seq       uint64 `json:"seq"`
		Duplicate bool   `json:"duplicate"`
	}
	err = json.NewDecoder(resp.Body).Decode(&ack)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || ack.Seq == 0 || ack.Duplicate {
		t.Fatalf("webhook: %d %+v %v; want 200 with a fresh seq", resp.StatusCode, ack, err)
	}

	req, _ = http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/v1/applicants/%s?minSeq=%d", m.Addr("api"), applicant, ack.Seq), nil)
	req.Header.Set("Authorization", "Bearer "+testReaderToken)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var state struct {
		ApplicantID    string `json:"applicantId"`
		ExternalUserID string `json:"externalUserId"`
		Status         string `json:"status"`
		LastSeq        uint64 `json:"lastSeq"`
	}
	err = json.NewDecoder(resp.Body).Decode(&state)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("read: %d, %v", resp.StatusCode, err)
	}
	if state.ApplicantID != applicant || state.Status != "INIT" || state.LastSeq != ack.Seq || state.ExternalUserID != "user-1" {
		t.Errorf("read back %+v; want applicant %s in INIT at seq %d for user-1", state, applicant, ack.Seq)
	}
	tr.CloseIdleConnections()

	cancel()
	if err := waitRun(t, errc); err != nil {
		t.Errorf("Run after cancel: %v, want nil", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestCloseStopsRun: Close from another goroutine stops a running serve and returns once
// Run has; the data dir is free again for the next instance.
func TestCloseStopsRun(t *testing.T) {
	defer goleak.VerifyNone(t)
	dir := t.TempDir()
	for i := range 2 {
		m := NewMain(serveMode(), serveConfig(t, dir), zap.NewNop())
		errc := startMain(t, context.Background(), m)
		if err := m.Close(); err != nil {
			t.Fatalf("run %d: Close: %v", i, err)
		}
		if err := waitRun(t, errc); err != nil {
			t.Fatalf("run %d: Run after Close: %v, want nil", i, err)
		}
		if err := m.Close(); err != nil {
			t.Fatalf("run %d: second Close: %v", i, err)
		}
	}
	m := NewMain(serveMode(), serveConfig(t, dir), zap.NewNop())
	m.Close()
	if err := m.Run(context.Background()); err == nil {
		t.Error("Run after Close started")
	}
}

// TestFailedStartLeavesNothing makes each start step fail in turn and checks that Run
// names the step and that what the earlier steps opened is closed: no goroutine (the
// projector, a listener's server, the embedded nats-server) is left, and the data dir
// lock is released, so the next start on the same dir succeeds.
func TestFailedStartLeavesNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	steps := []string{stepDataDir, stepLock, stepNATS, stepEventLog, stepShred, stepRestore, stepProjection, stepSnapshot, stepErase, stepAPI,
		stepIngest, stepListenAPI, stepListenHooks}
	injected := errors.New("injected failure")
	dir := t.TempDir()
	for _, step := range steps {
		t.Run(step, func(t *testing.T) {
			var seen []string
			m := NewMain(serveMode(), serveConfig(t, dir), zap.NewNop())
			m.beforeStep = func(s string) error {
				seen = append(seen, s)
				if s == step {
					return injected
				}
				return nil
			}
			err := m.Run(context.Background())
			if !errors.Is(err, injected) || !strings.HasPrefix(err.Error(), "start "+step+":") {
				t.Fatalf("Run = %v; want the injected error, named %q", err, "start "+step)
			}
			if seen[len(seen)-1] != step {
				t.Errorf("steps run %q; want them to stop at %q", seen, step)
			}
			if err := m.Close(); err != nil {
				t.Errorf("Close after a failed start: %v", err)
			}
			if err := goleak.Find(); err != nil {
				t.Errorf("after a failed %s: %v", step, err)
			}
		})
	}
	// Every step ran, in order, in a full start.
	var seen []string
	m := NewMain(serveMode(), serveConfig(t, dir), zap.NewNop())
	m.beforeStep = func(s string) error { seen = append(seen, s); return nil }
	errc := startMain(t, context.Background(), m)
	m.Close()
	if err := waitRun(t, errc); err != nil {
		t.Fatal(err)
	}
	if strings.Join(seen, ",") != strings.Join(steps, ",") {
		t.Errorf("start steps %q; want %q", seen, steps)
	}
}

// TestRealStartFailures fails the start steps with the faults an operator meets.
func TestRealStartFailures(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, c := range []struct {
		name  string
		step  string
		setup func(t *testing.T, r *Resolved)
	}{
		{"data dir under a file", stepDataDir, func(t *testing.T, r *Resolved) {
			f := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(f, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			r.DataDir = filepath.Join(f, "data")
		}},
		{"data dir locked by another instance", stepLock, func(t *testing.T, r *Resolved) {
			if err := os.MkdirAll(r.DataDir, 0o700); err != nil {
				t.Fatal(err)
			}
			unlock, err := lockDataDir(r.DataDir)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(unlock)
		}},
		{"damaged projection file", stepProjection, func(t *testing.T, r *Resolved) {
			if err := os.MkdirAll(r.DataDir, 0o700); err != nil {
				t.Fatal(err)
			}
			junk := bytes.Repeat([]byte("not a bbolt file "), 1024)
			if err := os.WriteFile(filepath.Join(r.DataDir, "projection.db"), junk, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"read API port in use", stepListenAPI, func(t *testing.T, r *Resolved) {
			r.API.Listen = takenPort(t)
		}},
		{"webhook port in use", stepListenHooks, func(t *testing.T, r *Resolved) {
			r.Ingest.Listen = takenPort(t)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := serveConfig(t, filepath.Join(t.TempDir(), "data"))
			c.setup(t, r)
			m := NewMain(serveMode(), r, zap.NewNop())
			err := m.Run(context.Background())
			if err == nil || !strings.HasPrefix(err.Error(), "start "+c.step+":") {
				t.Fatalf("Run = %v; want an error naming %q", err, "start "+c.step)
			}
			m.Close()
			m.Close()
			if err := goleak.Find(); err != nil {
				t.Errorf("after %s: %v", c.name, err)
			}
		})
	}
}

// takenPort listens on a free port until the test ends and returns its address.
func takenPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// TestComponentFailureStopsAll: a component that fails while serving stops the others
// (the servers shut down, the projector ends) and Run returns its error.
func TestComponentFailureStopsAll(t *testing.T) {
	defer goleak.VerifyNone(t)
	boom := errors.New("sweep failed")
	fail := make(chan struct{})
	m := NewMain(serveMode(), serveConfig(t, t.TempDir()), zap.NewNop())
	m.extraLoops = []namedLoop{{name: "sweep", run: func(ctx context.Context) error {
		select {
		case <-fail:
			return boom
		case <-ctx.Done():
			return ctx.Err()
		}
	}}}
	errc := startMain(t, context.Background(), m)
	apiAddr := m.Addr("api")
	close(fail)
	err := waitRun(t, errc)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "sweep") {
		t.Fatalf("Run = %v; want the sweep's error, named", err)
	}
	if c, err := net.DialTimeout("tcp", apiAddr, time.Second); err == nil {
		c.Close()
		t.Errorf("read API at %s still accepts connections after Run returned", apiAddr)
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
