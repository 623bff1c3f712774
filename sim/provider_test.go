package sim_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest"
	"github.com/kycstate/kycstate/internal/jstest"
	"github.com/kycstate/kycstate/projector"
	"github.com/kycstate/kycstate/sim"
	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/kycstate/kycstate/store/projection"
	"go.uber.org/zap"
)

// newProviderService starts a whole service with one app of each provider but Allpass,
// each named after its provider, secret "<provider>-secret" (Veriff's api key ve-key).
// wrapIngest, if not nil, sits in front of the webhook handler.
func newProviderService(t *testing.T, wrapIngest middleware) (ingestURL, apiURL string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := zap.NewNop()
	events := jstest.Start(t).EventLog(t, eventlog.Config{Replicas: 1, DuplicateWindow: time.Hour}, log)
	proj, err := projection.Open(filepath.Join(t.TempDir(), "projection.db"), projection.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proj.Close() })
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		projector.New(events, proj, projector.Config{}, log, nil).Run(ctx)
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	var apps []*ingest.ProviderApp
	for _, p := range []domain.Provider{domain.ProviderSumsub, domain.ProviderPersona, domain.ProviderVeriff, domain.ProviderOnfido} {
		c := ingest.ProviderAppConfig{Provider: p, Name: string(p), Secrets: [][]byte{[]byte(string(p) + "-secret")}}
		if p == domain.ProviderVeriff {
			c.APIKey = "ve-key"
		}
		a, err := ingest.NewProviderApp(c)
		if err != nil {
			t.Fatal(err)
		}
		apps = append(apps, a)
	}
	var ih http.Handler
	ih, err = ingest.NewHandler(ingest.HandlerConfig{Providers: apps, Events: events, KeepRaw: true})
	if err != nil {
		t.Fatal(err)
	}
	if wrapIngest != nil {
		ih = wrapIngest(ih)
	}
	ah, err := api.NewServer(api.Config{Projection: proj, Tokens: []api.Token{{Name: "r", Role: domain.RoleReader, Secret: readerToken}}})
	if err != nil {
		t.Fatal(err)
	}
	is, as := httptest.NewServer(ih), httptest.NewServer(ah)
	t.Cleanup(is.Close)
	t.Cleanup(as.Close)
	return is.URL, as.URL
}

func providerConfig(p domain.Provider, ingestURL, apiURL string, n int) sim.ProviderConfig {
	c := sim.ProviderConfig{Provider: p, AppName: string(p), Secret: []byte(string(p) + "-secret"),
		IngestURL: ingestURL, APIURL: apiURL, Token: readerToken, Applicants: n, Concurrency: 4,
		ResendShare: 0.4, LateShare: 0.4, BadSigShare: 0.4, Seed: 7, CatchUpTimeout: 20 * time.Second}
	if p == domain.ProviderVeriff {
		c.APIKey = "ve-key"
	}
	return c
}

// Each provider's journeys, with resends, late deliveries and forgeries, against a real
// service: every answer as the contract says, and every state as the fold of what was
// acknowledged (0 mismatches).
func TestRunProviderAgainstService(t *testing.T) {
	ingestURL, apiURL := newProviderService(t, nil)
	for _, p := range []domain.Provider{domain.ProviderSumsub, domain.ProviderPersona, domain.ProviderVeriff, domain.ProviderOnfido} {
		t.Run(string(p), func(t *testing.T) {
			rep, err := sim.RunProvider(context.Background(), providerConfig(p, ingestURL, apiURL, 24), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() || rep.Checked != 24 || len(rep.Mismatches) != 0 {
				t.Fatalf("report: checked %d, mismatches %v, problems %v", rep.Checked, rep.Mismatches, rep.Problems)
			}
			if rep.Answers.Duplicate == 0 || rep.Answers.Unauthorized == 0 || rep.Outcomes[domain.OutcomeApplied] == 0 {
				t.Fatalf("the run did not mix in resends and forgeries: %+v, outcomes %v", rep.Answers, rep.Outcomes)
			}
			// Veriff dates only its decision, and Onfido's journey has one dated status pair
			// around an annotation: a late delivery is stale for Sumsub and Persona.
			if (p == domain.ProviderSumsub || p == domain.ProviderPersona) && rep.Outcomes[domain.OutcomeStale] == 0 {
				t.Fatalf("no late delivery became stale: %v", rep.Outcomes)
			}
		})
	}
}

// The check can fail: a service that answers 200 for a delivery and drops it leaves
// mismatches; a service that accepts a forgery is reported.
func TestRunProviderDetects(t *testing.T) {
	var n int
	var mu sync.Mutex
	ingestURL, apiURL := newProviderService(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			n++
			drop := n == 4 // the second applicant's first event
			mu.Unlock()
			if drop { // a made-up acknowledgement of something never stored
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(`{"seq":1}`))
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	c := providerConfig(domain.ProviderSumsub, ingestURL, apiURL, 4)
	c.BadSigShare, c.ResendShare, c.LateShare, c.Concurrency = 0, 0, 0, 1
	rep, err := sim.RunProvider(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.Mismatches) == 0 {
		t.Fatalf("a dropped delivery went unnoticed: %+v", rep)
	}
	if _, err := sim.RunProvider(context.Background(), sim.ProviderConfig{Provider: "allpass"}, nil); domain.KindOf(err) != domain.KindInvalid {
		t.Fatalf("allpass as a provider run: %v", err)
	}
}
