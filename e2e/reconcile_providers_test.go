package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/providertest"
)

// A Persona inquiry whose inquiry.approved never arrived: POST
// /v1/applicants/{id}/reconcile on the binary asks Persona's API (Bearer key, apps[].api)
// and the state becomes Persona's truth; a second check finds them in sync.
func TestReconcileProviderBinary(t *testing.T) {
	needBins(t)
	const key = "persona_e2e_api_key"
	id := "inq_" + randomHex(12)
	var bad int
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+key || r.URL.Path != "/api/v1/inquiries/"+id {
			bad++
			http.Error(w, "{}", http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, `{"data":{"type":"inquiry","id":%q,"attributes":{"status":"approved","reference-id":"user-9","decisioned-at":"2026-03-01T10:00:00.000Z"}}}`, id)
	}))
	defer fake.Close()

	s := newBinService(t)
	apps := withProviders(t, s)
	s.extra = strings.Replace(s.extra, "provider: persona,", fmt.Sprintf("provider: persona, api: { base_url: %q, api_key: %q },", fake.URL, key), 1)
	s.setKeys(t, testKeys{s.secretHex, s.hmacHex})
	p := s.start(t)
	pa := apps[domain.ProviderPersona]
	evs, _ := providertest.Journey(domain.ProviderPersona, id, "user-9", time.Now().Add(-time.Hour))
	var last uint64
	for _, e := range evs[:2] { // created, started: the approval is lost
		body := providertest.Body(domain.ProviderPersona, e)
		a, err := postProv(http.DefaultClient, s.ingestURL, pa, body, pa.sign(pa.secret, body))
		if err != nil || a.code != http.StatusOK {
			t.Fatalf("webhook %s: %+v, %v", e.Type, a, err)
		}
		last = a.seq
	}
	ctx := context.Background()
	reader, _ := client.New(s.apiURL, s.reader)
	auditor, _ := client.New(s.apiURL, s.auditor)
	if st, _, err := reader.State(ctx, domain.ApplicantID(id), client.StateQuery{MinSeq: last, Provider: domain.ProviderPersona}); err != nil ||
		st.Status == nil || *st.Status != string(domain.StatusIncomplete) {
		t.Fatalf("before: %+v, %v", st, err)
	}
	rep, _, err := auditor.Reconcile(ctx, domain.ApplicantID(id), false)
	if err != nil || rep.Action != "appended" || rep.Seq == nil {
		t.Fatalf("reconcile: %+v, %v\n%s", rep, err, tail(p.Output(), 2000))
	}
	st, _, err := reader.State(ctx, domain.ApplicantID(id), client.StateQuery{MinSeq: *rep.Seq, Provider: domain.ProviderPersona})
	if err != nil || st.Status == nil || *st.Status != string(domain.StatusApproved) || st.ReconciledAt == nil ||
		st.ProviderStatus == nil || *st.ProviderStatus != "approved" {
		t.Fatalf("after: %+v, %v", st, err)
	}
	if rep, _, err := auditor.Reconcile(ctx, domain.ApplicantID(id), false); err != nil || rep.Action != "in_sync" || rep.Seq != nil {
		t.Fatalf("second reconcile: %+v, %v", rep, err)
	}
	if bad != 0 {
		t.Fatalf("%d calls to Persona's API without the key", bad)
	}
	p.mustTerm(t)
}
