package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/ingest/allpass"
	"go.yaml.in/yaml/v3"
)

// Security checks of the running binary. Helpers here are prefixed sec.

const (
	secOpenAPI = "../api/openapi.yaml"
	secRoutes  = "../api/routes.go"
)

// secRoute is one GET operation of the read API.
type secRoute struct {
	path   string // as documented: /v1/applicants/{id}
	public bool   // `security: []` in the document
	role   string // x-kycstate-role
}

// secReadRoutes returns every GET operation of api/openapi.yaml, and every GET pattern of
// api/routes.go (a route the document forgot is walked too, and reported).
func secReadRoutes(t *testing.T) []secRoute {
	t.Helper()
	raw, err := os.ReadFile(secOpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", secOpenAPI, err)
	}
	var routes []secRoute
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		node, ok := ops["get"]
		if !ok {
			continue
		}
		var op struct {
			Security *[]map[string][]string `yaml:"security"`
			Role     string                 `yaml:"x-kycstate-role"`
		}
		if err := node.Decode(&op); err != nil {
			t.Fatalf("%s: GET %s: %v", secOpenAPI, path, err)
		}
		documented[path] = true
		routes = append(routes, secRoute{path: path, public: op.Security != nil && len(*op.Security) == 0, role: op.Role})
	}
	src, err := os.ReadFile(secRoutes)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`handle\("GET (/[^"]*)"`).FindAllStringSubmatch(string(src), -1) {
		if !documented[m[1]] {
			t.Errorf("api/routes.go serves GET %s, which api/openapi.yaml does not document", m[1])
			routes = append(routes, secRoute{path: m[1]})
		}
	}
	sort.Slice(routes, func(i, j int) bool { return routes[i].path < routes[j].path })
	if len(routes) < 5 {
		t.Fatalf("only %d GET routes found in %s and %s", len(routes), secOpenAPI, secRoutes)
	}
	return routes
}

// secGet sends a GET (or HEAD) with the given headers and returns status, headers, body.
func secGet(t *testing.T, method, url string, header map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestSecurityReadAPIAuth walks every GET route of the read API (from api/openapi.yaml and
// api/routes.go) over data that exists and requires that none answers without a valid
// bearer token: no token, a wrong one, an almost-right one, the right token in another
// scheme, in the query string or in another header, and HEAD instead of GET, all get 401
// with a Bearer challenge and a body that holds no applicant data. Only the probes the
// document marks public (/healthz, /readyz, /metrics) answer without a token, and they
// show no applicant data either. The checks can fail: each route, with the auditor
// token, answers 200 with the data; a reader gets 403 on auditor routes. The webhook
// listener serves none of the read routes.
func TestSecurityReadAPIAuth(t *testing.T) {
	needBins(t)
	routes := secReadRoutes(t)
	s := newBinService(t)
	p := s.start(t)
	applicant := newID()
	ext := "user-" + applicant[:8]
	at := time.Now().Add(-time.Hour)
	var last answer
	for i, typ := range []string{"applicantCreated", "applicantInProgress", "applicantRejected"} {
		last = mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], applicant, typ, "", at.Add(time.Duration(i)*time.Minute), "auth"))
	}
	// An irregular event, so the anomalies list has an entry.
	other := newID()
	mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], other, "applicantApproved", "", at, "auth-irregular"))
	if code, body := getJSON(t, fmt.Sprintf("%s/v1/applicants/%s?minSeq=%d", s.apiURL, other, last.seq+1), s.reader, nil); code != http.StatusOK {
		t.Fatalf("projection did not catch up: %d %s", code, body)
	}

	// What each route is asked with: the data of the applicant above.
	queries := map[string][]string{
		"/v1/applicants/{id}":         {"", "?minSeq=1", "?at=" + time.Now().Add(2*time.Second).UTC().Format(time.RFC3339), "?seq=2"},
		"/v1/applicants/{id}/history": {"", "?after=0&limit=10"},
		"/v1/applicants":              {"?externalUserId=" + ext, "?status=REJECTED"},
		"/v1/anomalies":               {""},
		"/v1/verify":                  {""},
		"/v1/changes":                 {"?after=0", "?after=0&wait=5"},
	}
	wrong := randomHex(24)
	noAccess := []struct {
		name   string
		header map[string]string
		query  string
	}{
		{"no token", nil, ""},
		{"wrong token", map[string]string{"Authorization": "Bearer " + wrong}, ""},
		{"empty bearer", map[string]string{"Authorization": "Bearer "}, ""},
		{"token with its last character changed", map[string]string{"Authorization": "Bearer " + s.auditor[:len(s.auditor)-1] + secOther(s.auditor[len(s.auditor)-1])}, ""},
		{"token upper-cased", map[string]string{"Authorization": "Bearer " + strings.ToUpper(s.auditor)}, ""},
		{"token twice", map[string]string{"Authorization": "Bearer " + s.auditor + s.auditor}, ""},
		{"token prefix", map[string]string{"Authorization": "Bearer " + s.auditor[:len(s.auditor)/2]}, ""},
		{"token in Basic", map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("auditor:"+s.auditor))}, ""},
		{"token without scheme", map[string]string{"Authorization": s.auditor}, ""},
		{"token in X-Api-Key", map[string]string{"X-Api-Key": s.auditor}, ""},
		{"token as a cookie", map[string]string{"Cookie": "token=" + s.auditor}, ""},
		{"token in access_token", nil, "access_token=" + s.auditor},
		{"token in token", nil, "token=" + s.auditor},
	}

	walked := 0
	for _, r := range routes {
		if r.public {
			continue
		}
		qs, ok := queries[r.path]
		if !ok {
			t.Errorf("GET %s needs a token but the test has no query for it: add one", r.path)
			qs = []string{""}
		}
		path := strings.ReplaceAll(r.path, "{id}", applicant)
		for _, q := range qs {
			url := s.apiURL + path + q
			// The route is real and serves the data to the auditor.
			if code, _, body := secGet(t, http.MethodGet, url, map[string]string{"Authorization": "Bearer " + s.auditor}); code != http.StatusOK {
				t.Errorf("GET %s with the auditor token: %d %s, want 200", path+q, code, body)
			}
			for _, c := range noAccess {
				u := url
				if c.query != "" {
					u += map[bool]string{true: "&", false: "?"}[strings.Contains(u, "?")] + c.query
				}
				for _, method := range []string{http.MethodGet, http.MethodHead} {
					code, h, body := secGet(t, method, u, c.header)
					walked++
					if code != http.StatusUnauthorized {
						t.Errorf("%s %s with %s: %d %s, want 401", method, path+q, c.name, code, tail(body, 300))
						continue
					}
					if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
						t.Errorf("%s %s with %s: 401 without a Bearer challenge (WWW-Authenticate %q)", method, path+q, c.name, h.Get("WWW-Authenticate"))
					}
					if strings.Contains(body, applicant) || strings.Contains(body, ext) || strings.Contains(body, "REJECTED") {
						t.Errorf("%s %s with %s: the 401 shows applicant data: %s", method, path+q, c.name, body)
					}
				}
			}
		}
		// A reader may not use auditor routes.
		if r.role == "auditor" {
			if code, _, body := secGet(t, http.MethodGet, s.apiURL+path, map[string]string{"Authorization": "Bearer " + s.reader}); code != http.StatusForbidden {
				t.Errorf("GET %s with the reader token: %d %s, want 403", path, code, tail(body, 300))
			}
		}
	}
	for _, q := range []string{"?at=" + time.Now().UTC().Format(time.RFC3339), "?seq=2"} {
		if code, _, body := secGet(t, http.MethodGet, s.apiURL+"/v1/applicants/"+applicant+q, map[string]string{"Authorization": "Bearer " + s.reader}); code != http.StatusForbidden {
			t.Errorf("GET /v1/applicants/{id}%s with the reader token: %d %s, want 403", q, code, tail(body, 300))
		}
	}

	var public []string
	for _, r := range routes {
		if !r.public {
			continue
		}
		public = append(public, r.path)
		code, _, body := secGet(t, http.MethodGet, s.apiURL+r.path, nil)
		if code != http.StatusOK {
			t.Errorf("GET %s without a token: %d, want 200 (probes and scrapers have none)", r.path, code)
		}
		if strings.Contains(body, applicant) || strings.Contains(body, ext) || strings.Contains(body, other) {
			t.Errorf("GET %s, public, shows applicant data", r.path)
		}
	}
	if want := []string{"/healthz", "/metrics", "/readyz"}; !slices.Equal(public, want) {
		t.Errorf("GET routes answered without a token: %v, want only %v", public, want)
	}

	// The webhook listener is the one exposed to the internet: no read route there. Its
	// own probes (/healthz, and /readyz: is the log reachable) hold no applicant data.
	for _, r := range routes {
		if r.path == "/healthz" || r.path == "/readyz" {
			continue
		}
		path := strings.ReplaceAll(r.path, "{id}", applicant)
		code, _, body := secGet(t, http.MethodGet, s.ingestURL+path, map[string]string{"Authorization": "Bearer " + s.auditor})
		if code == http.StatusOK || strings.Contains(body, applicant) || strings.Contains(body, ext) {
			t.Errorf("GET %s on the webhook listener: %d %s; it must not serve the read API", path, code, tail(body, 300))
		}
	}
	fNoPanic(t, "serve", p.Output())
	p.mustTerm(t)
	t.Logf("%d requests without valid credentials over %d GET routes, each refused", walked, len(routes)-len(public))
}

// secOther returns a character other than c, from the token alphabet.
func secOther(c byte) string {
	if c == 'a' {
		return "b"
	}
	return "a"
}

// secRun runs bin to completion within d and returns stdout and stderr apart: an ops
// command's standard output is its data (an export holds payloads by design), its
// standard error is where logs go.
func secRun(t *testing.T, s *binService, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(bins.kycstate, append(args, "--config", s.cfgPath)...)
	cmd.Dir = s.dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.dir}, s.env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(opsWait):
		cmd.Process.Kill()
		<-done
		t.Fatalf("kycstate %s did not finish within %s", strings.Join(args, " "), opsWait)
	}
	return o.String(), e.String(), err
}

// secSecrets is what must never appear in a log: named, so a failure says which kind.
type secSecrets map[string]string

func (ss secSecrets) add(kind, v string) {
	if len(v) >= 12 { // shorter strings could match by accident
		ss[v] = kind
	}
}

// count returns how many of the secrets occur in out.
func (ss secSecrets) count(out string) int {
	n := 0
	for v := range ss {
		if strings.Contains(out, v) {
			n++
		}
	}
	return n
}

// scan reports every secret found in out.
func (ss secSecrets) scan(t *testing.T, what, out string) {
	t.Helper()
	found := map[string]int{}
	for v, kind := range ss {
		if i := strings.Index(out, v); i >= 0 {
			if found[kind]++; found[kind] == 1 {
				lineStart := strings.LastIndexByte(out[:i], '\n') + 1
				lineEnd := strings.IndexByte(out[i:], '\n')
				if lineEnd < 0 {
					lineEnd = len(out) - i
				}
				t.Errorf("%s prints a %s, in: %s", what, kind, tail(out[lineStart:i+lineEnd], 600))
			}
		}
	}
	for kind, n := range found {
		if n > 1 {
			t.Errorf("%s prints %d values of kind %s in all", what, n, kind)
		}
	}
}

// TestSecurityLogsKeepSecrets runs a whole session with an explicit config (so no
// development banner) and logs at info level: serve, the simulator with forged and resent
// webhooks, hostile requests of every kind (wrong signature, MAC-valid plaintext that is
// not JSON, MAC-valid payloads that fail validation, a malformed envelope, a body over the
// limit, an unknown app, wrong and misplaced API tokens), reads by externalUserId, and then
// the operations commands on the stopped service. Everything the service and the commands
// log is then searched for the app's keys (hex and base64), the API tokens and the wrong
// ones sent, every signature sent (the simulator's included, read back from the log and
// the rejects stream), every plaintext kept in the log, every externalUserId, and marker
// strings placed in plaintexts and bodies. None may appear.
func TestSecurityLogsKeepSecrets(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	p := s.start(t)
	secrets := secSecrets{}
	keys := s.app.Keys[0]
	for _, k := range []struct{ name, hex string }{{"secret key", s.secretHex}, {"HMAC key", s.hmacHex}} {
		raw := k.hex
		secrets.add(k.name, raw)
		secrets.add(k.name, strings.ToUpper(raw))
		b := make([]byte, len(raw)/2)
		fmt.Sscanf(raw, "%x", &b)
		secrets.add(k.name+" (base64)", base64.StdEncoding.EncodeToString(b))
		secrets.add(k.name+" (base64)", base64.RawURLEncoding.EncodeToString(b))
	}
	secrets.add("reader token", s.reader)
	secrets.add("auditor token", s.auditor)
	secrets.add("admin token", s.admin)
	secrets.add("master key", s.master)

	client := &http.Client{Timeout: 30 * time.Second}
	marker := func(what string) string {
		m := "marker-" + what + "-" + randomHex(8)
		secrets.add("marker ("+what+")", m)
		return m
	}
	// post sends a webhook to /webhooks/allpass/{app}, or to /webhooks/allpass when app
	// is empty.
	post := func(app string, body []byte, sig string, want int) {
		t.Helper()
		if sig != "" {
			secrets.add("signature", sig)
		}
		path := "/webhooks/allpass"
		if app != "" {
			path += "/" + app
		}
		req, err := http.NewRequest(http.MethodPost, s.ingestURL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("x-allpass-signature", sig)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("POST %s: %d %s, want %d", path, resp.StatusCode, b, want)
		}
	}
	seal := func(plain string) ([]byte, string) {
		t.Helper()
		body, sig, err := allpass.Seal(s.app.Method, keys, []byte(plain), time.Now().UTC().Format(time.RFC3339Nano), nil)
		if err != nil {
			t.Fatal(err)
		}
		secrets.add("plaintext", plain)
		return body, sig
	}

	// Accepted webhooks carrying markers in the externalUserId and an unknown field, and
	// Allpass's resend of one.
	applicant := newID()
	extMarker := marker("externalUserId")
	var accepted []byte
	var acceptedSig string
	for i, typ := range []string{"applicantCreated", "applicantInProgress", "applicantApproved"} {
		plain := fmt.Sprintf(`{"type":%q,"id":%q,"appKey":%q,"externalUserId":%q,"updatedAt":%q,"note":%q}`,
			typ, applicant, s.app.AppKey, extMarker, time.Now().Add(time.Duration(i)*time.Second).UTC().Format(time.RFC3339Nano), marker("unknown field"))
		accepted, acceptedSig = seal(plain)
		post(s.app.Name, accepted, acceptedSig, http.StatusOK)
	}
	post(s.app.Name, accepted, acceptedSig, http.StatusOK)
	post("", accepted, acceptedSig, http.StatusOK) // the generic path

	// Refused: every path through ingest's checks.
	post(s.app.Name, accepted, randomHex(32), http.StatusUnauthorized)
	post(s.app.Name, accepted, base64.StdEncoding.EncodeToString([]byte(randomHex(16))), http.StatusUnauthorized)
	post("", accepted, randomHex(32), http.StatusUnauthorized)
	body, sig := seal("not json " + marker("plaintext that is not JSON"))
	post(s.app.Name, body, sig, http.StatusBadRequest)
	body, sig = seal(fmt.Sprintf(`{"type":"applicantCreated","id":%q,"appKey":%q,"externalUserId":%q}`, newID(), newID(), marker("foreign appKey")))
	post(s.app.Name, body, sig, http.StatusUnprocessableEntity)
	body, sig = seal(fmt.Sprintf(`{"type":"applicantCreated","appKey":%q,"externalUserId":%q}`, s.app.AppKey, marker("no id")))
	post(s.app.Name, body, sig, http.StatusUnprocessableEntity)
	body, sig = seal(fmt.Sprintf(`{"type":"applicantCreated","id":%q,"appKey":%q,"externalUserId":%q,"warnings":"%s"}`, newID(), s.app.AppKey, marker("bad warnings"), marker("warnings value")))
	post(s.app.Name, body, sig, http.StatusUnprocessableEntity)
	post(s.app.Name, []byte(fmt.Sprintf(`{"status":true,"data":12,"x":%q}`, marker("malformed envelope"))), randomHex(32), http.StatusBadRequest)
	post(s.app.Name, []byte(`{"data":"`+strings.Repeat("ab", 600<<10)+`"}`), randomHex(32), http.StatusRequestEntityTooLarge)
	post("no-such-app", accepted, acceptedSig, http.StatusNotFound)
	other := newKeys() // Allpass rotated keys the config lacks
	b2, s2, err := allpass.Seal(s.app.Method, other.keys(t), []byte(fmt.Sprintf(`{"type":"applicantCreated","id":%q,"appKey":%q,"externalUserId":%q}`,
		newID(), s.app.AppKey, marker("rotated key"))), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	secrets.add("secret key (not configured)", other.secretHex)
	secrets.add("HMAC key (not configured)", other.hmacHex)
	post(s.app.Name, b2, s2, http.StatusUnauthorized)

	// The read API: wrong, misplaced and right tokens; a read by externalUserId.
	wrongTok := marker("wrong token")
	for _, h := range []map[string]string{
		{"Authorization": "Bearer " + wrongTok}, {"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("x:"+wrongTok))},
		{"Authorization": "Bearer " + s.reader}, {"X-Api-Key": s.auditor},
	} {
		secGet(t, http.MethodGet, s.apiURL+"/v1/applicants/"+applicant+"/history", h)
	}
	secGet(t, http.MethodGet, s.apiURL+"/v1/applicants?access_token="+s.auditor, nil)
	if code, _, b := secGet(t, http.MethodGet, s.apiURL+"/v1/applicants?externalUserId="+extMarker, map[string]string{"Authorization": "Bearer " + s.reader}); code != http.StatusOK || !strings.Contains(b, applicant) {
		t.Errorf("read by externalUserId: %d %s", code, b)
	}
	secGet(t, http.MethodGet, s.apiURL+"/v1/applicants/not-a-uuid-"+marker("bad id"), map[string]string{"Authorization": "Bearer " + s.reader})
	secGet(t, http.MethodGet, s.apiURL+"/metrics", nil)

	// The simulator: journeys with resends, late events and forgeries.
	simOut, simErr, err := secRun(t, s, "sim", "--applicants", "40", "--concurrency", "4", "--resend", "0.2", "--late", "0.1", "--bad-signature", "0.1")
	if err != nil {
		t.Fatalf("sim: %v\n%s\n%s", err, simOut, simErr)
	}
	fNoPanic(t, "serve", p.Output())
	p.mustTerm(t)
	serveOut := p.Output()
	if strings.Contains(serveOut, "development mode") {
		t.Errorf("serve with an explicit config printed the development banner")
	}

	// Read back every signature and plaintext that went through: the log keeps each
	// accepted webhook's plaintext and signature (sealed: export --open opens them), the
	// rejects stream each refused one's.
	exportPath := t.TempDir() + "/export.jsonl"
	_, exportErr, err := secRun(t, s, "export", "--open", "--out", exportPath)
	if err != nil {
		t.Fatalf("export: %v\n%s", err, exportErr)
	}
	exportData, err := os.ReadFile(exportPath)
	if err != nil {
		t.Fatal(err)
	}
	events := parseExport(t, bytes.NewReader(exportData))
	for _, e := range events {
		secrets.add("plaintext", string(e.Payload))
		var pl struct {
			Ext string `json:"externalUserId"`
		}
		json.Unmarshal(e.Payload, &pl) //nolint:errcheck // parseExport checked it is JSON
		secrets.add("externalUserId", pl.Ext)
		if e.Raw != nil {
			secrets.add("signature", e.Raw.Signature)
		}
	}
	rejOut, rejErr, err := secRun(t, s, "rejects", "list", "--format", "jsonl")
	if err != nil {
		t.Fatalf("rejects list: %v\n%s", err, rejErr)
	}
	rejects := 0
	for _, line := range strings.Split(strings.TrimSpace(rejOut), "\n") {
		var r struct {
			Headers map[string]string `json:"headers"`
		}
		if json.Unmarshal([]byte(line), &r) == nil {
			rejects++
			secrets.add("signature", r.Headers["x-allpass-signature"])
		}
	}
	signatures := 0
	for _, kind := range secrets {
		if kind == "signature" {
			signatures++
		}
	}
	if len(events) < 100 || rejects < 5 || signatures < 100 {
		t.Fatalf("too little went through to prove anything: %d events, %d rejects, %d signatures", len(events), rejects, signatures)
	}

	// The search finds what it looks for: the export and the rejects stream hold
	// plaintexts and signatures by design.
	if n := secrets.count(string(exportData)); n < len(events) {
		t.Errorf("the search finds only %d secrets in the export, which holds %d plaintexts", n, len(events))
	}
	if n := secrets.count(rejOut); n < rejects {
		t.Errorf("the search finds only %d secrets in rejects list --format jsonl, which holds %d signatures", n, rejects)
	}

	outputs := []struct{ what, out string }{
		{"serve", serveOut}, {"sim (stdout)", simOut}, {"sim (stderr)", simErr},
		{"export (stderr)", exportErr}, {"rejects list --format jsonl (stderr)", rejErr},
	}
	// Commands whose standard output is a report, not data: searched whole.
	for _, args := range [][]string{{"verify"}, {"rebuild"}, {"verify"}, {"rejects", "reprocess"}, {"rejects", "list"}, {"replay"}, {"replay", "--applicant", applicant}} {
		o, e, err := secRun(t, s, args...)
		if err != nil {
			t.Errorf("kycstate %s: %v\n%s", strings.Join(args, " "), err, e)
		}
		outputs = append(outputs, struct{ what, out string }{"kycstate " + strings.Join(args, " "), o + e})
	}
	// replay --format jsonl prints records (data) on stdout; its stderr is still a log.
	_, e, err := secRun(t, s, "replay", "--format", "jsonl")
	if err != nil {
		t.Errorf("replay --format jsonl: %v\n%s", err, e)
	}
	outputs = append(outputs, struct{ what, out string }{"replay --format jsonl (stderr)", e})

	lines := 0
	for _, o := range outputs {
		secrets.scan(t, o.what, o.out)
		lines += strings.Count(o.out, "\n")
	}
	if n := len(fLogLines(serveOut)); n < 10 {
		t.Errorf("serve logged only %d JSON lines at info level; the search would prove little", n)
	}
	t.Logf("searched %d lines of output from %d commands for %d secret values (%d signatures); %d events, %d rejects",
		lines, len(outputs), len(secrets), signatures, len(events), rejects)
}
