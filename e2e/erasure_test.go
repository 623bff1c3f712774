package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
)

// grepDataDir returns, for each needle, the files under dir that hold it in clear.
func grepDataDir(t *testing.T, dir string, needles []string) map[string][]string {
	t.Helper()
	found := map[string][]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				found[n] = append(found[n], strings.TrimPrefix(path, dir))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// personal is what the test's webhooks carry that is personal: each applicant's
// externalUserId (user-<first 8 of its id>) and the payload's distinctive nonce.
func personal(applicant, nonce string) []string {
	return []string{"user-" + applicant[:8], nonce}
}

// A realistic run leaves no applicant's externalUserId or distinctive payload value in
// clear in any file under data_dir: the NATS store (KYC_EVENTS, KYC_KEYS), the bbolt
// file with its free pages. After an erasure, and after a rebuild, the same holds for
// the erased applicant, its data key is gone from KYC_KEYS, lookups by its old
// externalUserId find nothing, a later webhook is still answered 200, and verify passes.
func TestNoPersonalDataAtRest(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	p := s.start(t)
	const applicants, perApplicant = 30, 6
	ids := make([]string, applicants)
	var needles []string
	types := []string{"applicantCreated", "applicantInProgress", "applicantStepPassed", "applicantStepPassed", "applicantCompleted", "applicantApproved"}
	at := time.Now().Add(-time.Hour).UTC()
	var last uint64
	for i := range ids {
		ids[i] = newID()
		for k := range perApplicant {
			nonce := fmt.Sprintf("zq%08x%02d", i, k)
			needles = append(needles, nonce)
			step := ""
			if types[k] == "applicantStepPassed" {
				step = fmt.Sprintf("step-%d", k)
			}
			a := mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], ids[i], types[k], step, at.Add(time.Duration(i*perApplicant+k)*time.Second), nonce))
			last = max(last, a.seq)
		}
		needles = append(needles, "user-"+ids[i][:8])
	}
	api, err := client.New(s.apiURL, s.reader)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, _, err := api.State(ctx, domain.ApplicantID(ids[0]), client.StateQuery{MinSeq: last})
	if err != nil || st.ExternalUserID == nil || *st.ExternalUserID != "user-"+ids[0][:8] {
		t.Fatalf("state through the API (the id opened at the edge): %+v, %v", st, err)
	}
	found, _, err := api.ApplicantsByExternalUserID(ctx, domain.ExternalUserID("user-"+ids[1][:8]), "", 0)
	if err != nil || len(found.Applicants) != 1 || string(found.Applicants[0].ApplicantID) != ids[1] {
		t.Fatalf("lookup by externalUserId: %+v, %v", found, err)
	}
	p.mustTerm(t)

	if leaks := grepDataDir(t, s.dataDir, needles); len(leaks) > 0 {
		t.Fatalf("personal data in clear under data_dir: %v", leaks)
	}
	victim := ids[2]
	wrappedKey := `"kind":"data","app":"` + string(s.app.AppKey) + `","id":"` + victim + `"`
	if got := grepDataDir(t, filepath.Join(s.dataDir, "nats"), []string{wrappedKey}); len(got) == 0 {
		t.Fatal("the test cannot find the victim's wrapped data key in KYC_KEYS before the erasure")
	}

	// Erase through the running service, then a later webhook for the erased applicant.
	p = s.start(t)
	admin, err := client.New(s.apiURL, s.admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := admin.Erase(ctx, domain.ApplicantID(victim), ""); client.Code(err) != client.CodeInvalid {
		t.Fatalf("erase without a reason: %v", err)
	}
	if _, _, err := admin.Erase(ctx, domain.ApplicantID(newID()), "x"); client.Code(err) != client.CodeNotFound {
		t.Fatalf("erase of an unknown applicant: %v", err)
	}
	if _, _, err := api.Erase(ctx, domain.ApplicantID(victim), "x"); client.Code(err) != client.CodeForbidden {
		t.Fatalf("erase with a reader token: %v", err)
	}
	er, _, err := admin.Erase(ctx, domain.ApplicantID(victim), "GDPR art. 17, ticket 99")
	if err != nil || !er.Erased || er.Pending || !er.KeyDestroyed {
		t.Fatalf("erase: %+v, %v", er, err)
	}
	if _, _, err := admin.Erase(ctx, domain.ApplicantID(victim), "again"); err != nil {
		t.Fatalf("repeated erasure: %v", err)
	}
	later := mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], victim, "applicantRejected", "", time.Now().UTC(), "zqlater000"))
	st, _, err = api.State(ctx, domain.ApplicantID(victim), client.StateQuery{MinSeq: later.seq})
	if err != nil || !st.Erased || st.ExternalUserID != nil || st.Status == nil || *st.Status != "REJECTED" || st.Events != perApplicant+3 {
		t.Fatalf("erased state: %+v, %v", st, err)
	}
	found, _, err = api.ApplicantsByExternalUserID(ctx, domain.ExternalUserID("user-"+victim[:8]), "", 0)
	if err != nil || len(found.Applicants) != 0 {
		t.Fatalf("lookup by the erased externalUserId: %+v, %v", found, err)
	}
	var hist client.History
	if code, body := getJSON(t, s.apiURL+"/v1/applicants/"+victim+"/history", s.auditor, &hist); code != http.StatusOK || !strings.Contains(body, `"outcome":"erased"`) {
		t.Fatalf("history: %d %s", code, body)
	}
	_, metrics := getJSON(t, s.apiURL+"/metrics", "", nil)
	if !strings.Contains(metrics, `kycstate_erasures_total{result="erased"} 2`) || !strings.Contains(metrics, "kycstate_erasures_pending 0") {
		t.Fatalf("erasure metrics:\n%s", grepLines(metrics, "kycstate_erasures"))
	}
	p.mustTerm(t)

	victimData := append(personal(victim, "zqlater000"), wrappedKey)
	for k := range perApplicant {
		victimData = append(victimData, fmt.Sprintf("zq%08x%02d", 2, k))
	}
	if leaks := grepDataDir(t, s.dataDir, append(victimData, needles...)); len(leaks) > 0 {
		t.Fatalf("after erasure, in clear under data_dir: %v", leaks)
	}
	s.mustOps(t, "verify")
	s.mustOps(t, "rebuild")
	s.mustOps(t, "verify")
	if leaks := grepDataDir(t, s.dataDir, victimData); len(leaks) > 0 {
		t.Fatalf("after rebuild, in clear under data_dir: %v", leaks)
	}
	// export --open opens the others and shows the erased applicant without personal data.
	for _, e := range s.exportLog(t) {
		if e.ApplicantID == victim && (len(e.Payload) > 0 && e.Type != "applicantErased" || e.Raw != nil) {
			t.Fatalf("export shows the erased applicant's data: %+v", e)
		}
		if e.ApplicantID == ids[0] && e.nonce == "" {
			t.Fatalf("export --open did not open another applicant: %+v", e)
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Killed with SIGKILL between the append of applicantErased and the destruction of the
// key, the service finishes the erasure when it starts again: the state says erased,
// the log holds one applicantErased, and the key is gone from KYC_KEYS. The binary that
// is killed is built with the test hook that holds the erasure there; the one that
// finishes it is the production build.
func TestErasureKilledBetweenAppendAndKeyDeletion(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	s.bin = hookedKycstate(t)
	s.env = []string{"KYCSTATE_TEST_HOLD_AFTER_ERASE_APPEND=1"}
	p := s.start(t)
	id := newID()
	a := mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], id, "applicantCreated", "", time.Now().UTC(), "zqkill0001"))
	reader, _ := client.New(s.apiURL, s.reader)
	ctx := context.Background()
	if _, _, err := reader.State(ctx, domain.ApplicantID(id), client.StateQuery{MinSeq: a.seq}); err != nil {
		t.Fatal(err)
	}
	admin, _ := client.New(s.apiURL, s.admin, client.WithHTTPClient(&http.Client{Timeout: 2 * time.Minute}))
	go func() { _, _, _ = admin.Erase(ctx, domain.ApplicantID(id), "kill -9 test") }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.Output(), "erasure held after its append") {
		if time.Now().After(deadline) {
			t.Fatalf("the erasure never reached the hook:\n%s", tail(p.Output(), 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The eraser is held between its append and its own deletion of the key. The
	// projector may already have shredded the key as it folded applicantErased (a node
	// destroys what its log says is erased), so the key's presence is not what shows the
	// kill landed in the window: the erasure's pending record is, which only the eraser
	// removes, and which the next start must find and finish.
	p.kill()
	wrappedKey := `"kind":"data","app":"` + string(s.app.AppKey) + `","id":"` + id + `"`

	s.bin, s.env = "", nil
	p = s.start(t)
	deadline = time.Now().Add(30 * time.Second)
	for {
		var st client.State
		getJSON(t, s.apiURL+"/v1/applicants/"+id, s.reader, &st)
		_, metrics := getJSON(t, s.apiURL+"/metrics", "", nil)
		if st.Erased && strings.Contains(metrics, `kycstate_erasures_total{result="erased"} 1`) && strings.Contains(metrics, "kycstate_erasures_pending 0") &&
			strings.Contains(p.Output(), "pending erasure finished") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("erasure not finished after the restart: %+v\n%s", st, grepLines(metrics, "kycstate_erasures"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.mustTerm(t)
	if got := grepDataDir(t, s.dataDir, []string{wrappedKey, "user-" + id[:8], "zqkill0001"}); len(got) > 0 {
		t.Fatalf("after the finished erasure, under data_dir: %v", got)
	}
	n := 0
	for _, e := range s.exportLog(t) {
		if e.ApplicantID == id && e.Type == "applicantErased" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d applicantErased events, want 1", n)
	}
	s.mustOps(t, "verify")
}
