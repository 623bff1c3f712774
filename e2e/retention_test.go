package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
)

// retention.erase_after through the built binary: restarted with retention on, the
// service erases at once the applicant whose last event is older than erase_after and
// keeps the one active since; the erased one keeps its status and history, without its
// externalUserId, and the log still verifies.
func TestRetentionBinary(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	p := s.start(t)
	old, active := newID(), newID()
	now := time.Now().UTC()
	mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], old, "applicantCreated", "", now.Add(-3*time.Hour), "rt0001"))
	mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], active, "applicantCreated", "", now.Add(-3*time.Hour), "rt0002"))
	last := mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], active, "applicantInProgress", "", now.Add(-time.Minute), "rt0003")).seq
	reader, _ := client.New(s.apiURL, s.reader)
	ctx := context.Background()
	if _, _, err := reader.State(ctx, domain.ApplicantID(active), client.StateQuery{MinSeq: last}); err != nil {
		t.Fatal(err)
	}
	p.mustTerm(t)

	s.extra = "retention: { erase_after: 1h }\n"
	s.setKeys(t, testKeys{s.secretHex, s.hmacHex})
	p = s.start(t)
	deadline := time.Now().Add(30 * time.Second)
	var st client.State
	for {
		getJSON(t, s.apiURL+"/v1/applicants/"+old, s.reader, &st)
		if st.Erased {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the retention sweep did not erase %s at start: %+v\n%s", old, st, tail(p.Output(), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st.ExternalUserID != nil || st.Status == nil || *st.Status != string(domain.StatusInit) {
		t.Fatalf("erased state %+v: want INIT kept, externalUserId null", st)
	}
	var kept client.State
	getJSON(t, s.apiURL+"/v1/applicants/"+active, s.reader, &kept)
	if kept.Erased || kept.ExternalUserID == nil || *kept.ExternalUserID != "user-"+active[:8] {
		t.Fatalf("the active applicant: %+v; want kept, with its externalUserId", kept)
	}
	if !strings.Contains(p.Output(), `"by":"retention"`) && !strings.Contains(p.Output(), "retention sweep erased") {
		t.Fatalf("no log line of the retention erasure:\n%s", tail(p.Output(), 3000))
	}
	p.mustTerm(t)
	s.mustOps(t, "verify")
}
