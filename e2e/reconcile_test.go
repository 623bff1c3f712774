package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
)

// openAPI is a fake Allpass Open API for the binary: each applicant's status, answered
// at GET /api/public/applicant/{id} in Allpass's envelope, its data sealed with the app's
// method and keys as a webhook's is.
type openAPI struct {
	t      *testing.T
	app    allpass.App
	key    string // the x-private-app-key it wants
	srv    *httptest.Server
	mu     sync.Mutex
	status map[string]domain.Status
	calls  map[string]int
	badKey int // calls without the configured private key
}

func newOpenAPI(t *testing.T, app allpass.App) *openAPI {
	a := &openAPI{t: t, app: app, key: randomHex(16), status: map[string]domain.Status{}, calls: map[string]int{}}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *openAPI) set(id string, s domain.Status) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status[id] = s
}

func (a *openAPI) called(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[id]
}

func (a *openAPI) serve(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, "/api/public/applicant/")
	a.mu.Lock()
	a.calls[id]++
	st, known := a.status[id]
	if r.Header.Get(allpass.PrivateKeyHeader) != a.key {
		a.badKey++
		a.mu.Unlock()
		http.Error(w, `{"status":false,"statusCode":401}`, http.StatusUnauthorized)
		return
	}
	a.mu.Unlock()
	if !ok || !known || r.Method != http.MethodGet {
		http.Error(w, `{"status":false,"statusCode":404}`, http.StatusNotFound)
		return
	}
	data, _ := json.Marshal(map[string]any{"id": id, "status": string(st), "updatedAt": "2026-02-01T10:00:00.000Z",
		"externalUserId": "user-" + id[:8]})
	body, sig, err := allpass.Seal(a.app.Method, a.app.Keys[0], data, time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), nil)
	if err != nil {
		a.t.Error(err)
		return
	}
	w.Header().Set(allpass.SignatureHeader, sig)
	w.Write(body)
}

// startWithOpenAPI starts the binary with its app's Open API faked by oa and the sweep
// off (reconcile.every 0), so that nothing reconciles unless a test asks.
func startWithOpenAPI(t *testing.T) (*binService, *openAPI, *proc) {
	t.Helper()
	needBins(t)
	s := newBinService(t)
	oa := newOpenAPI(t, s.app)
	s.appExtra = fmt.Sprintf("    open_api: { base_url: %q, private_key: %q, timeout: 5s }\n", oa.srv.URL, oa.key)
	s.extra = "reconcile: { every: 0 }\n"
	s.setKeys(t, testKeys{s.secretHex, s.hmacHex})
	return s, oa, s.start(t)
}

// The built binary reconciles against an Open API that seals its answers like Allpass,
// configured through apps[].open_api and reconcile, in each way it offers: the API's
// POST /v1/applicants/{id}/reconcile, `kycstate reconcile --api` (a dry run), `kycstate
// reconcile` offline on the stopped service's data dir, and the background sweep, which
// recovers a status whose webhook never came.
func TestReconcileBinary(t *testing.T) {
	s, oa, p := startWithOpenAPI(t)

	ctx := context.Background()
	reader, _ := client.New(s.apiURL, s.reader)
	auditor, _ := client.New(s.apiURL, s.auditor)
	ids := []string{newID(), newID(), newID(), newID()}
	at := time.Now().UTC().Add(-time.Hour)
	var last uint64
	for i, id := range ids {
		last = mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], id, "applicantCreated", "", at, fmt.Sprintf("rc%08d", i))).seq
	}
	if _, _, err := reader.State(ctx, domain.ApplicantID(ids[len(ids)-1]), client.StateQuery{MinSeq: last}); err != nil {
		t.Fatal(err)
	}
	status := func(id string, minSeq uint64) (string, bool) {
		t.Helper()
		st, _, err := reader.State(ctx, domain.ApplicantID(id), client.StateQuery{MinSeq: minSeq})
		if err != nil {
			t.Fatalf("state of %s: %v", id, err)
		}
		if st.Status == nil {
			return "", st.ReconciledAt != nil
		}
		return *st.Status, st.ReconciledAt != nil
	}

	// The API: a differing status is appended and folded as reconciled; an equal one and
	// an applicant Allpass does not know append nothing.
	oa.set(ids[0], domain.StatusApproved)
	oa.set(ids[1], domain.StatusInit)
	rep, _, err := auditor.Reconcile(ctx, domain.ApplicantID(ids[0]), false)
	if err != nil || rep.Action != "appended" || rep.Seq == nil {
		t.Fatalf("reconcile %s: %+v, %v; want appended", ids[0], rep, err)
	}
	if st, rec := status(ids[0], *rep.Seq); st != string(domain.StatusApproved) || !rec {
		t.Fatalf("after reconcile: status %s, reconciledAt set %v; want APPROVED, set", st, rec)
	}
	for id, want := range map[string]string{ids[1]: "in_sync", ids[2]: "not_found"} {
		if rep, _, err := auditor.Reconcile(ctx, domain.ApplicantID(id), false); err != nil || rep.Action != want || rep.Seq != nil {
			t.Fatalf("reconcile %s: %+v, %v; want %s with nothing appended", id, rep, err, want)
		}
	}

	// The CLI through the API, as a dry run: it says what it would append, and does not.
	oa.set(ids[1], domain.StatusRejected)
	out := s.mustOps(t, "reconcile", "--applicant", ids[1], "--dry-run", "--api", s.apiURL, "--token", s.auditor)
	if !strings.Contains(out, ids[1]+" appended") || !strings.Contains(out, "dry run") {
		t.Fatalf("kycstate reconcile --dry-run --api:\n%s", out)
	}
	if st, _ := status(ids[1], 0); st != string(domain.StatusInit) {
		t.Fatalf("a dry run changed the status to %s", st)
	}
	p.mustTerm(t)

	// Offline on the stopped service's data dir: appended, and in the projection when
	// the service starts again.
	out = s.mustOps(t, "reconcile", "--applicant", ids[1])
	if !strings.Contains(out, ids[1]+" appended") {
		t.Fatalf("kycstate reconcile offline:\n%s", out)
	}
	// The background sweep: ids[3]'s COMPLETED never came as a webhook; the sweep on the
	// restarted service finds it (its last event is older than stale_after).
	oa.set(ids[3], domain.StatusCompleted)
	s.extra = "reconcile: { every: 1s, stale_after: 1s }\n"
	s.setKeys(t, testKeys{s.secretHex, s.hmacHex})
	p = s.start(t)
	if st, rec := status(ids[1], 0); st != string(domain.StatusRejected) || !rec {
		t.Fatalf("after offline reconcile and a restart: status %s, reconciledAt set %v; want REJECTED, set", st, rec)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st, rec := status(ids[3], 0); st == string(domain.StatusCompleted) && rec {
			break
		}
		if time.Now().After(deadline) {
			st, _ := status(ids[3], 0)
			t.Fatalf("the sweep did not recover %s: status %s after 30 s, %d Open API calls for it\n%s",
				ids[3], st, oa.called(ids[3]), tail(p.Output(), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.mustTerm(t)
	oa.mu.Lock()
	bad := oa.badKey
	oa.mu.Unlock()
	if bad != 0 {
		t.Fatalf("%d Open API calls without the configured private key", bad)
	}
	s.mustOps(t, "verify")
}

// Seen from outside, as a product service would do it: one webhook answered 200, then at
// once a reconcile of that applicant, or an erasure. Both act on the projection as of the
// log's last sequence when they arrive (DESIGN.md section 7): never "kycstate has no
// events of this applicant".
func TestReconcileAndEraseRightAfterWebhook(t *testing.T) {
	s, oa, p := startWithOpenAPI(t)

	ctx := context.Background()
	auditor, _ := client.New(s.apiURL, s.auditor)
	admin, _ := client.New(s.apiURL, s.admin)
	at := time.Now().UTC().Add(-time.Minute)
	for i := range 20 {
		id := newID()
		oa.set(id, domain.StatusApproved)
		seq := mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], id, "applicantCreated", "", at, fmt.Sprintf("ra%08d", i))).seq
		rep, _, err := auditor.Reconcile(ctx, domain.ApplicantID(id), false)
		if err != nil || rep.Action != "appended" || rep.Seq == nil || *rep.Seq <= seq {
			t.Fatalf("reconcile #%d right after its webhook (seq %d): %+v, %v; want appended after it", i, seq, rep, err)
		}
		id = newID()
		seq = mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], id, "applicantCreated", "", at, fmt.Sprintf("re%08d", i))).seq
		e, _, err := admin.Erase(ctx, domain.ApplicantID(id), "retention period over")
		if err != nil || !e.Erased || e.Seq <= seq {
			t.Fatalf("erase #%d right after its webhook (seq %d): %+v, %v; want erased after it", i, seq, e, err)
		}
	}
	p.mustTerm(t)
	s.mustOps(t, "verify")
}

// kycstate sim --give-up drops a share of webhooks for good and serves the Open API for
// its applicants (--open-api); against the built binary configured to reconcile there,
// its check passes: every given-up status recovered through reconciliation.
func TestSimGiveUpRecoveredByReconcile(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s.appExtra = fmt.Sprintf("    open_api: { base_url: %q, private_key: %q, timeout: 5s }\n", "http://"+addr, randomHex(16))
	s.extra = "reconcile: { every: 0, rate: 200 }\n"
	s.setKeys(t, testKeys{s.secretHex, s.hmacHex})
	p := s.start(t)
	out, err := runCmd(t, s.dir, nil, 2*time.Minute, bins.kycstate, "sim", "--config", s.cfgPath, "--ingest", s.ingestURL,
		"--api", s.apiURL, "--applicants", "40", "--seed", "7", "--give-up", "0.25", "--open-api", addr)
	if err != nil {
		t.Fatalf("kycstate sim --give-up: %v\n%s\nservice:\n%s", err, out, tail(p.Output(), 3000))
	}
	// The report: webhooks were given up, reconciliation appended what they carried, and
	// every applicant's state then matched its journey.
	for _, want := range []string{`given up\s+[1-9][0-9]* webhooks never delivered`, `reconciled .*appended [1-9]`,
		`mismatches\s+0\n`, `result\s+OK`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Fatalf("the sim's report does not match %q:\n%s", want, out)
		}
	}
	p.mustTerm(t)
}
