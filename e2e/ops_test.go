package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/ingest/allpass"
)

// replayed is one line of `kycstate replay --format jsonl`.
type replayed struct {
	Seq         uint64 `json:"seq"`
	ApplicantID string `json:"applicantId"`
	Type        string `json:"type"`
	Outcome     string `json:"outcome"`
	From        string `json:"from"`
	To          string `json:"to"`
}

func parseReplay(t *testing.T, out string) []replayed {
	t.Helper()
	var rs []replayed
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r replayed
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("replay --format jsonl printed a line that is not JSON: %q (%v)", line, err)
		}
		rs = append(rs, r)
	}
	return rs
}

// opsFixture is a stopped service's data dir holding a known log: three applicants, a
// webhook refused for a wrong key (Allpass rotated keys the config does not have yet),
// and one refused for an appKey that is not the app's.
type opsFixture struct {
	s          *binService
	hooks      []hook // acknowledged, in sequence order (seq = index + 1)
	a, b, c    string // applicants
	wrongKey   hook   // refused with 401: sealed with newKeys
	newKeys    testKeys
	badPayload hook // refused with 422, whatever the keys
}

func newOpsFixture(t *testing.T) *opsFixture {
	t.Helper()
	f := &opsFixture{s: newBinService(t), a: newID(), b: newID(), c: newID(), newKeys: newKeys()}
	s := f.s
	p := s.start(t)
	at := time.Now().Add(-time.Hour)
	k := s.app.Keys[0]
	for i, ev := range []struct{ who, typ, step string }{
		{f.a, "applicantCreated", ""}, {f.a, "applicantInProgress", ""}, {f.b, "applicantCreated", ""},
		{f.a, "applicantStepPassed", "selfie"}, {f.c, "applicantInReview", ""}, {f.a, "applicantCompleted", ""},
		{f.b, "applicantInProgress", ""}, {f.a, "applicantApproved", ""},
	} {
		h := sealHook(t, s.app, k, ev.who, ev.typ, ev.step, at.Add(time.Duration(i)*time.Second), fmt.Sprintf("ops-%d", i))
		if a := mustPost(t, s.ingestURL, s.app.Name, h); a.seq != uint64(i+1) || a.dup {
			t.Fatalf("webhook %d: seq %d duplicate %v, want seq %d", i, a.seq, a.dup, i+1)
		}
		f.hooks = append(f.hooks, h)
	}

	f.wrongKey = sealHook(t, s.app, f.newKeys.keys(t), newID(), "applicantCreated", "", at.Add(time.Minute), "ops-rotated")
	if a, err := postHook(http.DefaultClient, s.ingestURL, s.app.Name, f.wrongKey); err != nil || a.code != http.StatusUnauthorized {
		t.Fatalf("webhook sealed with keys the config lacks: %+v %v, want 401", a, err)
	}
	plain := fmt.Sprintf(`{"type":"applicantCreated","id":%q,"appKey":%q,"nonce":"ops-foreign"}`, newID(), newID())
	body, sig, err := allpass.Seal(s.app.Method, k, []byte(plain), at.Format(time.RFC3339), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f.badPayload = hook{body: body, sig: sig, nonce: "ops-foreign"}
	if a, err := postHook(http.DefaultClient, s.ingestURL, s.app.Name, f.badPayload); err != nil || a.code != http.StatusUnprocessableEntity {
		t.Fatalf("webhook with another app's appKey: %+v %v, want 422", a, err)
	}

	// While serve runs, every offline command refuses clearly instead of opening the store.
	for _, args := range [][]string{{"export"}, {"replay"}, {"verify"}, {"rebuild"}, {"rejects", "list"}, {"rejects", "reprocess"}} {
		t0 := time.Now()
		out, err := s.ops(t, args...)
		if code := exitStatus(err); code <= 0 {
			t.Errorf("kycstate %s while serve runs: exit %d, want non-zero\n%s", strings.Join(args, " "), code, out)
		} else if !strings.Contains(out, "in use") {
			t.Errorf("kycstate %s while serve runs: message does not say the data dir is in use:\n%s", strings.Join(args, " "), out)
		} else {
			t.Logf("%s while serve runs: refused after %s", strings.Join(args, " "), time.Since(t0).Round(time.Millisecond))
		}
	}
	// The projection has everything before the stop, so verify compares all of it.
	var st applicantState
	if code, body := getJSON(t, fmt.Sprintf("%s/v1/applicants/%s?minSeq=%d", s.apiURL, f.a, len(f.hooks)), s.reader, &st); code != http.StatusOK {
		t.Fatalf("projection did not catch up: %d %s", code, body)
	}
	p.mustTerm(t)
	return f
}

// TestOpsOffline runs the audit and operations commands on a stopped service's data dir:
// replay (all, one applicant, table), export, rejects list and reprocess after fixing the
// key, verify on an intact, a missing and a foreign projection, and rebuild.
func TestOpsOffline(t *testing.T) {
	needBins(t)
	f := newOpsFixture(t)
	s := f.s

	t.Run("replay", func(t *testing.T) {
		out := s.mustOps(t, "replay", "--format", "jsonl")
		// The first event has no status before it: null, as the read API writes it.
		if first, _, _ := strings.Cut(strings.TrimSpace(out), "\n"); !strings.Contains(first, `"from":null`) {
			t.Errorf("replay's first line has no \"from\":null: %s", first)
		}
		rs := parseReplay(t, out)
		if len(rs) != len(f.hooks) {
			t.Fatalf("replay printed %d events, the log has %d", len(rs), len(f.hooks))
		}
		want := []struct{ outcome, to string }{
			{"applied", "INIT"}, {"applied", "IN_PROGRESS"}, {"applied", "INIT"}, {"annotated", "IN_PROGRESS"},
			{"irregular", "IN_REVIEW"}, {"applied", "COMPLETED"}, {"applied", "IN_PROGRESS"}, {"applied", "APPROVED"},
		}
		for i, r := range rs {
			h := f.hooks[i]
			if r.Seq != uint64(i+1) || r.ApplicantID != h.applicant || r.Type != h.typ {
				t.Errorf("replay line %d: seq %d %s %s, want seq %d %s %s", i, r.Seq, r.ApplicantID, r.Type, i+1, h.applicant, h.typ)
			}
			if r.Outcome != want[i].outcome || r.To != want[i].to {
				t.Errorf("replay seq %d (%s): outcome %q to %q, want %q to %q", r.Seq, r.Type, r.Outcome, r.To, want[i].outcome, want[i].to)
			}
		}

		one := parseReplay(t, s.mustOps(t, "replay", "--format", "jsonl", "--applicant", f.a))
		var wantSeqs, gotSeqs []uint64
		for i, h := range f.hooks {
			if h.applicant == f.a {
				wantSeqs = append(wantSeqs, uint64(i+1))
			}
		}
		for _, r := range one {
			if r.ApplicantID != f.a {
				t.Errorf("replay --applicant %s printed an event of %s", f.a, r.ApplicantID)
			}
			gotSeqs = append(gotSeqs, r.Seq)
		}
		if fmt.Sprint(gotSeqs) != fmt.Sprint(wantSeqs) {
			t.Errorf("replay --applicant: seqs %v, want %v", gotSeqs, wantSeqs)
		}
		// An id in upper case names the same applicant: the log holds the canonical form.
		var upperSeqs []uint64
		for _, r := range parseReplay(t, s.mustOps(t, "replay", "--format", "jsonl", "--applicant", strings.ToUpper(f.a))) {
			upperSeqs = append(upperSeqs, r.Seq)
		}
		if fmt.Sprint(upperSeqs) != fmt.Sprint(wantSeqs) {
			t.Errorf("replay --applicant in upper case: seqs %v, want %v", upperSeqs, wantSeqs)
		}
		if rs := parseReplay(t, s.mustOps(t, "replay", "--format", "jsonl", "--applicant", newID())); len(rs) != 0 {
			t.Errorf("replay of an unknown applicant printed %d events", len(rs))
		}

		table := s.mustOps(t, "replay")
		lines := strings.Split(strings.TrimSpace(table), "\n")
		if len(lines) != len(f.hooks)+1 || !contains(lines[0], "SEQ", "OUTCOME") {
			t.Errorf("replay table: want a header and %d rows, got:\n%s", len(f.hooks), table)
		}
		if !contains(table, f.a, "applicantApproved", "irregular", "APPROVED") {
			t.Errorf("replay table lacks the events:\n%s", table)
		}
	})

	t.Run("export", func(t *testing.T) {
		sealedPath := filepath.Join(t.TempDir(), "sealed.jsonl")
		s.mustOps(t, "export", "--out", sealedPath)
		sealed, err := os.ReadFile(sealedPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range f.hooks {
			if bytes.Contains(sealed, []byte(h.nonce)) {
				t.Fatalf("export without --open shows a payload in clear: %s", h.nonce)
			}
		}
		path := filepath.Join(t.TempDir(), "log.jsonl")
		s.mustOps(t, "export", "--open", "--out", path)
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		evs := parseExport(t, bytes.NewReader(raw))
		if len(evs) != len(f.hooks) || strings.Count(string(raw), "\n") != len(f.hooks) {
			t.Fatalf("export wrote %d events in %d lines, the log has %d", len(evs), strings.Count(string(raw), "\n"), len(f.hooks))
		}
		for i, e := range evs {
			h := f.hooks[i]
			if e.Seq != uint64(i+1) || e.ApplicantID != h.applicant || e.Type != h.typ || e.nonce != h.nonce || e.AppKey != string(s.app.AppKey) {
				t.Errorf("export line %d: %+v, want seq %d %s %s %s", i, e, i+1, h.applicant, h.typ, h.nonce)
			}
			if e.Raw == nil || e.Raw.Body != string(h.body) || e.Raw.Signature != h.sig {
				t.Errorf("export line %d: the original body and signature are not kept for offline re-verification", i)
			}
		}
		if out, err := s.ops(t, "export", "--out", path); exitStatus(err) <= 0 {
			t.Errorf("export over an existing file: exit 0, want a refusal:\n%s", out)
		}
		stdout := s.mustOps(t, "export")
		if got := parseExport(t, strings.NewReader(stdout)); len(got) != len(evs) {
			t.Errorf("export to standard output: %d events, the file has %d", len(got), len(evs))
		}
		for _, secret := range []string{s.secretHex, s.hmacHex, s.reader, s.auditor} {
			if strings.Contains(string(raw), secret) {
				t.Errorf("export holds a configured secret")
			}
		}
	})

	t.Run("verify intact", func(t *testing.T) { mustVerify(t, s, len(f.hooks)) })

	t.Run("rejects", func(t *testing.T) {
		list := s.mustOps(t, "rejects", "list")
		if !contains(list, "401", "422", s.app.Name) {
			t.Errorf("rejects list does not show the refused webhooks (401 and 422 for %s):\n%s", s.app.Name, list)
		}
		var rejects []struct {
			Status int    `json:"status"`
			Reason string `json:"reason"`
			App    string `json:"app"`
			Body   string `json:"body"`
		}
		for _, line := range strings.Split(strings.TrimSpace(s.mustOps(t, "rejects", "list", "--format", "jsonl")), "\n") {
			var r struct {
				Status int    `json:"status"`
				Reason string `json:"reason"`
				App    string `json:"app"`
				Body   string `json:"body"`
			}
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("rejects list --format jsonl: %q: %v", line, err)
			}
			rejects = append(rejects, r)
		}
		if len(rejects) != 2 || rejects[0].Status != 401 || rejects[1].Status != 422 ||
			rejects[0].Body != string(f.wrongKey.body) || rejects[1].Body != string(f.badPayload.body) {
			t.Errorf("rejects kept: %+v; want the 401 and the 422 with their bodies", rejects)
		}
		for _, secret := range []string{s.secretHex, s.hmacHex, f.newKeys.secretHex, f.newKeys.hmacHex} {
			if strings.Contains(list, secret) {
				t.Errorf("rejects list prints a key")
			}
		}

		// Still the old keys: nothing opens, nothing is appended.
		out := s.mustOps(t, "rejects", "reprocess")
		if n := reprocessCount(t, out, "Recovered"); n != 0 {
			t.Errorf("reprocess with the old keys recovered %d:\n%s", n, out)
		}
		// Fix the config: the keys Allpass uses now.
		s.setKeys(t, f.newKeys)
		out = s.mustOps(t, "rejects", "reprocess")
		if reprocessCount(t, out, "Recovered") != 1 || reprocessCount(t, out, "Failing") != 1 {
			t.Errorf("reprocess after fixing the key: want 1 recovered, 1 still failing (the foreign appKey):\n%s", out)
		}
		evs := s.exportLog(t)
		if len(evs) != len(f.hooks)+1 || countNonce(evs, f.wrongKey.nonce) != 1 || countNonce(evs, f.badPayload.nonce) != 0 {
			t.Fatalf("after reprocess the log has %d events (want %d), the recovered webhook %d times (want 1), the refused one %d times (want 0)",
				len(evs), len(f.hooks)+1, countNonce(evs, f.wrongKey.nonce), countNonce(evs, f.badPayload.nonce))
		}
		out = s.mustOps(t, "rejects", "reprocess")
		if reprocessCount(t, out, "Recovered") != 0 || reprocessCount(t, out, "Duplicates") != 1 {
			t.Errorf("reprocessing again: want 0 recovered, 1 duplicate:\n%s", out)
		}
		if evs := s.exportLog(t); len(evs) != len(f.hooks)+1 {
			t.Errorf("reprocessing again added events: the log has %d, want %d", len(evs), len(f.hooks)+1)
		}
		// The projection is behind the log now; verify compares up to its checkpoint.
		mustVerify(t, s, len(f.hooks))

		// Serve folds the recovered event; the webhook sent with the new keys now opens.
		p := s.start(t)
		var st applicantState
		url := fmt.Sprintf("%s/v1/applicants/%s?minSeq=%d", s.apiURL, f.wrongKey.applicant, len(f.hooks)+1)
		if code, body := getJSON(t, url, s.reader, &st); code != http.StatusOK || deref(st.Status) != "INIT" || st.LastSeq != uint64(len(f.hooks)+1) {
			t.Errorf("recovered applicant: %d %s", code, body)
		}
		if a := mustPost(t, s.ingestURL, s.app.Name, f.wrongKey); !a.dup || a.seq != uint64(len(f.hooks)+1) {
			t.Errorf("Allpass's retry of the recovered webhook: seq %d duplicate %v, want the recovered seq, duplicate", a.seq, a.dup)
		}
		p.mustTerm(t)
		mustVerify(t, s, len(f.hooks)+1)
	})

	t.Run("verify missing projection", func(t *testing.T) {
		proj := filepath.Join(s.dataDir, "projection.db")
		if err := os.Rename(proj, proj+".saved"); err != nil {
			t.Fatal(err)
		}
		defer os.Rename(proj+".saved", proj)
		out, err := s.ops(t, "verify")
		if code := exitStatus(err); code != 1 {
			t.Errorf("verify without a projection: exit %d, want 1\n%s", code, out)
		}
		if !strings.Contains(out, "projection") {
			t.Errorf("verify without a projection does not say what is missing:\n%s", out)
		}
		if _, err := os.Stat(proj); err == nil {
			t.Errorf("verify created %s; it should only read", proj)
		}
		// rebuild writes it from the log; verify then agrees.
		s.mustOps(t, "rebuild")
		mustVerify(t, s, len(f.hooks)+1)
		os.Remove(proj)
	})

	t.Run("verify foreign projection", func(t *testing.T) {
		// Another service's projection in place of this one's: it knows an applicant
		// this log never had, and not the ones it has.
		other := newBinService(t)
		op := other.start(t)
		stranger := newID()
		a := mustPost(t, other.ingestURL, other.app.Name, sealHook(t, other.app, other.app.Keys[0], stranger, "applicantCreated", "", time.Now(), "stranger"))
		getJSON(t, fmt.Sprintf("%s/v1/applicants/%s?minSeq=%d", other.apiURL, stranger, a.seq), other.reader, nil)
		op.mustTerm(t)
		proj := filepath.Join(s.dataDir, "projection.db")
		raw, err := os.ReadFile(filepath.Join(other.dataDir, "projection.db"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(proj, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := s.ops(t, "verify")
		if code := exitStatus(err); code != 1 {
			t.Fatalf("verify of a foreign projection: exit %d, want 1\n%s", code, out)
		}
		if !regexp.MustCompile(`(?m)^extra `+stranger).MatchString(out) || !regexp.MustCompile(`(?m)^missing `+f.a).MatchString(out) {
			t.Errorf("verify does not list the foreign applicant as extra and this log's first applicant as missing:\n%s", out)
		}
		if m := verifiedRE.FindStringSubmatch(out); m == nil || m[2] == "0" {
			t.Errorf("verify does not count the differences:\n%s", out)
		}
		s.mustOps(t, "rebuild")
		mustVerify(t, s, len(f.hooks)+1)
	})
}

// reprocessCount reads a count (Recovered, Duplicates, Failing) from reprocess's summary.
func reprocessCount(t *testing.T, out, name string) int {
	t.Helper()
	m := regexp.MustCompile(`(?i)` + name + `\W*(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("rejects reprocess does not report %s:\n%s", name, out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func countNonce(evs []exported, nonce string) int {
	n := 0
	for _, e := range evs {
		if e.nonce == nonce {
			n++
		}
	}
	return n
}
