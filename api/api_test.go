package api

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the responses")

// exchange is one request of the tables below, also replayed against openapi.yaml.
type exchange struct {
	name   string // golden file name, or a subtest name
	target string
	token  string
}

// goldenCases covers every endpoint's answers on the fixture.
func goldenCases() []exchange {
	A, B, C, D, E := string(idA), string(idB), string(idC), string(idD), string(idE)
	return []exchange{
		{"state_approved", "/v1/applicants/" + A, readerToken},
		{"state_rejected_after_duplicate_and_stale", "/v1/applicants/" + B, readerToken},
		{"state_irregular", "/v1/applicants/" + C, readerToken},
		{"state_no_status", "/v1/applicants/" + D, readerToken},
		{"state_upper_case_id", "/v1/applicants/" + strings.ToUpper(E), readerToken},
		{"state_min_seq_met", "/v1/applicants/" + E + "?minSeq=20", readerToken},
		{"state_unknown", "/v1/applicants/" + string(idNone), readerToken},
		{"state_at_seq", "/v1/applicants/" + A + "?seq=12", auditorToken},
		{"state_at_time", "/v1/applicants/" + A + "?at=2024-05-01T09:18:50Z", auditorToken},
		{"state_at_before_first", "/v1/applicants/" + C + "?seq=3", auditorToken},
		{"history", "/v1/applicants/" + B + "/history", auditorToken},
		{"history_page1", "/v1/applicants/" + A + "/history?limit=3", auditorToken},
		{"history_page2", "/v1/applicants/" + A + "/history?after=7&limit=3", auditorToken},
		{"history_page3", "/v1/applicants/" + A + "/history?after=19&limit=3", auditorToken},
		{"history_unknown", "/v1/applicants/" + string(idNone) + "/history", auditorToken},
		{"applicants_by_ext", "/v1/applicants?externalUserId=user-1", readerToken},
		{"applicants_by_ext_app", "/v1/applicants?externalUserId=user-1&appKey=" + string(app2), readerToken},
		{"applicants_by_ext_none", "/v1/applicants?externalUserId=nobody", readerToken},
		{"applicants_by_status_page1", "/v1/applicants?status=APPROVED&limit=1", readerToken},
		{"applicants_by_status_page2", "/v1/applicants?status=approved&limit=1&cursor=" + A, readerToken},
		{"applicants_by_status_empty", "/v1/applicants?status=INIT", readerToken},
		{"anomalies", "/v1/anomalies", auditorToken},
		{"anomalies_page1", "/v1/anomalies?limit=1", auditorToken},
		{"anomalies_page2", "/v1/anomalies?limit=1&cursor=4", auditorToken},
		{"changes", "/v1/changes", readerToken},
		{"changes_page", "/v1/changes?after=5&limit=3", readerToken},
		{"changes_quiet", "/v1/changes?after=19", readerToken},
		{"changes_after_checkpoint", "/v1/changes?after=500", readerToken},
		{"healthz", "/healthz", ""},
		{"readyz", "/readyz", ""},
		{"error_bad_id", "/v1/applicants/not.an.id", readerToken},
		{"error_bad_allpass_id", "/v1/applicants/not-a-uuid?provider=allpass", readerToken},
		{"error_bad_provider", "/v1/applicants/" + A + "?provider=allpas", readerToken},
		{"state_unknown_provider_id", "/v1/applicants/not-a-uuid", readerToken},
		{"state_allpass_by_provider", "/v1/applicants/" + A + "?provider=allpass", readerToken},
		{"state_allpass_as_sumsub", "/v1/applicants/" + A + "?provider=sumsub", readerToken},
		{"error_no_token", "/v1/applicants/" + A, ""},
		{"error_wrong_token", "/v1/applicants/" + A, wrongToken},
		{"error_forbidden", "/v1/applicants/" + A + "/history", readerToken},
		{"error_forbidden_at", "/v1/applicants/" + A + "?at=2024-05-01T09:10:00Z", readerToken},
		{"error_no_route", "/v2/nothing", readerToken},
	}
}

func TestGolden(t *testing.T) {
	f := newFixture(t, nil)
	for _, c := range goldenCases() {
		t.Run(c.name, func(t *testing.T) {
			rec := f.get(t, c.target, c.token)
			checkGolden(t, c.name, render(t, c, rec))
		})
	}
}

// render writes a response as the golden files hold it: request, status, the headers that
// are part of the contract, and the body indented.
func render(tb testing.TB, c exchange, rec *httptest.ResponseRecorder) []byte {
	tb.Helper()
	role := map[string]string{readerToken: "reader", auditorToken: "auditor", wrongToken: "wrong", "": "none"}[c.token]
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET %s\ntoken: %s\n\n%d\n", c.target, role, rec.Code)
	for _, h := range []string{"Content-Type", SeqHeader, "WWW-Authenticate", "Allow"} {
		if v := rec.Header().Get(h); v != "" {
			fmt.Fprintf(&b, "%s: %s\n", h, v)
		}
	}
	b.WriteByte('\n')
	if err := json.Indent(&b, rec.Body.Bytes(), "", "  "); err != nil {
		tb.Fatalf("body is not JSON: %v\n%s", err, rec.Body.Bytes())
	}
	return b.Bytes()
}

func checkGolden(tb testing.TB, name string, got []byte) {
	tb.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		tb.Errorf("%s differs from the response (go test -update rewrites it)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// The golden files are only as good as what they say; these check the decisions that
// matter in them directly, so an -update cannot quietly bless a wrong answer.
func TestStateFields(t *testing.T) {
	f := newFixture(t, nil)
	state := func(id domain.ApplicantID) map[string]any {
		t.Helper()
		rec := f.get(t, "/v1/applicants/"+string(id), readerToken)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", id, rec.Code, rec.Body)
		}
		return decode(t, rec.Body.Bytes()).(map[string]any)
	}
	cases := []struct {
		id                           domain.ApplicantID
		status                       any
		events, anomalies, lastSeq   float64
		ext                          any
		stepsPassed, flags, warnings []any
	}{
		{idA, "APPROVED", 7, 0, 21, "user-1", []any{"document", "selfie", "address"}, []any{}, []any{}},
		{idB, "REJECTED", 5, 0, 15, "user-2", []any{}, []any{}, []any{"face mismatch"}},
		{idC, "COMPLETED", 3, 2, 18, "user-1", []any{}, []any{}, []any{}},
		{idD, nil, 3, 0, 17, nil, []any{}, []any{"applicantDuplicateEmail", "expiredDocument"}, []any{"email reused"}},
		{idE, "APPROVED", 3, 0, 20, "user-5", []any{}, []any{}, []any{}},
	}
	for _, c := range cases {
		got := state(c.id)
		want := map[string]any{"status": c.status, "events": c.events, "anomalies": c.anomalies,
			"lastSeq": c.lastSeq, "externalUserId": c.ext, "stepsPassed": c.stepsPassed,
			"flags": c.flags, "warnings": c.warnings}
		for k, v := range want {
			if !jsonEqual(got[k], v) {
				t.Errorf("%s: %s = %v, want %v", c.id, k, got[k], v)
			}
		}
		if (got["status"] == nil) != (got["statusAt"] == nil) {
			t.Errorf("%s: status %v but statusAt %v", c.id, got["status"], got["statusAt"])
		}
		if got["erased"] != false || got["reconciledAt"] != nil {
			t.Errorf("%s: erased %v, reconciledAt %v; want false, null", c.id, got["erased"], got["reconciledAt"])
		}
		if got["provider"] != "allpass" || got["providerStatus"] != nil {
			t.Errorf("%s: provider %v, providerStatus %v; want allpass, null", c.id, got["provider"], got["providerStatus"])
		}
		if len(got) != 17 {
			t.Errorf("%s: %d fields, want the 15 of DESIGN.md section 7 (13, erased, reconciledAt) and section 13's provider, providerStatus: %v", c.id, len(got), got)
		}
	}
	// Digest: the projection's chain over the stored bytes, recomputed here.
	var d domain.Digest
	for _, e := range f.stored {
		if e.ApplicantID == idB {
			d = d.Next(e.Stored)
		}
	}
	if got := state(idB)["digest"]; got != d.String() {
		t.Errorf("digest = %v, want %s", got, d)
	}
	// Times are RFC 3339 UTC.
	if got := state(idA)["statusAt"]; got != "2024-05-01T09:18:00Z" {
		t.Errorf("statusAt = %v", got)
	}
}

func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func TestHistoryOutcomes(t *testing.T) {
	f := newFixture(t, nil)
	rec := f.get(t, "/v1/applicants/"+string(idB)+"/history", auditorToken)
	var h struct {
		Events []struct {
			Seq     uint64
			Outcome string
			From    *string
			To      *string
		}
		Next *uint64
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &h); err != nil {
		t.Fatal(err)
	}
	want := []string{"2 applied", "5 applied", "6 duplicate", "9 stale", "15 applied"}
	var got []string
	for _, e := range h.Events {
		got = append(got, fmt.Sprintf("%d %s", e.Seq, e.Outcome))
	}
	if strings.Join(got, ",") != strings.Join(want, ",") || h.Next != nil {
		t.Errorf("history = %v next %v, want %v and null", got, h.Next, want)
	}
	if h.Events[0].From != nil || *h.Events[0].To != "INIT" {
		t.Errorf("first event from %v to %v, want null -> INIT", h.Events[0].From, h.Events[0].To)
	}

	// Paging visits every record once, in order.
	var seqs []uint64
	after := uint64(0)
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		rec := f.get(t, fmt.Sprintf("/v1/applicants/%s/history?after=%d&limit=2", idA, after), auditorToken)
		var p struct {
			Events []struct{ Seq uint64 }
			Next   *uint64
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Events {
			seqs = append(seqs, e.Seq)
		}
		if p.Next == nil {
			break
		}
		after = *p.Next
	}
	if fmt.Sprint(seqs) != "[1 3 7 10 13 19 21]" {
		t.Errorf("paged history seqs = %v", seqs)
	}
}

func TestListsAndFeed(t *testing.T) {
	f := newFixture(t, nil)
	ids := func(target, token, key string) []string {
		t.Helper()
		rec := f.get(t, target, token)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", target, rec.Code, rec.Body)
		}
		var out []string
		for _, it := range decode(t, rec.Body.Bytes()).(map[string]any)[key].([]any) {
			m := it.(map[string]any)
			if s, ok := m["seq"]; ok && key != "applicants" {
				out = append(out, fmt.Sprintf("%v:%v", s, m["applicantId"]))
				continue
			}
			out = append(out, m["applicantId"].(string))
		}
		return out
	}
	check := func(got []string, want ...string) {
		t.Helper()
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("got %v, want %v", got, want)
		}
	}
	check(ids("/v1/applicants?externalUserId=user-1", readerToken, "applicants"), string(idA), string(idC))
	check(ids("/v1/applicants?externalUserId=user-1&appKey="+string(app1), readerToken, "applicants"), string(idA))
	check(ids("/v1/applicants?status=APPROVED", readerToken, "applicants"), string(idA), string(idE))
	check(ids("/v1/applicants?status=REJECTED", readerToken, "applicants"), string(idB))
	check(ids("/v1/anomalies", auditorToken, "anomalies"), "4:"+string(idC), "12:"+string(idC))
	// Every status change, in stream order: seqs whose event moved a status.
	check(ids("/v1/changes", readerToken, "changes"),
		"1:"+string(idA), "2:"+string(idB), "3:"+string(idA), "4:"+string(idC), "5:"+string(idB),
		"11:"+string(idE), "12:"+string(idC), "13:"+string(idA), "15:"+string(idB), "16:"+string(idE),
		"18:"+string(idC), "19:"+string(idA), "20:"+string(idE))

	// next of the feed: the last change of a full page; the checkpoint when the page is not full.
	next := func(target string) float64 {
		t.Helper()
		return decode(t, f.get(t, target, readerToken).Body.Bytes()).(map[string]any)["next"].(float64)
	}
	if n := next("/v1/changes?limit=3"); n != 3 {
		t.Errorf("full page next = %v, want 3", n)
	}
	if n := next("/v1/changes?after=19"); n != 21 {
		t.Errorf("short page next = %v, want the checkpoint 21", n)
	}
	if n := next("/v1/changes?after=900"); n != 900 {
		t.Errorf("next after the checkpoint = %v, want 900 (never backwards)", n)
	}
}

func TestSeqHeaderEverywhere(t *testing.T) {
	f := newFixture(t, nil)
	for _, c := range append(goldenCases(), authCases()...) {
		rec := f.get(t, c.target, c.token)
		if got := rec.Header().Get(SeqHeader); got != "21" {
			t.Errorf("%s: %s = %q, want 21", c.target, SeqHeader, got)
		}
	}
	for _, target := range []string{"/metrics", "/nowhere", "/v1/changes?wait=99"} {
		if got := f.get(t, target, readerToken).Header().Get(SeqHeader); got != "21" {
			t.Errorf("%s: %s = %q, want 21", target, SeqHeader, got)
		}
	}
}

func TestMethodNotAllowed(t *testing.T) {
	f := newFixture(t, nil)
	rec := f.do(t.Context(), http.MethodPost, "/v1/changes", readerToken)
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /v1/changes: %d Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
	checkErrorBody(t, rec, "method_not_allowed", "/v1/changes")
	if rec := f.do(t.Context(), http.MethodPost, "/v1/nothing", readerToken); rec.Code != http.StatusNotFound {
		t.Errorf("POST /v1/nothing: %d", rec.Code)
	}
	if rec := f.do(t.Context(), http.MethodHead, "/v1/applicants/"+string(idA), readerToken); rec.Code != http.StatusOK {
		t.Errorf("HEAD state: %d", rec.Code)
	}
	// An action's path asked with another method names the method it takes.
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		rec := f.do(t.Context(), m, "/v1/applicants/"+string(idA)+"/reconcile", auditorToken)
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "POST" {
			t.Errorf("%s reconcile: %d Allow %q", m, rec.Code, rec.Header().Get("Allow"))
		}
		checkErrorBody(t, rec, "method_not_allowed", "/reconcile")
	}
}

// checkErrorBody asserts {"error":{"code","message"}} with the code and a message naming want.
func checkErrorBody(tb testing.TB, rec *httptest.ResponseRecorder, code, want string) {
	tb.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		tb.Fatalf("error body: %v\n%s", err, rec.Body)
	}
	if e.Error.Code != code || !strings.Contains(e.Error.Message, want) {
		tb.Errorf("error = %+v, want code %s and a message naming %q", e.Error, code, want)
	}
}

func TestNewServerRefuses(t *testing.T) {
	f := newFixture(t, nil)
	const secret = "sekret-value"
	ok := Token{Name: "x", Role: domain.RoleReader, Secret: secret}
	for name, cfg := range map[string]Config{
		"no projection": {Tokens: []Token{ok}},
		"no tokens":     {Projection: f.proj},
		"bad role":      {Projection: f.proj, Tokens: []Token{{Name: "x", Role: "root", Secret: secret}}},
		"empty secret":  {Projection: f.proj, Tokens: []Token{{Name: "x", Role: domain.RoleReader}}},
		"same secret":   {Projection: f.proj, Tokens: []Token{ok, {Name: "y", Role: domain.RoleAuditor, Secret: secret}}},
		"metrics twice": {Projection: f.proj, Tokens: []Token{ok}, Metrics: f.reg},
	} {
		h, err := NewServer(cfg)
		if err == nil || h != nil {
			t.Errorf("%s: NewServer = %v, %v; want an error", name, h, err)
			continue
		}
		if k := domain.KindOf(err); k != domain.KindInvalid && k != domain.KindConflict {
			t.Errorf("%s: kind %v", name, k)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error shows the secret: %v", name, err)
		}
	}
}

func TestNewHTTPServerOutlastsTheLongestWait(t *testing.T) {
	srv := NewHTTPServer(":0", http.NotFoundHandler())
	if srv.WriteTimeout <= DefaultMaxChangesWait || srv.ReadHeaderTimeout == 0 || srv.IdleTimeout == 0 {
		t.Errorf("timeouts: write %v read header %v idle %v", srv.WriteTimeout, srv.ReadHeaderTimeout, srv.IdleTimeout)
	}
}

// An error of the projection is answered with its kind's status and generic message: its
// text names the store's internals and goes to the log only.
func TestProjectionErrorsAreCallerSafe(t *testing.T) {
	f := newFixture(t, nil)
	f.proj.Close()
	for _, target := range []string{"/v1/applicants/" + string(idA), "/v1/applicants/" + string(idA) + "/history", "/v1/anomalies"} {
		rec := f.get(t, target, auditorToken)
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("%s on a closed projection: %d %s, want 503", target, rec.Code, rec.Body)
			continue
		}
		checkErrorBody(t, rec, client.CodeUnavailable, "retry later")
		if strings.Contains(rec.Body.String(), "store") || strings.Contains(rec.Body.String(), "closed") {
			t.Errorf("%s: internals reached the caller: %s", target, rec.Body)
		}
	}
}
