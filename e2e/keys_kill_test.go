package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
)

// Killed with SIGKILL between the group commit's two writes (the new applicants' data
// keys stored in KYC_KEYS, their events not yet written), the service loses nothing and
// leaves no event without its key: no webhook of the held batch was answered 200, the
// log holds none of them, and Allpass's retries after the restart are each stored once,
// sealed under the key the first attempt stored, and open. The binary that is killed is
// built with the test hook that holds the write of new keys once they are stored.
func TestKilledBetweenKeysAndEvents(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	s.bin = hookedKycstate(t)
	s.env = []string{"KYCSTATE_TEST_HOLD_AFTER_KEYS_WRITE=1"}
	p := s.start(t)

	const n = 24
	at := time.Now().UTC().Add(-time.Minute)
	hooks := make([]hook, n)
	for i := range hooks {
		hooks[i] = sealHook(t, s.app, s.app.Keys[0], newID(), "applicantCreated", "", at, fmt.Sprintf("zkkill%04d", i))
	}
	var wg sync.WaitGroup
	answered := make(chan answer, n)
	hc := &http.Client{Timeout: time.Minute}
	for _, h := range hooks {
		wg.Go(func() {
			if a, err := postHook(hc, s.ingestURL, s.app.Name, h); err == nil {
				answered <- a
			}
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.Output(), "new keys stored, held before their events") {
		if time.Now().After(deadline) {
			t.Fatalf("no write of new keys reached the hook:\n%s", tail(p.Output(), 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.kill()
	wg.Wait()
	close(answered)
	for a := range answered {
		if a.code == http.StatusOK {
			t.Fatalf("a webhook was answered 200 while its key's write was held: %+v", a)
		}
	}
	// The kill landed between the writes: a key is on disk, its event is not.
	var keyed []string
	for _, h := range hooks {
		keyed = append(keyed, `"kind":"data","app":"`+string(s.app.AppKey)+`","id":"`+h.applicant+`"`)
	}
	if got := grepDataDir(t, s.dataDir, keyed); len(got) == 0 {
		t.Fatal("no new applicant's key under data_dir: the kill did not land after the keys' write")
	}

	if evs := s.exportLog(t); len(evs) != 0 {
		t.Fatalf("the log holds %d events of a batch none of which was answered 200", len(evs))
	}

	s.bin, s.env = "", nil
	p = s.start(t)
	reader, _ := client.New(s.apiURL, s.reader)
	ctx := context.Background()
	for _, h := range hooks { // Allpass's retries
		a := mustPost(t, s.ingestURL, s.app.Name, h)
		if a.dup {
			t.Fatalf("retry of %s answered as a duplicate of seq %d, which no one was told of", h.applicant, a.seq)
		}
		st, _, err := reader.State(ctx, domain.ApplicantID(h.applicant), client.StateQuery{MinSeq: a.seq})
		if err != nil {
			t.Fatal(err)
		}
		if st.ExternalUserID == nil || *st.ExternalUserID != "user-"+h.applicant[:8] {
			t.Fatalf("%s: externalUserId %v: its event does not open under its key", h.applicant, st.ExternalUserID)
		}
	}
	p.mustTerm(t)
	evs := s.exportLog(t)
	if len(evs) != n {
		t.Fatalf("%d events after the retries, want %d", len(evs), n)
	}
	for _, e := range evs {
		if !strings.Contains(string(e.Payload), `"nonce":"zkkill`) {
			t.Fatalf("seq %d exported without its payload: %s", e.Seq, e.Payload)
		}
	}
	s.mustOps(t, "verify")
}
