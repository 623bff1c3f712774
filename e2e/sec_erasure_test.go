package e2e

import (
	"context"
	"encoding/hex"
	"path/filepath"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/store/projection"
)

// After an erasure no file under data_dir (the NATS store with KYC_EVENTS, KYC_KEYS and
// KYC_REJECTS, and projection.db with its free pages) holds the applicant's
// externalUserId, its blind index (hex, as the projection keeps it, or raw) or the
// erasure's reason (DESIGN.md section 15, issue 21 item 4); and a new applicant with the
// same externalUserId is found alone, with nothing that ties it to the erased one.
func TestSecurityErasureLeavesNoLink(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	p := s.start(t)
	victim, other := newID(), newID()
	ext := "user-" + victim[:8]
	at := time.Now().Add(-time.Hour).UTC()
	var last uint64
	for i, typ := range []string{"applicantCreated", "applicantInProgress", "applicantCompleted", "applicantApproved"} {
		for _, id := range []string{victim, other} {
			last = max(last, mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], id, typ, "", at.Add(time.Duration(i)*time.Minute), "zqlink"+id[:4])).seq)
		}
	}
	reader, _ := client.New(s.apiURL, s.reader)
	ctx := context.Background()
	if _, _, err := reader.State(ctx, domain.ApplicantID(victim), client.StateQuery{MinSeq: last}); err != nil {
		t.Fatal(err)
	}
	p.mustTerm(t)

	// The index the projection computed for the victim: what an erasure must not leave.
	proj, err := projection.Open(filepath.Join(s.dataDir, "projection.db"), projection.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := proj.State(domain.ApplicantID(victim))
	proj.Close()
	if err != nil || st.ExternalUserIndex == "" || st.SealedExternalUserID == "" {
		t.Fatalf("the victim's state before the erasure: %+v, %v", st, err)
	}
	raw, err := hex.DecodeString(string(st.ExternalUserIndex))
	if err != nil || len(raw) == 0 {
		t.Fatalf("blind index %q is not hex", st.ExternalUserIndex)
	}
	if got := grepDataDir(t, s.dataDir, []string{string(st.ExternalUserIndex)}); len(got) == 0 {
		t.Fatal("the blind index is in no file before the erasure: the test shows nothing")
	}

	const reason = "zq-reason-ticket-4711"
	p = s.start(t)
	admin, _ := client.New(s.apiURL, s.admin)
	er, _, err := admin.Erase(ctx, domain.ApplicantID(victim), reason)
	if err != nil || !er.Erased || er.Pending {
		t.Fatalf("erase: %+v, %v", er, err)
	}
	// A few more webhooks of the other applicant: the pages the erasure freed are the
	// scrub's, whatever comes after.
	for i := range 3 {
		last = mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], other, "applicantInReview", "", at.Add(time.Duration(10+i)*time.Minute), "zqmore")).seq
	}
	if _, _, err := reader.State(ctx, domain.ApplicantID(other), client.StateQuery{MinSeq: last}); err != nil {
		t.Fatal(err)
	}
	p.mustTerm(t)

	needles := []string{ext, string(st.ExternalUserIndex), string(raw), reason, "zqlink" + victim[:4]}
	if got := grepDataDir(t, s.dataDir, needles); len(got) > 0 {
		t.Fatalf("after the erasure, under data_dir: %v", got)
	}

	// A new applicant with the erased one's externalUserId: found alone; the erased one
	// shows no externalUserId.
	p = s.start(t)
	defer p.mustTerm(t)
	newcomer := victim[:8] + newID()[8:]
	a := mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], newcomer, "applicantCreated", "", time.Now().UTC(), "zqnew"))
	if _, _, err := reader.State(ctx, domain.ApplicantID(newcomer), client.StateQuery{MinSeq: a.seq}); err != nil {
		t.Fatal(err)
	}
	found, _, err := reader.ApplicantsByExternalUserID(ctx, domain.ExternalUserID(ext), "", 0)
	if err != nil || len(found.Applicants) != 1 || string(found.Applicants[0].ApplicantID) != newcomer {
		t.Fatalf("lookup of the reused externalUserId: %+v, %v", found, err)
	}
	erased, _, err := reader.State(ctx, domain.ApplicantID(victim), client.StateQuery{})
	if err != nil || !erased.Erased || erased.ExternalUserID != nil {
		t.Fatalf("the erased applicant: %+v, %v", erased, err)
	}
}
