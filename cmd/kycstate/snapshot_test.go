package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/store/projection"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// snapshotYAML is serveConfig as a file, for the operations commands run in process.
func snapshotYAML(t *testing.T, dataDir string) string {
	t.Helper()
	return writeFile(t, "kycstate.yaml", fmt.Sprintf(`data_dir: %s
log: {level: warn}
keys: {master: %s}
ingest: {listen: "127.0.0.1:0"}
api: {listen: "127.0.0.1:0", tokens: [{name: product, role: reader, token: %s}]}
apps: [{name: main, app_key: %s, method: aes-256-cbc, secret_key: %s, hmac_key: %s}]
`, dataDir, testMasterKey, testReaderToken, testAppKey, testSecret, testHMAC))
}

// postCreated posts applicantCreated webhooks for n new applicants to a running serve,
// and reads the last one back, so that the projection holds them all.
func postCreated(t *testing.T, m *Main, r *Resolved, n int) {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	var id string
	var ack struct {
		Seq uint64 `json:"seq"`
	}
	for range n {
		id = domain.NewUUID()
		body, sig := sealedWebhook(t, r, id)
		req, _ := http.NewRequest(http.MethodPost, "http://"+m.Addr("ingest")+"/webhooks/allpass/main", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("x-allpass-signature", sig)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&ack)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("webhook: %d, %v", resp.StatusCode, err)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/v1/applicants/%s?minSeq=%d", m.Addr("api"), id, ack.Seq), nil)
	req.Header.Set("Authorization", "Bearer "+testReaderToken)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("read back at seq %d: %d", ack.Seq, resp.StatusCode)
	}
}

// serveFor runs serve on r until fn returns, and returns what it logged.
func serveFor(t *testing.T, r *Resolved, mode Mode, fn func(m *Main)) *observer.ObservedLogs {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	m := NewMain(mode, r, zap.New(core))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := startMain(t, ctx, m)
	fn(m)
	cancel()
	if err := waitRun(t, errc); err != nil {
		t.Fatalf("Run: %v", err)
	}
	return logs
}

func projectionDigests(t *testing.T, path string) map[domain.ApplicantKey]domain.Digest {
	t.Helper()
	p, err := projection.Open(path, projection.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	out := map[domain.ApplicantKey]domain.Digest{}
	if err := p.Digests(func(id domain.ApplicantKey, d domain.Digest) error { out[id] = d; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSnapshotThenRestore: kycstate snapshot on a stopped serve's data dir; serve started
// again without its projection restores that snapshot and folds only what came after;
// --from-scratch folds from 1. Each ends with the digests of the first serve.
func TestSnapshotThenRestore(t *testing.T) {
	defer goleak.VerifyNone(t)
	dir := t.TempDir()
	r := serveConfig(t, dir)
	r.Projection.SnapshotEvery = 0 // only the command takes one here
	cfgFile := snapshotYAML(t, dir)
	serveFor(t, r, serveMode(), func(m *Main) { postCreated(t, m, r, 20) })

	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"snapshot", "--config", cfgFile}, func(string) string { return "" }, nil, nil, &out, &errOut); err != nil {
		t.Fatalf("kycstate snapshot: %v\n%s", err, errOut.String())
	}
	if !strings.HasPrefix(out.String(), "snapshot ") || !strings.Contains(out.String(), "checkpoint 20,") {
		t.Fatalf("kycstate snapshot said %q", out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"snapshot", "--list", "--config", cfgFile}, func(string) string { return "" }, nil, nil, &out, &errOut); err != nil {
		t.Fatalf("kycstate snapshot --list: %v", err)
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 2 || !strings.HasSuffix(lines[1], "yes") {
		t.Fatalf("kycstate snapshot --list:\n%s", out.String())
	}

	serveFor(t, r, serveMode(), func(m *Main) { postCreated(t, m, r, 5) })
	path := filepath.Join(dir, "projection.db")
	want := projectionDigests(t, path)
	if len(want) != 25 {
		t.Fatalf("%d applicants, want 25", len(want))
	}

	for _, fromScratch := range []bool{false, true} {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		mode := serveMode()
		mode.FromScratch = fromScratch
		logs := serveFor(t, r, mode, func(m *Main) {
			if _, err := m.waitCaughtUp(t); err != nil {
				t.Fatal(err)
			}
		})
		restored := logs.FilterMessage("projection restored from a snapshot").All()
		if fromScratch != (len(restored) == 0) {
			t.Fatalf("from scratch %v: %d restore log lines", fromScratch, len(restored))
		}
		if !fromScratch && restored[0].ContextMap()["checkpoint"] != uint64(20) {
			t.Fatalf("restored %v", restored[0].ContextMap())
		}
		got := projectionDigests(t, path)
		for id, d := range want {
			if got[id] != d {
				t.Fatalf("from scratch %v: applicant %s digest %s, want %s", fromScratch, id, got[id], d)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("from scratch %v: %d applicants, want %d", fromScratch, len(got), len(want))
		}
	}
}

// waitCaughtUp waits until the node's read API says it is ready: its projection has
// caught up with the log as it was when the node started.
func (m *Main) waitCaughtUp(t *testing.T) (int, error) {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		resp, err := client.Get("http://" + m.Addr("api") + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return resp.StatusCode, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("node not ready within 30 s")
}
