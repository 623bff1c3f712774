package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"go.yaml.in/yaml/v3"
)

// devFile is the part of <data_dir>/dev.yaml the tests read.
type devFile struct {
	Apps []struct {
		Name      string `yaml:"name"`
		AppKey    string `yaml:"app_key"`
		Method    string `yaml:"method"`
		SecretKey string `yaml:"secret_key"`
		HMACKey   string `yaml:"hmac_key"`
	} `yaml:"apps"`
	API struct {
		Tokens []struct {
			Name  string `yaml:"name"`
			Role  string `yaml:"role"`
			Token string `yaml:"token"`
		} `yaml:"tokens"`
	} `yaml:"api"`
}

func (d devFile) token(t *testing.T, role string) string {
	t.Helper()
	for _, tk := range d.API.Tokens {
		if tk.Role == role {
			return tk.Token
		}
	}
	t.Fatalf("dev.yaml has no %s token", role)
	return ""
}

// TestBinaryDevMode runs the README's command, `kycstate serve` with no config in a fresh
// directory: development mode generates and prints the app's keys and tokens once, both
// ports answer, a webhook sealed with the printed keys is stored and readable with the
// printed reader token, a restart reuses dev.yaml without printing a secret again, and
// `kycstate sim` finds everything it needs in dev.yaml.
func TestBinaryDevMode(t *testing.T) {
	needBins(t)
	dir := t.TempDir()
	ingestAdr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	apiAdr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env := []string{"KYCSTATE_INGEST_LISTEN=" + ingestAdr, "KYCSTATE_API_LISTEN=" + apiAdr}
	ingestURL, apiURL := "http://"+ingestAdr, "http://"+apiAdr

	p := start(t, dir, env, bins.kycstate, "serve")
	waitHTTP(t, ingestURL+"/healthz", readyWait, p)
	waitHTTP(t, apiURL+"/healthz", readyWait, p)

	devPath := filepath.Join(dir, "data", "dev.yaml")
	raw, err := os.ReadFile(devPath)
	if err != nil {
		t.Fatalf("development mode wrote no %s: %v\n%s", devPath, err, p.Output())
	}
	if st, err := os.Stat(devPath); err == nil && st.Mode().Perm()&0o077 != 0 {
		t.Errorf("%s holds secrets but has mode %v; want no access for group and others", devPath, st.Mode().Perm())
	}
	var dev devFile
	if err := yaml.Unmarshal(raw, &dev); err != nil {
		t.Fatalf("dev.yaml: %v", err)
	}
	if len(dev.Apps) != 1 {
		t.Fatalf("dev.yaml has %d apps, want 1", len(dev.Apps))
	}
	da := dev.Apps[0]
	reader, auditor := dev.token(t, "reader"), dev.token(t, "auditor")
	secrets := map[string]string{"secret_key": da.SecretKey, "hmac_key": da.HMACKey, "reader token": reader, "auditor token": auditor}

	// Printed once: the banner shows each secret, and no log line repeats it.
	first := p.Output()
	if !strings.Contains(first, da.AppKey) {
		t.Errorf("first start did not print the app key %s:\n%s", da.AppKey, first)
	}
	for name, v := range secrets {
		if v == "" {
			t.Fatalf("dev.yaml has an empty %s", name)
		}
		if n := strings.Count(first, v); n != 1 {
			t.Errorf("first start printed the %s %d times, want exactly once", name, n)
		}
	}

	sec, err := allpass.ParseKey(da.Name, "secret_key", da.SecretKey)
	if err != nil {
		t.Fatalf("dev.yaml secret_key: %v", err)
	}
	keys := allpass.Keys{Secret: sec}
	if allpass.Method(da.Method) == allpass.MethodCBC {
		h, err := allpass.ParseKey(da.Name, "hmac_key", da.HMACKey)
		if err != nil {
			t.Fatalf("dev.yaml hmac_key: %v", err)
		}
		keys.HMAC = h[:]
	}
	app := allpass.App{Name: da.Name, AppKey: domain.AppKey(da.AppKey), Method: allpass.Method(da.Method), Keys: []allpass.Keys{keys}}

	applicant := newID()
	h := sealHook(t, app, keys, applicant, "applicantCreated", "", time.Now(), "dev-1")
	// The banner's URLs are what a developer copies: they must reach this service.
	printedHook, printedAPI := bannerURL(first, `POST\s+(http\S+)`), bannerURL(first, `read API\s+(http\S+)`)
	if !reachable(printedHook, ingestAdr, "/webhooks/allpass/"+app.Name) {
		t.Errorf("banner's webhook URL %q does not reach the webhook endpoint listening on %s", printedHook, ingestAdr)
	}
	if !reachable(printedAPI, apiAdr, "/v1/applicants/{id}") {
		t.Errorf("banner's read API URL %q does not reach the read API listening on %s", printedAPI, apiAdr)
	}
	a := mustPost(t, ingestURL, app.Name, h)
	if a.seq != 1 || a.dup {
		t.Fatalf("first webhook on a fresh service: seq %d duplicate %v, want seq 1 duplicate false (%s)", a.seq, a.dup, a.body)
	}
	// By appKey too, as the design allows either in the path; the resend is a duplicate.
	if a := mustPost(t, ingestURL, string(app.AppKey), h); a.seq != 1 || !a.dup {
		t.Errorf("same webhook again: seq %d duplicate %v, want seq 1 duplicate true", a.seq, a.dup)
	}

	var st applicantState
	url := apiURL + "/v1/applicants/" + applicant + "?minSeq=1"
	if code, body := getJSON(t, url, reader, &st); code != http.StatusOK {
		t.Fatalf("GET %s with the dev reader token: %d %s", url, code, body)
	}
	if string(st.ApplicantID) != applicant || st.Status == nil || *st.Status != "INIT" || st.LastSeq != 1 || st.Events != 1 {
		t.Errorf("state after applicantCreated: %+v (status %v), want INIT, lastSeq 1, 1 event", st, deref(st.Status))
	}
	if code, _ := getJSON(t, url, "", nil); code != http.StatusUnauthorized {
		t.Errorf("GET without a token: %d, want 401", code)
	}
	p.mustTerm(t)

	// The second start reuses dev.yaml and prints no secret.
	p2 := start(t, dir, env, bins.kycstate, "serve")
	waitHTTP(t, ingestURL+"/healthz", readyWait, p2)
	waitHTTP(t, apiURL+"/healthz", readyWait, p2)
	if raw2, err := os.ReadFile(devPath); err != nil || !bytes.Equal(raw, raw2) {
		t.Errorf("second start changed %s (err %v)", devPath, err)
	}
	second := p2.Output()
	for name, v := range secrets {
		if strings.Contains(second, v) {
			t.Errorf("second start printed the %s again", name)
		}
	}
	if !strings.Contains(second, "dev.yaml") {
		t.Errorf("second start does not say where the development keys are:\n%s", second)
	}
	if code, body := getJSON(t, apiURL+"/v1/applicants/"+applicant, reader, &st); code != http.StatusOK || st.LastSeq != 1 {
		t.Errorf("state after restart: %d %s", code, body)
	}

	// sim, small: it reads dev.yaml from the same working directory and environment.
	out, err := runCmd(t, dir, env, 2*time.Minute, bins.kycstate, "sim", "--applicants", "12", "--concurrency", "4", "--seed", "7")
	if err != nil {
		t.Errorf("kycstate sim against the dev service: %v\n%s", err, out)
	} else {
		t.Logf("sim:\n%s", tail(out, 1500))
	}
	for name, v := range secrets {
		if strings.Contains(out, v) {
			t.Errorf("sim printed the %s", name)
		}
	}
	p2.mustTerm(t)
	for name, v := range secrets {
		if strings.Contains(p2.Output(), v) {
			t.Errorf("second run's log holds the %s", name)
		}
	}

	// The offline commands find the development data dir without --config too.
	out, err = runCmd(t, dir, env, opsWait, bins.kycstate, "verify")
	if err != nil || !regexp.MustCompile(`: 0 differences`).MatchString(out) {
		t.Errorf("verify in the development directory: %v\n%s", err, out)
	}
	out, err = runCmd(t, dir, env, opsWait, bins.kycstate, "replay", "--applicant", applicant, "--format", "jsonl")
	if rs := parseReplay(t, out); err != nil || len(rs) != 1 || rs[0].Seq != 1 || rs[0].Outcome != "applied" {
		t.Errorf("replay --applicant in the development directory: %v, %+v\n%s", err, rs, out)
	}
}

// bannerURL returns the first group of re in the development banner, or "".
func bannerURL(out, re string) string {
	m := regexp.MustCompile(re).FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	return m[1]
}

// reachable reports whether printed is an http URL with the path want whose host, looked
// up here, is the loopback address listen.
func reachable(printed, listen, path string) bool {
	u, err := url.Parse(printed)
	if err != nil || u.Scheme != "http" || u.Path != path {
		return false
	}
	_, port, _ := net.SplitHostPort(listen)
	if u.Port() != port {
		return false
	}
	addrs, err := net.LookupHost(u.Hostname())
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip != nil && ip.IsLoopback() {
			return true
		}
	}
	return false
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// TestBinaryKeygenConfig checks that what `kycstate keygen` prints is a config serve
// accepts, and that webhooks sealed with its keys and reads with its tokens work.
func TestBinaryKeygenConfig(t *testing.T) {
	needBins(t)
	dir := t.TempDir()
	out, err := runCmd(t, dir, nil, opsWait, bins.kycstate, "keygen")
	if err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	var gen devFile
	if err := yaml.Unmarshal([]byte(out), &gen); err != nil || len(gen.Apps) != 1 {
		t.Fatalf("keygen output is not a config with one app (%v):\n%s", err, out)
	}
	if again, _ := runCmd(t, dir, nil, opsWait, bins.kycstate, "keygen"); again == out {
		t.Errorf("keygen printed the same keys twice")
	}
	ingestAdr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	apiAdr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := fmt.Sprintf("data_dir: %q\n", filepath.Join(dir, "data")) + out
	cfgPath := filepath.Join(dir, "kycstate.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"KYCSTATE_INGEST_LISTEN=" + ingestAdr, "KYCSTATE_API_LISTEN=" + apiAdr}
	p := start(t, dir, env, bins.kycstate, "serve", "--config", cfgPath)
	waitHTTP(t, "http://"+ingestAdr+"/healthz", readyWait, p)
	waitHTTP(t, "http://"+apiAdr+"/healthz", readyWait, p)

	ga := gen.Apps[0]
	k := testKeys{ga.SecretKey, ga.HMACKey}.keys(t)
	app := allpass.App{Name: ga.Name, AppKey: domain.AppKey(ga.AppKey), Method: allpass.Method(ga.Method)}
	applicant := newID()
	a := mustPost(t, "http://"+ingestAdr, app.Name, sealHook(t, app, k, applicant, "applicantCreated", "", time.Now(), "kg"))
	var st applicantState
	url := fmt.Sprintf("http://%s/v1/applicants/%s?minSeq=%d", apiAdr, applicant, a.seq)
	if code, body := getJSON(t, url, gen.token(t, "reader"), &st); code != http.StatusOK || st.LastSeq != a.seq {
		t.Errorf("read with keygen's reader token: %d %s", code, body)
	}
	p.mustTerm(t)
}

// TestBinaryConfigErrors checks that each kind of bad configuration stops the binary with
// a non-zero exit and a message naming the key, and that no message echoes a secret.
func TestBinaryConfigErrors(t *testing.T) {
	needBins(t)
	dir := t.TempDir()
	secret, hmacKey := randomHex(32), randomHex(32)
	reader := randomHex(24)
	const planted = "S3CR3T-PLANTED-VALUE" // a secret-looking value the messages must not echo
	good := map[string]string{
		"data_dir":  fmt.Sprintf("%q", filepath.Join(dir, "data")),
		"listen":    fmt.Sprintf("%q", fmt.Sprintf("127.0.0.1:%d", freePort(t))),
		"apilisten": fmt.Sprintf("%q", fmt.Sprintf("127.0.0.1:%d", freePort(t))),
		"role":      "reader",
		"token":     fmt.Sprintf("%q", reader),
		"app_key":   newID(),
		"method":    "aes-256-cbc",
		"secret":    fmt.Sprintf("%q", secret),
		"hmac":      fmt.Sprintf("%q", hmacKey),
		"extra":     "",
	}
	config := func(over map[string]string) string {
		v := map[string]string{}
		for k, x := range good {
			v[k] = x
		}
		for k, x := range over {
			v[k] = x
		}
		return fmt.Sprintf(`data_dir: %s
ingest: { listen: %s }
api:
  listen: %s
  tokens:
    - { name: reader, role: %s, token: %s }
apps:
  - name: main
    app_key: %s
    method: %s
    secret_key: %s
    hmac_key: %s
%s`, v["data_dir"], v["listen"], v["apilisten"], v["role"], v["token"], v["app_key"], v["method"], v["secret"], v["hmac"], v["extra"])
	}

	cases := []struct {
		name  string
		yaml  string   // the config file; "" for none
		env   []string // extra environment
		cmd   string   // the command; serve unless set
		wants []string // substrings the message must have (case-insensitive)
	}{
		{name: "bad yaml", yaml: "data_dir: [unclosed\napps: {\n", wants: []string{"config", "line"}},
		{name: "unknown key", yaml: config(map[string]string{"extra": "bogus_setting: 3\n"}), wants: []string{"bogus_setting"}},
		{name: "unknown nested key", yaml: config(map[string]string{"listen": "\"127.0.0.1:1\", listn: x"}), wants: []string{"listn"}},
		{name: "secret key not a key", yaml: config(map[string]string{"secret": planted}), wants: []string{"secret_key"}},
		{name: "secret key too short", yaml: config(map[string]string{"secret": fmt.Sprintf("%q", secret[:62])}), wants: []string{"secret_key"}},
		{name: "hmac key not a key", yaml: config(map[string]string{"hmac": planted}), wants: []string{"hmac_key"}},
		{name: "secret from a missing variable", yaml: config(map[string]string{"secret": "env:ALLPASS_E2E_MISSING_SECRET"}),
			wants: []string{"secret_key", "ALLPASS_E2E_MISSING_SECRET"}},
		{name: "secret from a missing file", yaml: config(map[string]string{"hmac": "file:" + filepath.Join(dir, "no-such-secret")}),
			wants: []string{"hmac_key", "no-such-secret"}},
		{name: "secret as a map", yaml: config(map[string]string{"secret": "{ nested: " + planted + " }"}), wants: []string{"config"}},
		{name: "bad role", yaml: config(map[string]string{"role": "root"}), wants: []string{"role"}},
		{name: "short token", yaml: config(map[string]string{"token": "tiny-" + planted[:6]}), wants: []string{"token"}},
		{name: "bad method", yaml: config(map[string]string{"method": "rot13"}), wants: []string{"method"}},
		{name: "app key not a uuid", yaml: config(map[string]string{"app_key": "main-app"}), wants: []string{"app_key"}},
		{name: "secret key from the environment", yaml: config(nil), env: []string{"KYCSTATE_APPS_0_SECRET_KEY=" + planted},
			wants: []string{"secret_key"}},
		{name: "unknown variable under a known key", yaml: config(nil), env: []string{"KYCSTATE_INGEST_LISTN=:1"},
			wants: []string{"KYCSTATE_INGEST_LISTN"}},
		{name: "bad role from the environment", yaml: config(nil), env: []string{"KYCSTATE_API_TOKENS_0_ROLE=root"}, wants: []string{"role"}},
		{name: "missing config file", cmd: "serve", env: nil, wants: []string{"no-such-config.yaml"}},
		{name: "ops command, bad secret", cmd: "verify", yaml: config(map[string]string{"secret": planted}), wants: []string{"secret_key"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("case-%d.yaml", i))
			if tc.yaml != "" {
				if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
			} else {
				path = filepath.Join(dir, "no-such-config.yaml")
			}
			cmd := tc.cmd
			if cmd == "" {
				cmd = "serve"
			}
			out, err := runCmd(t, dir, tc.env, opsWait, bins.kycstate, cmd, "--config", path)
			if code := exitStatus(err); code <= 0 {
				t.Fatalf("exit %d (%v), want a non-zero exit of its own; output:\n%s", code, err, out)
			}
			t.Logf("exit %d: %s", exitStatus(err), strings.TrimSpace(out))
			low := strings.ToLower(out)
			for _, w := range tc.wants {
				if !strings.Contains(low, strings.ToLower(w)) {
					t.Errorf("message does not name %q:\n%s", w, out)
				}
			}
			for name, v := range map[string]string{"planted value": planted, "planted prefix": planted[:6],
				"secret_key": secret, "hmac_key": hmacKey, "token": reader} {
				if strings.Contains(out, v) {
					t.Errorf("message echoes the %s:\n%s", name, out)
				}
			}
			if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
				t.Errorf("crashed instead of refusing:\n%s", out)
			}
		})
	}
}

// TestBinaryUsage checks --help of every command (exit 0, usage printed), the top-level
// help, and the usage errors (exit 2).
func TestBinaryUsage(t *testing.T) {
	needBins(t)
	dir := t.TempDir()
	run := func(args ...string) (string, int) {
		t.Helper()
		out, err := runCmd(t, dir, nil, opsWait, bins.kycstate, args...)
		return out, exitStatus(err)
	}
	top, code := run("--help")
	if code != 0 {
		t.Fatalf("kycstate --help: exit %d\n%s", code, top)
	}
	commands := []string{"serve", "ingest", "query", "replay", "verify", "rebuild", "export", "rejects", "sim", "keygen", "version",
		"backup", "restore", "erasures", "standby"}
	for _, c := range commands {
		if !regexp.MustCompile(`(?m)^\s+` + c + `\s`).MatchString(top) {
			t.Errorf("kycstate --help does not list %s:\n%s", c, top)
		}
	}
	if out, code := run("help"); code != 0 || out != top {
		t.Errorf("kycstate help: exit %d, output differs from --help", code)
	}
	for _, c := range append(commands, "rejects list", "rejects reprocess") {
		for _, flag := range []string{"--help", "-h"} {
			args := append(strings.Fields(c), flag)
			out, code := run(args...)
			if code != 0 {
				t.Errorf("kycstate %s: exit %d, want 0\n%s", strings.Join(args, " "), code, out)
			}
			if !strings.Contains(out, "Usage: kycstate "+strings.Fields(c)[0]) {
				t.Errorf("kycstate %s prints no usage:\n%s", strings.Join(args, " "), out)
			}
		}
	}
	// The audit and operations commands say whether they work on a running service or
	// need it stopped (DESIGN.md section 8).
	for _, c := range []string{"replay", "verify", "rebuild", "export", "rejects list", "rejects reprocess",
		"backup", "restore", "erasures", "standby"} {
		out, _ := run(append(strings.Fields(c), "--help")...)
		if !strings.Contains(out, "-config") || !(strings.Contains(out, "stopped") || strings.Contains(out, "running")) {
			t.Errorf("kycstate %s --help does not name --config or say whether the service may run:\n%s", c, out)
		}
	}
	if out, code := run("version"); code != 0 || !strings.HasPrefix(out, "kycstate ") {
		t.Errorf("version: exit %d %q", code, out)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, "frobnicate"},
		{[]string{}, "Usage"},
		{[]string{"serve", "--no-such-flag"}, "no-such-flag"},
		{[]string{"export", "extra-argument"}, "extra-argument"},
		{[]string{"rejects"}, "list"},
		{[]string{"rejects", "purge"}, "list"},
		{[]string{"replay", "--format", "xml"}, "format"},
		{[]string{"replay", "--applicant", "not-an-id"}, "applicant"},
	} {
		out, code := run(tc.args...)
		if code != 2 {
			t.Errorf("kycstate %s: exit %d, want 2 (usage)\n%s", strings.Join(tc.args, " "), code, out)
		}
		if !strings.Contains(out, tc.want) {
			t.Errorf("kycstate %s: message does not mention %q:\n%s", strings.Join(tc.args, " "), tc.want, out)
		}
	}
}

// TestBinarySIGTERMUnderLoad stops serve with SIGTERM while senders keep webhooks coming:
// it exits 0 within its shutdown bound, and every webhook answered 200 before or during
// the stop is in the log exactly once, at the sequence it was answered with, and reaches
// the projection after a restart.
func TestBinarySIGTERMUnderLoad(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	p := s.start(t)
	g := newLoadGen(t, s, 6, false)
	g.run()
	g.waitAcks(t, 200, 60*time.Second)

	t0 := time.Now()
	err := p.term(t, stopWait)
	took := time.Since(t0)
	g.stopAndWait()
	if err != nil {
		t.Fatalf("serve after SIGTERM under load: %v (want exit 0)\n%s", err, tail(p.Output(), 4000))
	}
	acks := g.snapshot()
	t.Logf("SIGTERM under load: exit 0 after %s; %d webhooks answered 200", took.Round(time.Millisecond), len(acks))
	if !strings.Contains(p.Output(), "stopping") {
		t.Errorf("serve's log does not say it stopped on the signal:\n%s", tail(p.Output(), 2000))
	}

	events := s.exportLog(t)
	checkAcksInLog(t, acks, events)
	mustVerify(t, s, 0)

	// After a restart the projection serves every acknowledged event.
	p = s.start(t)
	checkAcksInProjection(t, s, acks)
	p.mustTerm(t)
}

// TestBinarySecondInstance starts a second serve on a data dir in use: it must fail fast
// with a message saying so, and leave the first one serving.
func TestBinarySecondInstance(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	p := s.start(t)
	// Other ports, so that only the data dir can make it fail.
	env := append(append([]string{}, s.env...),
		fmt.Sprintf("KYCSTATE_INGEST_LISTEN=127.0.0.1:%d", freePort(t)),
		fmt.Sprintf("KYCSTATE_API_LISTEN=127.0.0.1:%d", freePort(t)))
	t0 := time.Now()
	out, err := runCmd(t, s.dir, env, 30*time.Second, bins.kycstate, "serve", "--config", s.cfgPath)
	took := time.Since(t0)
	if code := exitStatus(err); code <= 0 {
		t.Fatalf("second serve on the same data dir: exit %d (%v) after %s, want a non-zero exit\n%s", code, err, took, out)
	}
	t.Logf("second instance refused after %s", took.Round(time.Millisecond))
	if !contains(out, "in use", s.dataDir) {
		t.Errorf("second instance's message does not say the data dir %s is in use:\n%s", s.dataDir, out)
	}
	mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], newID(), "applicantCreated", "", time.Now(), "after-second"))

	// A port in use is a clear startup error too (another data dir, the same webhook port).
	other := newBinService(t)
	env = append(append([]string{}, other.env...), "KYCSTATE_INGEST_LISTEN="+s.ingestAdr)
	out, err = runCmd(t, other.dir, env, 30*time.Second, bins.kycstate, "serve", "--config", other.cfgPath)
	if code := exitStatus(err); code <= 0 {
		t.Errorf("serve on a port in use: exit %d (%v), want a non-zero exit\n%s", code, err, out)
	}
	if !contains(out, s.ingestAdr, "in use") {
		t.Errorf("serve on a port in use: message does not name the address %s:\n%s", s.ingestAdr, out)
	}
	p.mustTerm(t)
}
