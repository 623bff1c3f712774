package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
)

// cloneTo is s with a data dir, config and ports of its own and everything else shared:
// the same app, tokens and keys.master, as a restore on another machine is configured.
func (s *binService) cloneTo(t *testing.T) *binService {
	t.Helper()
	c := *s
	c.dir = t.TempDir()
	c.dataDir = filepath.Join(c.dir, "data")
	c.cfgPath = filepath.Join(c.dir, "kycstate.yaml")
	c.ingestAdr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	c.apiAdr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	c.ingestURL, c.apiURL = "http://"+c.ingestAdr, "http://"+c.apiAdr
	c.setKeys(t, testKeys{s.secretHex, s.hmacHex})
	return &c
}

// stateBody is GET /v1/applicants/{id} as the auditor reads it, raw.
func stateBody(t *testing.T, s *binService, id string) string {
	t.Helper()
	code, body := getJSON(t, s.apiURL+"/v1/applicants/"+id, s.auditor, nil)
	if code != http.StatusOK {
		t.Fatalf("GET state of %s: %d %s", id, code, body)
	}
	return body
}

// The restore drill of docs/OPERATIONS.md through the built binary: webhooks, a backup,
// more webhooks, the erasure of X, the ledger; the backup restored into a fresh data dir
// with the ledger. Then no file under the new data_dir holds X's personal data, X's status
// and history remain and say erased, every other applicant reads as it did at the backup,
// and verify passes.
func TestBackupRestoreDrill(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	p := s.start(t)
	at := time.Now().Add(-time.Hour).UTC()
	ids := []string{newID(), newID(), newID()} // A, B, X
	x := ids[2]
	nonces := map[string][]string{}
	post := func(id, typ string, n int) uint64 {
		nonce := fmt.Sprintf("zr%s%02d", id[:6], n)
		nonces[id] = append(nonces[id], nonce)
		return mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], id, typ, "", at.Add(time.Duration(n)*time.Second), nonce)).seq
	}
	var last uint64
	for i, id := range ids {
		post(id, "applicantCreated", 10*i)
		last = post(id, "applicantCompleted", 10*i+1)
	}
	api, err := client.New(s.apiURL, s.reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := api.State(context.Background(), domain.ApplicantID(ids[0]), client.StateQuery{MinSeq: last}); err != nil {
		t.Fatal(err)
	}
	atBackup := map[string]string{}
	for _, id := range ids {
		atBackup[id] = stateBody(t, s, id)
	}
	p.mustTerm(t)
	backupDir := filepath.Join(t.TempDir(), "backup")
	out := s.mustOps(t, "backup", "--out", backupDir)
	if !strings.Contains(out, "backed up KYC_EVENTS: 6 messages") || !strings.Contains(out, "backup complete") {
		t.Fatalf("backup said:\n%s", out)
	}
	if out, err := s.ops(t, "backup", "--out", backupDir); err == nil || !strings.Contains(out, "already holds a backup") {
		t.Fatalf("a second backup into the same directory: %v\n%s", err, out)
	}

	p = s.start(t)
	post(ids[0], "applicantApproved", 2)
	post(x, "applicantApproved", 22)
	c, err := client.New(s.apiURL, s.admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Erase(context.Background(), domain.ApplicantID(x), "ticket 4711 from the applicant"); err != nil {
		t.Fatalf("erase X: %v", err)
	}
	p.mustTerm(t)
	ledger := filepath.Join(t.TempDir(), "erasures.jsonl")
	if out := s.mustOps(t, "erasures", "--out", ledger); !strings.Contains(out, "wrote 1 erasures") {
		t.Fatalf("erasures said:\n%s", out)
	}
	lb, err := os.ReadFile(ledger)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(lb, []byte(`"applicantId":"`+x+`"`)) || bytes.Contains(lb, []byte("4711")) || bytes.Contains(lb, []byte("user-")) {
		t.Fatalf("ledger = %s: want X's erasure and nothing personal", lb)
	}

	r := s.cloneTo(t)
	out = r.mustOps(t, "restore", "--from", backupDir, "--erasures", ledger)
	for _, want := range []string{"restored KYC_EVENTS: 6 messages", "restored KYC_KEYS", "1 of 1 in the ledger erased again"} {
		if !strings.Contains(out, want) {
			t.Fatalf("restore did not say %q:\n%s", want, out)
		}
	}
	if out, err := r.ops(t, "restore", "--from", backupDir); err == nil || !strings.Contains(out, "already has KYC_EVENTS") {
		t.Fatalf("a restore into a server that has the streams: %v\n%s", err, out)
	}
	if leaks := grepDataDir(t, r.dataDir, personal(x, nonces[x][0])); len(leaks) > 0 {
		t.Fatalf("X's personal data in clear under the restored data_dir: %v", leaks)
	}
	keyOf := func(id string) string { return `"kind":"data","app":"` + string(s.app.AppKey) + `","id":"` + id + `"` }
	if got := grepDataDir(t, filepath.Join(r.dataDir, "nats"), []string{keyOf(ids[0]), keyOf(x)}); len(got[keyOf(ids[0])]) == 0 || len(got[keyOf(x)]) > 0 {
		t.Fatalf("restored KYC_KEYS files: A's key in %v (want some), X's in %v (want none)", got[keyOf(ids[0])], got[keyOf(x)])
	}

	p = r.start(t)
	var st client.State
	if code, body := getJSON(t, r.apiURL+"/v1/applicants/"+x+"?minSeq=7", r.auditor, &st); code != http.StatusOK || !st.Erased || st.ExternalUserID != nil {
		t.Fatalf("X after the restore: %d %s; want erased, no externalUserId", code, body)
	}
	if st.Status == nil || !strings.Contains(atBackup[x], `"status":"`+*st.Status+`"`) {
		t.Fatalf("X's status after the restore = %v, want the one at the backup: %s", st.Status, atBackup[x])
	}
	code, hist := getJSON(t, r.apiURL+"/v1/applicants/"+x+"/history", r.auditor, nil)
	if code != http.StatusOK || strings.Count(hist, `"seq"`) != 3 || !strings.Contains(hist, `"outcome":"erased"`) {
		t.Fatalf("X's history after the restore: %d %s; want its two events and the erasure", code, hist)
	}
	for _, id := range ids[:2] {
		if got := stateBody(t, r, id); got != atBackup[id] {
			t.Fatalf("applicant %s after the restore:\n%s\nat the backup:\n%s", id, got, atBackup[id])
		}
	}
	p.mustTerm(t)
	r.mustOps(t, "verify") // exit 0: every digest agrees with a fresh fold of the restored log
	for _, e := range r.exportLog(t) {
		if e.ApplicantID == x && len(e.Payload) > 0 && e.Type != "applicantErased" {
			t.Fatalf("X's event %d opens after the restore: %s", e.Seq, e.Payload)
		}
		if e.ApplicantID == ids[0] && e.nonce == "" {
			t.Fatalf("A's event %d no longer opens after the restore", e.Seq)
		}
	}
}
