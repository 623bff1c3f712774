package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/providertest"
)

// One person verified by Allpass and by Sumsub, through the binary (issue 23, DESIGN.md
// section 13): a lookup by their externalUserId finds both applicants, each with its
// provider; erasing the Allpass one leaves the Sumsub one readable and findable; replay,
// export and verify carry and check both providers' events.
func TestOnePersonTwoProvidersBinary(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	apps := withProviders(t, s)
	p := s.start(t)
	ctx := context.Background()

	allpassID := newID()
	ext := "user-" + allpassID[:8] // as sealHook sends it
	at := time.Now().Add(-time.Hour).UTC()
	var last uint64
	for i, typ := range []string{"applicantCreated", "applicantInProgress", "applicantApproved"} {
		a := mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], allpassID, typ, "", at.Add(time.Duration(i)*time.Second), "zqap"+randomHex(4)))
		last = max(last, a.seq)
	}
	ss := apps[domain.ProviderSumsub]
	ssID := provID(domain.ProviderSumsub)
	evs, statuses := providertest.Journey(domain.ProviderSumsub, ssID, ext, at)
	for i, ev := range evs {
		body := providertest.Body(domain.ProviderSumsub, ev)
		a := mustPostProv(t, s.ingestURL, ss, body, ss.sign(ss.secret, body))
		if a.code != 200 {
			t.Fatalf("sumsub event %d: %d %s", i, a.code, a.body)
		}
		last = max(last, a.seq)
	}

	reader, err := client.New(s.apiURL, s.reader)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := client.New(s.apiURL, s.admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := reader.State(ctx, domain.ApplicantID(allpassID), client.StateQuery{MinSeq: last}); err != nil {
		t.Fatal(err)
	}
	found, _, err := reader.ApplicantsByExternalUserID(ctx, domain.ExternalUserID(ext), "", 0)
	if err != nil || len(found.Applicants) != 2 {
		t.Fatalf("lookup by %s: %+v, %v; want the Allpass and the Sumsub applicant", ext, found, err)
	}
	byProvider := map[domain.Provider]client.State{}
	for _, st := range found.Applicants {
		byProvider[st.Provider] = st
	}
	if a := byProvider[domain.ProviderAllpass]; string(a.ApplicantID) != allpassID || a.Status == nil || *a.Status != "APPROVED" {
		t.Errorf("allpass applicant: %+v", a)
	}
	wantSS := string(statuses[len(statuses)-1])
	if a := byProvider[domain.ProviderSumsub]; string(a.ApplicantID) != ssID || a.AppKey != domain.AppKey(ss.name) ||
		a.Status == nil || *a.Status != wantSS || a.ProviderStatus == nil || a.ExternalUserID == nil || *a.ExternalUserID != ext {
		t.Errorf("sumsub applicant: %+v, want status %s", a, wantSS)
	}

	er, _, err := admin.Erase(ctx, domain.ApplicantID(allpassID), "GDPR art. 17, e2e")
	if err != nil || !er.Erased || !er.KeyDestroyed {
		t.Fatalf("erase the Allpass applicant: %+v, %v", er, err)
	}
	found, _, err = reader.ApplicantsByExternalUserID(ctx, domain.ExternalUserID(ext), "", 0)
	if err != nil || len(found.Applicants) != 1 || found.Applicants[0].Provider != domain.ProviderSumsub || string(found.Applicants[0].ApplicantID) != ssID {
		t.Fatalf("lookup after erasing the Allpass applicant: %+v, %v; want the Sumsub one only", found, err)
	}
	st, _, err := reader.State(ctx, domain.ApplicantID(ssID), client.StateQuery{Provider: domain.ProviderSumsub})
	if err != nil || st.Erased || st.ExternalUserID == nil || *st.ExternalUserID != ext || st.Status == nil || *st.Status != wantSS {
		t.Errorf("sumsub applicant after the other's erasure: %+v, %v", st, err)
	}
	st, _, err = reader.State(ctx, domain.ApplicantID(allpassID), client.StateQuery{})
	if err != nil || !st.Erased || st.ExternalUserID != nil || st.Provider != domain.ProviderAllpass {
		t.Errorf("erased allpass applicant: %+v, %v", st, err)
	}
	p.mustTerm(t)

	// Offline: replay of the Sumsub applicant alone, export and verify of the whole log.
	out := s.mustOps(t, "replay", "--applicant", ssID, "--provider", "sumsub", "--format", "jsonl")
	var n int
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var r provReplayed
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("replay line %q: %v", line, err)
		}
		if r.Provider != "sumsub" || r.ApplicantID != ssID {
			t.Errorf("replay --provider sumsub: line %q", line)
		}
		n++
	}
	if n != len(evs) {
		t.Errorf("replay --applicant %s --provider sumsub: %d lines, want %d", ssID, n, len(evs))
	}
	path := filepath.Join(t.TempDir(), "export.jsonl")
	s.mustOps(t, "export", "--out", path)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	providers := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var line struct {
			Provider    *string `json:"provider"`
			ApplicantID string  `json:"applicantId"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil || line.Provider == nil {
			t.Fatalf("export line without a provider: %q, %v", sc.Text(), err)
		}
		providers[*line.Provider]++
	}
	if providers["sumsub"] != len(evs) || providers["allpass"] != 4 { // 3 webhooks and the erasure
		t.Errorf("export: events by provider %v, want sumsub %d, allpass 4", providers, len(evs))
	}
	s.mustOps(t, "verify") // exit 0: both providers' digests agree with a fresh fold
}
