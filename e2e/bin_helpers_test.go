package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
)

// Helpers of the binary, crash and ops tests. The cluster tests keep theirs (prefixed cl)
// in cluster_test.go.

// Bounds for waits that would otherwise hang a broken binary's test. They are generous on
// purpose: they catch hangs, they do not measure speed.
const (
	readyWait = 60 * time.Second // serve answering /healthz on both ports
	stopWait  = 30 * time.Second // serve exiting after SIGTERM (its own shutdown bound is 30 s)
	opsWait   = 60 * time.Second // an ops command on a small data dir
)

// binService is one `kycstate serve --config` setup: its directory, config file, loopback
// ports, Allpass app and API tokens. Restarting it reuses all of them.
type binService struct {
	dir       string // the process's working directory; holds the config
	dataDir   string
	cfgPath   string
	ingestURL string
	apiURL    string
	ingestAdr string
	apiAdr    string
	app       allpass.App // app.Keys[0] is what the config holds now
	secretHex string
	hmacHex   string
	reader    string // reader token
	auditor   string // auditor token
	admin     string // admin token
	master    string // keys.master, hex
	previous  string // keys.previous, hex ("": none)
	env       []string
	// bin is the kycstate binary start runs; "" is the production build (bins.kycstate).
	bin string
	// appExtra is added to the app's entry (indented under it, e.g. its open_api), and
	// extra to the end of the config (top-level sections).
	appExtra, extra string
}

// newBinService writes a config with a fresh app, fresh tokens and free ports.
func newBinService(t *testing.T) *binService {
	t.Helper()
	dir := t.TempDir()
	s := &binService{
		dir:       dir,
		dataDir:   filepath.Join(dir, "data"),
		cfgPath:   filepath.Join(dir, "kycstate.yaml"),
		ingestAdr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		apiAdr:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		reader:    randomHex(24),
		auditor:   randomHex(24),
		admin:     randomHex(24),
		master:    randomHex(32),
	}
	s.ingestURL = "http://" + s.ingestAdr
	s.apiURL = "http://" + s.apiAdr
	s.app = allpass.App{Name: "main", AppKey: domain.AppKey(newID()), Method: allpass.MethodCBC}
	s.setKeys(t, newKeys())
	return s
}

// setKeys puts keys into the app and rewrites the config with them.
func (s *binService) setKeys(t *testing.T, k testKeys) {
	t.Helper()
	s.secretHex, s.hmacHex = k.secretHex, k.hmacHex
	s.app.Keys = []allpass.Keys{k.keys(t)}
	cfg := fmt.Sprintf(`data_dir: %q
log: { level: info, format: json }
ingest: { listen: %q }
api:
  listen: %q
  tokens:
    - { name: reader, role: reader, token: %q }
    - { name: auditor, role: auditor, token: %q }
    - { name: dpo, role: admin, token: %q }
keys: { master: %q%s }
apps:
  - name: %s
    app_key: %s
    method: %s
    secret_key: %q
    hmac_key: %q
%s%s`, s.dataDir, s.ingestAdr, s.apiAdr, s.reader, s.auditor, s.admin, s.master, previousKeys(s.previous),
		s.app.Name, s.app.AppKey, s.app.Method, s.secretHex, s.hmacHex, s.appExtra, s.extra)
	if err := os.WriteFile(s.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// previousKeys is the keys.previous entry of the config for one old master key.
func previousKeys(hex string) string {
	if hex == "" {
		return ""
	}
	return fmt.Sprintf(", previous: [%q]", hex)
}

// start runs serve and waits until both ports answer /healthz.
func (s *binService) start(t *testing.T) *proc {
	t.Helper()
	bin := s.bin
	if bin == "" {
		bin = bins.kycstate
	}
	p := start(t, s.dir, s.env, bin, "serve", "--config", s.cfgPath)
	s.waitReady(t, p)
	return p
}

func (s *binService) waitReady(t *testing.T, p *proc) {
	t.Helper()
	waitHTTP(t, s.ingestURL+"/healthz", readyWait, p)
	waitHTTP(t, s.apiURL+"/healthz", readyWait, p)
}

// ops runs `kycstate <args...> --config <cfg>` to completion.
func (s *binService) ops(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runCmd(t, s.dir, s.env, opsWait, bins.kycstate, append(args, "--config", s.cfgPath)...)
}

// mustOps is ops that must exit 0.
func (s *binService) mustOps(t *testing.T, args ...string) string {
	t.Helper()
	out, err := s.ops(t, args...)
	if err != nil {
		t.Fatalf("kycstate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// testKeys is one generation of an app's secrets, as the config writes them.
type testKeys struct{ secretHex, hmacHex string }

func newKeys() testKeys { return testKeys{randomHex(32), randomHex(32)} }

func (k testKeys) keys(t testing.TB) allpass.Keys {
	t.Helper()
	sec, err := allpass.ParseKey("test", "secret_key", k.secretHex)
	if err != nil {
		t.Fatal(err)
	}
	h, err := allpass.ParseKey("test", "hmac_key", k.hmacHex)
	if err != nil {
		t.Fatal(err)
	}
	return allpass.Keys{Secret: sec, HMAC: h[:]}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newID returns a random version 4 UUID.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// hook is one sealed webhook. nonce is an unknown payload field, kept verbatim by the
// service, that tells the test's webhooks apart in an export.
type hook struct {
	applicant string
	typ       string
	nonce     string
	body      []byte
	sig       string
}

// sealHook seals a webhook for applicant with app's method and keys.
func sealHook(t testing.TB, app allpass.App, keys allpass.Keys, applicant, typ, step string, at time.Time, nonce string) hook {
	t.Helper()
	h, err := seal(app, keys, applicant, typ, step, at, nonce)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// seal is sealHook for goroutines that must not call t.Fatal.
func seal(app allpass.App, keys allpass.Keys, applicant, typ, step string, at time.Time, nonce string) (hook, error) {
	pl := map[string]any{
		"type": typ, "id": applicant, "appKey": string(app.AppKey),
		"externalUserId": "user-" + applicant[:8], "updatedAt": at.UTC().Format(time.RFC3339Nano),
		"nonce": nonce,
	}
	if step != "" {
		pl["stepName"] = step
	}
	plain, err := json.Marshal(pl)
	if err != nil {
		return hook{}, err
	}
	body, sig, err := allpass.Seal(app.Method, keys, plain, at.UTC().Format(time.RFC3339Nano), rand.Reader)
	if err != nil {
		return hook{}, err
	}
	return hook{applicant: applicant, typ: typ, nonce: nonce, body: body, sig: sig}, nil
}

// answer is what ingest said to one webhook.
type answer struct {
	code       int
	seq        uint64
	dup        bool
	body       string
	retryAfter string // the Retry-After header, which a 503 must carry
}

// errBadAnswer marks an answer that broke the ingest contract, as opposed to no answer.
var errBadAnswer = errors.New("answer breaks the contract")

// postHook sends h to the app's webhook path. An error wrapping errBadAnswer is a 200 with
// a body that is not {"seq":N,"duplicate":B}; any other error means no answer arrived.
func postHook(client *http.Client, base, appName string, h hook) (answer, error) {
	header := http.Header{}
	header.Set("Content-Type", "application/json")
	header.Set("x-allpass-signature", h.sig)
	return postWebhook(client, base+"/webhooks/allpass/"+appName, h.body, header)
}

// postWebhook posts body with header to a webhook path (url) and reads the answer as
// postHook says.
func postWebhook(client *http.Client, url string, body []byte, header http.Header) (answer, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{code: resp.StatusCode, body: string(b), retryAfter: resp.Header.Get("Retry-After")}
	if a.code == http.StatusOK {
		var r struct {
			Seq       *uint64 `json:"seq"`
			Duplicate *bool   `json:"duplicate"`
		}
		if err := json.Unmarshal(b, &r); err != nil || r.Seq == nil || r.Duplicate == nil || *r.Seq == 0 {
			return a, fmt.Errorf("%w: 200 with a body that is not {\"seq\":N,\"duplicate\":B}: %q", errBadAnswer, b)
		}
		a.seq, a.dup = *r.Seq, *r.Duplicate
	}
	return a, nil
}

// mustPost sends h and requires a 200.
func mustPost(t testing.TB, base, appName string, h hook) answer {
	t.Helper()
	a, err := postHook(http.DefaultClient, base, appName, h)
	if err != nil {
		t.Fatalf("POST webhook: %v", err)
	}
	if a.code != http.StatusOK {
		t.Fatalf("POST webhook: %d %s", a.code, a.body)
	}
	return a
}

// getJSON GETs url with a bearer token (none if empty), decodes a 200's body into v and
// returns the status and the raw body.
func getJSON(t testing.TB, url, token string, v any) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode == http.StatusOK && v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: %v in %s", url, err, b)
		}
	}
	return resp.StatusCode, string(b)
}

// applicantState is GET /v1/applicants/{id} as the read API's Go client reads it.
type applicantState = client.State

// historySeqs returns the stream sequences of an applicant's history, every page.
func historySeqs(t testing.TB, apiURL, auditor, applicant string) []uint64 {
	t.Helper()
	var seqs []uint64
	after := uint64(0)
	for {
		var page client.History
		url := fmt.Sprintf("%s/v1/applicants/%s/history?after=%d&limit=500", apiURL, applicant, after)
		if code, body := getJSON(t, url, auditor, &page); code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", url, code, body)
		}
		for _, e := range page.Events {
			if e.Outcome == "" {
				t.Errorf("history of %s: seq %d has no outcome", applicant, e.Seq)
			}
			seqs = append(seqs, e.Seq)
		}
		if page.Next == nil || len(page.Events) == 0 {
			return seqs
		}
		after = *page.Next
	}
}

// exported is one line of `kycstate export`, with the nonce of the test's payloads.
type exported struct {
	Seq         uint64          `json:"seq"`
	ApplicantID string          `json:"applicantId"`
	AppKey      string          `json:"appKey"`
	Type        string          `json:"type"`
	Payload     json.RawMessage `json:"payload"`
	Raw         *struct {
		Body      string `json:"body"`
		Signature string `json:"signature"`
	} `json:"raw"`
	nonce string
}

// exportLog runs `kycstate export --open --out FILE` on the stopped service and parses
// the file: the events with their sealed fields opened.
func (s *binService) exportLog(t *testing.T) []exported {
	t.Helper()
	path := filepath.Join(t.TempDir(), fmt.Sprintf("export-%d.jsonl", time.Now().UnixNano()))
	s.mustOps(t, "export", "--open", "--out", path)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return parseExport(t, f)
}

func parseExport(t testing.TB, r io.Reader) []exported {
	t.Helper()
	var out []exported
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var e exported
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("export line is not JSON: %v: %q", err, sc.Text())
		}
		if e.Seq == 0 {
			t.Fatalf("export line without seq: %q", sc.Text())
		}
		var pl struct {
			Nonce string `json:"nonce"`
		}
		// An erased applicant's events have no payload left (DESIGN.md section 11).
		if err := json.Unmarshal(e.Payload, &pl); len(e.Payload) > 0 && err != nil {
			t.Fatalf("export line with a payload that is not the JSON sent: %v: %q", err, sc.Text())
		}
		e.nonce = pl.Nonce
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// exitStatus is a finished command's exit code: 0 for nil, -1 when it did not exit by
// itself (killed on timeout, say).
func exitStatus(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// term sends SIGTERM and waits up to d for the exit; it returns the exit error.
func (p *proc) term(t *testing.T, d time.Duration) error {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	return p.wait(t, d)
}

// mustTerm stops p with SIGTERM and requires exit status 0.
func (p *proc) mustTerm(t *testing.T) {
	t.Helper()
	if err := p.term(t, stopWait); err != nil {
		t.Fatalf("serve after SIGTERM: %v (want exit 0)\n%s", err, p.Output())
	}
}

// tail returns the last n bytes of s, for failure messages.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
