package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
)

// listedReject is what `rejects list --format jsonl` prints of one reject, as far as
// these tests read it.
type listedReject struct {
	Seq         uint64 `json:"seq"`
	Status      int    `json:"status"`
	Reason      string `json:"reason"`
	Body        string `json:"body"`
	Kept        string `json:"kept"`
	ApplicantID string `json:"applicantId"`
}

func listRejects(t *testing.T, s *binService) []listedReject {
	t.Helper()
	var out []listedReject
	for _, line := range strings.Split(strings.TrimSpace(s.mustOps(t, "rejects", "list", "--format", "jsonl")), "\n") {
		if line == "" {
			continue
		}
		var r listedReject
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("rejects list --format jsonl: %.200q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// sealPayload seals an arbitrary plaintext with the app's keys: a webhook whose MAC
// verifies, whatever its payload says.
func sealPayload(t *testing.T, app allpass.App, plain map[string]any) hook {
	t.Helper()
	b, err := json.Marshal(plain)
	if err != nil {
		t.Fatal(err)
	}
	body, sig, err := allpass.Seal(app.Method, app.Keys[0], b, time.Now().UTC().Format(time.RFC3339Nano), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return hook{applicant: fmt.Sprint(plain["id"]), body: body, sig: sig}
}

// postWant sends h and requires the status want.
func postWant(t *testing.T, s *binService, h hook, want int) {
	t.Helper()
	a, err := postHook(http.DefaultClient, s.ingestURL, s.app.Name, h)
	if err != nil || a.code != want {
		t.Fatalf("POST webhook: %d %.200s %v; want %d", a.code, a.body, err, want)
	}
}

// TestJunkCannotEvictAuthenticatedRejects (issue 21, point 3): the app is configured
// with a wrong app_key (its secrets right), so a genuine webhook is refused 422; then
// 100 unsigned 1 MB bodies, 100 MB against KYC_REJECTS's 64 MiB. Before section 15,
// seventy of them pushed every earlier reject out. The 422 is still listed whole under
// its applicant, and once the app_key is fixed `rejects reprocess` recovers it into
// the log; the junk is kept only as cut samples, which reprocess skips.
func TestJunkCannotEvictAuthenticatedRejects(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	genuine := s.app
	s.app.AppKey = domain.AppKey(newID())
	s.setKeys(t, testKeys{s.secretHex, s.hmacHex})
	p := s.start(t)

	id := newID()
	h := sealHook(t, genuine, genuine.Keys[0], id, "applicantApproved", "", time.Now().Add(-time.Minute), "zqjunk0001")
	postWant(t, s, h, http.StatusUnprocessableEntity)
	junk := []byte(`{"status":true,"statusCode":200,"time":"2026-03-01T10:00:00Z","data":"` + strings.Repeat("0", 1_000_000-80) + `"}`)
	for i := range 100 {
		postWant(t, s, hook{body: junk, sig: fmt.Sprintf("%064x", i)}, http.StatusUnauthorized)
	}
	p.mustTerm(t)

	rs := listRejects(t, s)
	var auth []listedReject
	var other []uint64
	samples := 0
	for _, r := range rs {
		switch r.Kept {
		case "authenticated": // the JSON contract of rejects list, not the package constant
			auth = append(auth, r)
		case "sample":
			samples++
			if len(r.Body) > 4<<10 {
				t.Errorf("sample %d keeps %d bytes of its body", r.Seq, len(r.Body))
			}
		default:
			other = append(other, r.Seq)
		}
	}
	if len(other) > 0 {
		t.Errorf("rejects %v say neither how they are kept", other)
	}
	if len(auth) != 1 || auth[0].Body != string(h.body) || auth[0].Status != 422 || auth[0].ApplicantID != id {
		t.Fatalf("after 100 MB of junk the authenticated rejects are %+v (and %d samples); want the 422 of %s, whole", auth, samples, id)
	}
	if samples == 0 || samples > 100 {
		t.Errorf("%d samples of the junk", samples)
	}
	if table := s.mustOps(t, "rejects", "list"); !contains(table, "authenticated", id, "sample cut") {
		t.Errorf("rejects list does not say how each reject is kept:\n%s", tail(table, 2000))
	}

	s.app = genuine
	s.setKeys(t, testKeys{s.secretHex, s.hmacHex})
	out := s.mustOps(t, "rejects", "reprocess")
	if reprocessCount(t, out, "recovered") != 1 || reprocessCount(t, out, "failing") != 0 ||
		!strings.Contains(out, fmt.Sprintf("skipped (samples cut when kept): %d", samples)) {
		t.Fatalf("reprocess with the app_key fixed: want 1 recovered, %d skipped:\n%s", samples, tail(out, 2000))
	}
	if evs := s.exportLog(t); len(evs) != 1 || countNonce(evs, h.nonce) != 1 {
		t.Fatalf("after reprocess the log has %d events; want the recovered webhook", len(evs))
	}
}

// TestErasureDeletesRejects (issue 21, point 4): a refused webhook of an applicant (422,
// its MAC verified) is kept whole under the applicant; erasing the applicant securely
// deletes it, so no file under data_dir holds its body or its subject afterwards, while
// another applicant's reject stays.
func TestErasureDeletesRejects(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	p := s.start(t)
	victim, other := newID(), newID()
	for _, id := range []string{victim, other} {
		mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], id, "applicantCreated", "", time.Now().Add(-time.Minute), "zq"+id[:8]))
	}
	refused := func(id string) hook {
		// No type: refused 422 after the MAC verified.
		return sealPayload(t, s.app, map[string]any{"id": id, "appKey": string(s.app.AppKey), "externalUserId": "user-" + id[:8]})
	}
	hv, ho := refused(victim), refused(other)
	postWant(t, s, hv, http.StatusUnprocessableEntity)
	postWant(t, s, ho, http.StatusUnprocessableEntity)
	dataOf := func(h hook) string {
		var env struct{ Data string }
		if err := json.Unmarshal(h.body, &env); err != nil || len(env.Data) < 64 {
			t.Fatalf("envelope %s: %v", h.body, err)
		}
		return env.Data
	}
	subjectOf := func(id string) string { return "kyc.rejects.auth.allpass." + string(s.app.AppKey) + "." + id }
	victimNeedles := []string{dataOf(hv), hv.sig, subjectOf(victim)}
	otherNeedles := []string{dataOf(ho), subjectOf(other)}

	p.mustTerm(t)
	// The bodies and the signature are there to be found before (the subjects are the
	// store's business, and only checked for after).
	found := grepDataDir(t, s.dataDir, append(append([]string(nil), victimNeedles...), otherNeedles...))
	for _, n := range []string{victimNeedles[0], victimNeedles[1], otherNeedles[0]} {
		if len(found[n]) == 0 {
			t.Fatalf("%.40s... is under data_dir in no file before the erasure: the check would prove nothing", n)
		}
	}

	p = s.start(t)
	admin, err := client.New(s.apiURL, s.admin)
	if err != nil {
		t.Fatal(err)
	}
	er, _, err := admin.Erase(context.Background(), domain.ApplicantID(victim), "ticket 7")
	if err != nil || !er.Erased || er.Pending || !er.KeyDestroyed {
		t.Fatalf("erase: %+v, %v", er, err)
	}
	p.mustTerm(t)

	rs := listRejects(t, s)
	if len(rs) != 1 || rs[0].ApplicantID != other || rs[0].Body != string(ho.body) {
		t.Fatalf("rejects after the erasure: %+v; want the other applicant's only", rs)
	}
	found = grepDataDir(t, s.dataDir, append(append([]string(nil), victimNeedles...), otherNeedles...))
	for _, n := range victimNeedles {
		if len(found[n]) > 0 {
			t.Errorf("after the erasure %.40s... (the erased applicant's reject) is still in %v", n, found[n])
		}
	}
	for _, n := range otherNeedles[:1] {
		if len(found[n]) == 0 {
			t.Errorf("after the erasure %.40s... (another applicant's reject) is gone", n)
		}
	}
}
