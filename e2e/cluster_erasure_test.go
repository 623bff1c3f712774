package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go/jetstream"
)

// clGrepNodes returns, per node, the files under its store that hold needle.
func clGrepNodes(t *testing.T, c *clCluster, needle []byte) map[string][]string {
	t.Helper()
	found := map[string][]string{}
	for _, n := range c.nodes {
		err := filepath.WalkDir(n.dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.Contains(b, needle) {
				rel, _ := filepath.Rel(n.dir, path)
				found[n.name] = append(found[n.name], rel)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return found
}

// TestClusterErasureKeyBytes (DESIGN.md section 15, issue 22 hole 5): on the three-node
// loopback cluster (KYC_KEYS R3), after an erasure, every file of every node is searched
// for the destroyed data key as it was stored (wrapped under keys.master). The stream's
// own files hold none of it on any node: the key is securely deleted on every replica.
// The raft log of KYC_KEYS's group (under $SYS/_js_) keeps it until the group snapshots
// and compacts it away, and nats-server leaves the log's last block in place when it
// compacts; what this test saw is logged, and docs/SECURITY.md says what remains.
func TestClusterErasureKeyBytes(t *testing.T) {
	needBins(t)
	c := clStartCluster(t)
	app := clApp{appKey: domain.NewUUID(), secretHex: clRandHex(t, 32), hmacHx: clRandHex(t, 32)}
	svc := clStartServices(t, c, app)
	s := clNewSender(t, svc.ingestURL, app)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	id := domain.NewUUID()
	d, err := s.seal(id, "applicantCreated", "user-erased-"+id[:8], time.Now().UTC())
	if err != nil {
		t.Fatal(err)
	}
	if a := s.post(ctx, d); a.status != http.StatusOK {
		t.Fatalf("webhook: %d %s", a.status, a.err)
	}
	keys, err := c.js.Stream(ctx, "KYC_KEYS")
	if err != nil {
		t.Fatal(err)
	}
	m, err := keys.GetLastMsgForSubject(ctx, "kyc.keys.app."+app.appKey+"."+id)
	if err != nil {
		t.Fatal(err)
	}
	var km struct {
		Key []byte `json:"key"`
	}
	if err := json.Unmarshal(m.Data, &km); err != nil || len(km.Key) == 0 {
		t.Fatalf("key message %q: %v", m.Data, err)
	}
	wrapped, _ := json.Marshal(km.Key) // as the message holds it: base64 in quotes
	needle := bytes.Trim(wrapped, `"`)
	before := clGrepNodes(t, c, needle)
	t.Logf("before the erasure, the wrapped key is in: %v", before)
	if len(before) != 3 {
		t.Fatalf("the wrapped key is on %d nodes before the erasure, want 3: the search cannot find it", len(before))
	}

	// A 503 says "retry later" (the node is still catching up with the log's head as
	// it was when the request arrived): retry as a client would, within a bound.
	for deadline := time.Now().Add(30 * time.Second); ; {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, svc.queryURLs[0]+"/v1/applicants/"+id+"/erase",
			strings.NewReader(`{"reason":"retention period over"}`))
		req.Header.Set("Authorization", "Bearer "+svc.admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && time.Now().Before(deadline) {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("erase: %d", resp.StatusCode)
		}
		break
	}
	clEventually(t, 30*time.Second, "the key message deleted", func() error {
		_, err := keys.GetMsg(ctx, m.Sequence)
		if err == nil {
			return errors.New("the key message is still there")
		}
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		return err
	})
	after := clGrepNodes(t, c, needle)
	t.Logf("after the erasure, the wrapped key is in: %v", after)
	outsideRaft := func(found map[string][]string) []string {
		var bad []string
		for node, files := range found {
			for _, f := range files {
				if !strings.Contains(filepath.ToSlash(f), "/$SYS/_js_/") {
					bad = append(bad, node+":"+f)
				}
			}
		}
		return bad
	}
	if bad := outsideRaft(after); len(bad) > 0 {
		t.Fatalf("after the erasure, the wrapped key is outside the raft logs: %v", bad)
	}

	// Each node restarted in turn, as a rolling restart does: its raft groups snapshot
	// on a clean shutdown, and the WAL is compacted up to the snapshot.
	for _, n := range c.nodes {
		if err := n.proc.stop(t, 30*time.Second); err != nil {
			t.Logf("%s stopped: %v", n.name, err)
		}
		c.restart(n)
		c.waitLeader(60 * time.Second)
		clEventually(t, 60*time.Second, "replicas current", c.replicasCurrent)
	}
	restarted := clGrepNodes(t, c, needle)
	t.Logf("after a rolling restart, the wrapped key is in: %v", restarted)
	if bad := outsideRaft(restarted); len(bad) > 0 {
		t.Fatalf("after a rolling restart, the wrapped key is outside the raft logs: %v", bad)
	}
}
