package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestVerifyThroughAPI runs `kycstate verify --api` against a running serve, which holds
// its data dir locked: with the config's auditor token it folds the log afresh through
// the read API and finds no difference, counting every event sent; with a token given as
// env:NAME and no config it does the same; a reader's token, a wrong token and an address
// nothing listens on each end in a non-zero exit and a message saying what to do, with no
// token in any output. Offline verify, refused on the locked data dir, points to --api.
// Last, serve restarted over another service's projection: verify --api lists the
// foreign applicant and the one whose history it lacks, and exits 1.
func TestVerifyThroughAPI(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	p := s.start(t)
	at := time.Now().Add(-time.Hour)
	first, second := newID(), newID()
	var last answer
	sent := 0
	for _, id := range []string{first, second} {
		for i, typ := range []string{"applicantCreated", "applicantInProgress", "applicantApproved"} {
			last = mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], id, typ, "", at.Add(time.Duration(i)*time.Minute), "verify-api"))
			sent++
		}
	}
	waitApplied(t, s, second, last.seq)

	secrets := []string{s.auditor, s.reader, s.secretHex, s.hmacHex}
	noSecrets := func(t *testing.T, out string) {
		t.Helper()
		for _, sec := range secrets {
			if strings.Contains(out, sec) {
				t.Errorf("output shows a token or key:\n%s", out)
			}
		}
	}
	clean := func(t *testing.T, out string, err error) {
		t.Helper()
		noSecrets(t, out)
		if err != nil {
			t.Fatalf("verify --api: %v\n%s", err, out)
		}
		m := verifiedRE.FindStringSubmatch(out)
		if m == nil || m[2] != "0" {
			t.Fatalf("verify --api exited 0 but does not report 0 differences:\n%s", out)
		}
		if n, _ := strconv.Atoi(m[1]); n != sent {
			t.Errorf("verify --api compared %d events, want the %d sent:\n%s", n, sent, out)
		}
	}

	t.Run("auditor token from the config", func(t *testing.T) {
		out, err := s.ops(t, "verify", "--api", s.apiURL)
		clean(t, out, err)
	})
	t.Run("token from the environment, no config", func(t *testing.T) {
		env := append(append([]string{}, s.env...), "VERIFY_AUDIT_TOKEN="+s.auditor)
		out, err := runCmd(t, s.dir, env, opsWait, bins.kycstate, "verify", "--api", s.apiAdr, "--token", "env:VERIFY_AUDIT_TOKEN")
		clean(t, out, err)
	})

	refused := func(t *testing.T, out string, err error, want ...string) {
		t.Helper()
		noSecrets(t, out)
		if code := exitStatus(err); code <= 0 {
			t.Fatalf("exit %d, want non-zero\n%s", code, out)
		}
		if !contains(out, want...) {
			t.Errorf("message does not say %q:\n%s", want, out)
		}
		if verifiedRE.MatchString(out) {
			t.Errorf("reports a verification it did not do:\n%s", out)
		}
	}
	t.Run("reader token", func(t *testing.T) {
		out, err := s.ops(t, "verify", "--api", s.apiURL, "--token", s.reader)
		refused(t, out, err, "403", "auditor token", "--token")
	})
	t.Run("wrong token", func(t *testing.T) {
		out, err := s.ops(t, "verify", "--api", s.apiURL, "--token", randomHex(24))
		refused(t, out, err, "401", "refused the token", "--token")
	})
	t.Run("nothing listening", func(t *testing.T) {
		url := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
		out, err := s.ops(t, "verify", "--api", url)
		refused(t, out, err, "cannot reach the read API at "+url)
	})
	t.Run("the webhook listener", func(t *testing.T) {
		out, err := s.ops(t, "verify", "--api", s.ingestURL)
		refused(t, out, err, "404", "api.listen")
	})
	t.Run("offline on the locked data dir", func(t *testing.T) {
		out, err := s.ops(t, "verify")
		refused(t, out, err, "in use", "kycstate verify --api "+s.apiURL)
	})

	// Another service's projection, with an applicant this log never had, in place of this
	// one's. Serve folds its log onto it from that projection's checkpoint on, so the first
	// applicant's history lacks its first event. (Not a subtest: serve restarted here must
	// outlive it.)
	other := newBinService(t)
	op := other.start(t)
	stranger := newID()
	a := mustPost(t, other.ingestURL, other.app.Name, sealHook(t, other.app, other.app.Keys[0], stranger, "applicantCreated", "", at, "stranger"))
	waitApplied(t, other, stranger, a.seq)
	op.mustTerm(t)
	p.mustTerm(t)
	raw, err := os.ReadFile(filepath.Join(other.dataDir, "projection.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dataDir, "projection.db"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	p = s.start(t)
	waitApplied(t, s, second, last.seq)

	out, err := s.ops(t, "verify", "--api", s.apiURL)
	noSecrets(t, out)
	if code := exitStatus(err); code != 1 {
		t.Fatalf("verify --api of a foreign projection: exit %d, want 1\n%s", code, out)
	}
	if !regexp.MustCompile(`(?m)^extra `+stranger).MatchString(out) || !regexp.MustCompile(`(?m)^digest `+first).MatchString(out) {
		t.Errorf("verify --api does not list the foreign applicant as extra and the first applicant's digest:\n%s", out)
	}
	if regexp.MustCompile(`(?m)^\w+ ` + second).MatchString(out) {
		t.Errorf("verify --api lists the second applicant, whose events were all folded onto the foreign projection:\n%s", out)
	}
	if m := verifiedRE.FindStringSubmatch(out); m == nil || m[2] != "2" {
		t.Errorf("verify --api does not count 2 differences:\n%s", out)
	}
	if !strings.Contains(out, "rebuild") {
		t.Errorf("verify --api does not say how to repair:\n%s", out)
	}
	p.mustTerm(t)
}

// waitApplied waits (through minSeq) until the service's projection has applied seq, and
// requires that id's state is there.
func waitApplied(t *testing.T, s *binService, id string, seq uint64) {
	t.Helper()
	var st applicantState
	url := fmt.Sprintf("%s/v1/applicants/%s?minSeq=%d", s.apiURL, id, seq)
	deadline := time.Now().Add(readyWait)
	for {
		code, body := getJSON(t, url, s.reader, &st)
		if code == http.StatusOK && st.LastSeq == seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("projection did not apply seq %d: %d %s", seq, code, body)
		}
	}
}
