package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/ingest"
	"github.com/kycstate/kycstate/reconcile"
)

const testSecret = "92763834fe1288c9c1dcbdd3f8f9d1dbb949590adaffbad810d933422ed0e16b"
const testHMAC = "70676e43e91ae1bfce5b2ab4db1b016ab959f06341184b01b5ce93522c0da917"

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func envFunc(kv ...string) (func(string) string, []string) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	var environ []string
	for k, v := range m {
		environ = append(environ, k+"="+v)
	}
	return func(k string) string { return m[k] }, environ
}

const goodYAML = `
data_dir: ./somewhere
nats: { url: "", replicas: 1 }
ingest: { listen: ":8080" }
api:
  listen: "127.0.0.1:8081"
  tokens:
    - { name: product, role: reader,  token: "env:KYCSTATE_PRODUCT_TOKEN" }
    - { name: audit,   role: auditor, token: "file:TOKENFILE" }
apps:
  - name: main
    app_key: 71f2c0c6-c720-423b-8df0-7763102ad57e
    method: aes-256-cbc
    secret_key: "env:ALLPASS_SECRET_KEY"
    hmac_key: "env:ALLPASS_HMAC_KEY"
`

func TestConfigDesignExample(t *testing.T) {
	tokenFile := writeFile(t, "audit", "audit-token-0123456789\n")
	path := writeFile(t, "c.yaml", strings.ReplaceAll(goodYAML, "TOKENFILE", tokenFile))
	getenv, environ := envFunc("KYCSTATE_PRODUCT_TOKEN", "product-token-0123456789",
		"ALLPASS_SECRET_KEY", testSecret, "ALLPASS_HMAC_KEY", testHMAC,
		"KYCSTATE_NATS_REPLICAS", "3", "KYCSTATE_INGEST_LISTEN", ":9090", "KYCSTATE_APPS_0_NAME", "renamed",
		"KYCSTATE_INGEST_QUEUE_WAIT", "750ms")
	cfg, err := loadConfig(path, getenv, environ)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NATS.Replicas != 3 || cfg.Ingest.Listen != ":9090" || cfg.Apps[0].Name != "renamed" ||
		time.Duration(cfg.Ingest.QueueWait) != 750*time.Millisecond {
		t.Fatalf("env overrides not applied: %+v", cfg)
	}
	r, err := resolveConfig(cfg, getenv, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if r.Tokens[0].Secret != "product-token-0123456789" || r.Tokens[1].Secret != "audit-token-0123456789" {
		t.Fatalf("tokens not resolved")
	}
	if len(r.Apps) != 1 || len(r.Apps[0].Keys) != 1 || len(r.Apps[0].Keys[0].HMAC) != 32 {
		t.Fatalf("app not resolved: %+v", r.Apps)
	}
}

// TestConfigQueueWaitDefault: with no key, the queue wait is ingest's default.
func TestConfigQueueWaitDefault(t *testing.T) {
	getenv, environ := envFunc()
	cfg, err := loadConfig("", getenv, environ)
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(cfg.Ingest.QueueWait) != ingest.DefaultQueueWait {
		t.Fatalf("queue_wait %s, want %s", time.Duration(cfg.Ingest.QueueWait), ingest.DefaultQueueWait)
	}
}

// TestConfigTimeWindowDefault: with no key, the trusted time window is DESIGN.md section
// 15's: 5m of clock skew, 7 days of age.
func TestConfigTimeWindowDefault(t *testing.T) {
	getenv, environ := envFunc()
	cfg, err := loadConfig("", getenv, environ)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Ingest.times(); got.MaxClockSkew != 5*time.Minute || got.MaxEventAge != 168*time.Hour {
		t.Fatalf("max_clock_skew %s, max_event_age %s; want 5m and 168h", got.MaxClockSkew, got.MaxEventAge)
	}
}

func TestConfigErrorsNameKeyNotSecret(t *testing.T) {
	const leaked = "not-a-key-but-a-secret-value-SHOULD-NOT-APPEAR"
	cases := []struct {
		name, yaml string
		env        []string
		wantKey    string
	}{
		{"bad secret", "apps: [{name: a, app_key: 71f2c0c6-c720-423b-8df0-7763102ad57e, secret_key: " + leaked + ", hmac_key: " + testHMAC + "}]", nil, "apps[0] (a).secret_key"},
		{"bad hmac", "apps: [{name: a, app_key: 71f2c0c6-c720-423b-8df0-7763102ad57e, secret_key: " + testSecret + ", hmac_key: " + leaked + "}]", nil, "hmac_key"},
		{"missing env", "apps: [{name: a, app_key: 71f2c0c6-c720-423b-8df0-7763102ad57e, secret_key: env:NOPE, hmac_key: x}]", nil, "NOPE"},
		{"bad app key", "apps: [{name: a, app_key: " + leaked + ", secret_key: " + testSecret + ", hmac_key: " + testHMAC + "}]", nil, "app_key"},
		{"bad method", "apps: [{name: a, app_key: 71f2c0c6-c720-423b-8df0-7763102ad57e, method: rot13, secret_key: " + testSecret + ", hmac_key: " + testHMAC + "}]", nil, "method"},
		{"bad role", "api: {tokens: [{name: x, role: root, token: " + leaked + "}]}", nil, "role"},
		{"short token", "api: {tokens: [{name: x, role: reader, token: short}]}", nil, "api.tokens[0].token"},
		{"replicas", "nats: {replicas: 9}", nil, "nats.replicas"},
		{"queue wait", "ingest: {queue_wait: 0s}", nil, "ingest.queue_wait"},
		{"append timeout zero", "ingest: {append_timeout: 0s}", nil, "ingest.append_timeout"},
		{"append timeout past the write timeout", "ingest: {append_timeout: 1h}", nil, "ingest.append_timeout"},
		{"append timeout with queue wait", "ingest: {append_timeout: 10s, queue_wait: 15s}", nil, "ingest.append_timeout"},
		{"queue wait env", "", []string{"KYCSTATE_INGEST_QUEUE_WAIT", "1h"}, "ingest.queue_wait"},
		{"read timeout zero", "ingest: {read_timeout: 0s}", nil, "ingest.read_timeout"},
		{"read timeout past the write timeout", "ingest: {read_timeout: 30s}", nil, "ingest.read_timeout"},
		{"conns per source negative", "ingest: {max_conns_per_source: -1}", nil, "ingest.max_conns_per_source"},
		{"clock skew zero", "ingest: {max_clock_skew: 0s}", nil, "ingest.max_clock_skew"},
		{"event age negative", "", []string{"KYCSTATE_INGEST_MAX_EVENT_AGE", "-1h"}, "ingest.max_event_age"},
		{"duplicate window under a second", "nats: {duplicate_window: 500ms}", nil, "nats.duplicate_window"},
		{"unknown key", "natz: {}", nil, "natz"},
		{"not a mapping", "just words", nil, "line 1: the file must be a mapping of keys"},
		{"unknown nested key by its path", "ingest: {listen: ':1', bogus_key: 1}", nil, "line 1: unknown key ingest.bogus_key"},
		{"unknown key in a list by its path", "apps: [{name: a, open_api: {privat_key: y}}]", nil, "unknown key apps[0].open_api.privat_key"},
		{"unknown token key by its path", "api:\n  tokens:\n    - {name: a, rol: reader}", nil, "line 3: unknown key api.tokens[0].rol"},
		{"env typo", "", []string{"KYCSTATE_NATS_URLS", "x"}, "KYCSTATE_NATS_URLS"},
		{"env type", "", []string{"KYCSTATE_NATS_REPLICAS", "three"}, "KYCSTATE_NATS_REPLICAS"},
		{"open_api unknown key", "apps: [{name: a, app_key: 71f2c0c6-c720-423b-8df0-7763102ad57e, secret_key: " + testSecret + ", hmac_key: " + testHMAC + ", open_api: {base_url: 'https://x', privat_key: y}}]", nil, "privat_key"},
		{"open_api bad url", "apps: [{name: a, app_key: 71f2c0c6-c720-423b-8df0-7763102ad57e, secret_key: " + testSecret + ", hmac_key: " + testHMAC + ", open_api: {base_url: 'ftp://x', private_key: " + leaked + "}}]", nil, "apps[0] (a).open_api.base_url"},
		{"open_api without key", "apps: [{name: a, app_key: 71f2c0c6-c720-423b-8df0-7763102ad57e, secret_key: " + testSecret + ", hmac_key: " + testHMAC + ", open_api: {base_url: 'https://x'}}]", nil, "open_api.private_key"},
		{"open_api key env unset", "apps: [{name: a, app_key: 71f2c0c6-c720-423b-8df0-7763102ad57e, secret_key: " + testSecret + ", hmac_key: " + testHMAC + ", open_api: {base_url: 'https://x', private_key: 'env:NO_SUCH_KEY'}}]", nil, "NO_SUCH_KEY"},
		{"snapshot every negative", "projection: {snapshot_every: -1h}", nil, "projection.snapshot_every"},
		{"snapshot every too short", "projection: {snapshot_every: 10ms}", nil, "projection.snapshot_every"},
		{"snapshots keep zero", "projection: {snapshots_keep: 0}", nil, "projection.snapshots_keep"},
		{"snapshots keep env", "", []string{"KYCSTATE_PROJECTION_SNAPSHOTS_KEEP", "-2"}, "projection.snapshots_keep"},
		{"reconcile unknown key", "reconcile: {evry: 1m}", nil, "evry"},
		{"reconcile rate", "reconcile: {rate: 0}", nil, "reconcile.rate"},
		{"reconcile negative every", "reconcile: {every: -1m}", nil, "reconcile.every"},
		{"reconcile env typo", "", []string{"KYCSTATE_RECONCILE_RATES", "5"}, "KYCSTATE_RECONCILE_RATES"},
		{"reconcile env type", "", []string{"KYCSTATE_RECONCILE_RATE", "fast"}, "KYCSTATE_RECONCILE_RATE"},
		{"yaml secret in syntax error", "apps: [{secret_key: [" + leaked, nil, "config"},
		{"yaml type by its key", "data_dir: x\ningest: { max_body: abc }", nil, "line 2: ingest.max_body"},
		{"yaml list type by its key", "api: { tokens: 5 }", nil, "line 1: api.tokens"},
		{"yaml quoted type by its key", `nats: { replicas: "three" }`, nil, "line 1: nats.replicas"},
		{"yaml quoted secret in a type error", `nats: { replicas: "` + leaked + `" }`, nil, "line 1: nats.replicas"},
		{"yaml duration by its key", "data_dir: x\ningest: { queue_wait: banana }", nil, "line 2: ingest.queue_wait"},
		{"yaml secret in a duration", "ingest:\n  queue_wait: " + leaked, nil, "line 2: ingest.queue_wait"},
		{"yaml duration in a list by its path", "apps:\n  - name: a\n    open_api: { timeout: banana }", nil, "line 3: apps[0].open_api.timeout"},
		{"bad trusted proxy", "api: {trusted_proxies: ['10.0.0.0/8', '10.0.0.0/33']}", nil, "api.trusted_proxies[1]"},
		{"trusted proxy by name", "api: {trusted_proxies: [proxy.internal]}", nil, "api.trusted_proxies[0]"},
		{"bad trusted proxy env", "", []string{"KYCSTATE_API_TRUSTED_PROXIES", "10.0.0.0/8,garbage"}, "api.trusted_proxies[1]"},
		{"bad session key", "api: {console: {session_key: " + leaked + "}}", nil, "api.console.session_key"},
		{"short session key", "api: {console: {session_key: " + testSecret[:62] + "}}", nil, "api.console.session_key"},
		{"session key env unset", "api: {console: {session_key: 'env:NO_SESSION_KEY'}}", nil, "NO_SESSION_KEY"},
		{"nats password env unset", "nats: {user: u, password: 'env:NO_NATS_PASSWORD'}", nil, "nats.password"},
		{"nats password file missing", "nats: {user: u, password: 'file:/nonexistent/nats-password'}", nil, "nats.password"},
		{"nats tls unknown key by its path", "nats: {tls: {crt: /c.pem}}", nil, "unknown key nats.tls.crt"},
		{"nats tls env typo", "", []string{"KYCSTATE_NATS_TLS_CERTIFICATE", "x"}, "KYCSTATE_NATS_TLS_CERTIFICATE"},
		{"env list of apps without index", "", []string{"KYCSTATE_APPS", "x"}, "KYCSTATE_APPS_0_NAME"},
		{"env list of tokens without index", "", []string{"KYCSTATE_API_TOKENS", "x"}, "KYCSTATE_API_TOKENS_0_NAME"},
		{"env list of previous keys without index", "", []string{"KYCSTATE_APPS_0_PREVIOUS_KEYS", leaked}, "KYCSTATE_APPS_0_PREVIOUS_KEYS_0_SECRET_KEY"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, "c.yaml", c.yaml)
			getenv, environ := envFunc(c.env...)
			cfg, err := loadConfig(path, getenv, environ)
			if err == nil {
				_, err = resolveConfig(cfg, getenv, false, false)
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.wantKey) {
				t.Errorf("error %q does not name %q", err, c.wantKey)
			}
			if strings.Contains(err.Error(), leaked) {
				t.Errorf("error echoes the secret: %q", err)
			}
		})
	}
}

// apps[].open_api and reconcile: read from YAML, every key overridable by KYCSTATE_*,
// defaults from the reconcile package, the private key resolved like every secret.
func TestConfigReconcile(t *testing.T) {
	yml := goodYAML + `    open_api:
      base_url: "https://api.example"
      private_key: "env:ALLPASS_PRIVATE_KEY"
reconcile: { every: 0, rate: 2.5 }
`
	tokenFile := writeFile(t, "audit", "audit-token-0123456789\n")
	path := writeFile(t, "c.yaml", strings.ReplaceAll(yml, "TOKENFILE", tokenFile))
	getenv, environ := envFunc("KYCSTATE_PRODUCT_TOKEN", "product-token-0123456789",
		"ALLPASS_SECRET_KEY", testSecret, "ALLPASS_HMAC_KEY", testHMAC, "ALLPASS_PRIVATE_KEY", "the-private-key",
		"KYCSTATE_APPS_0_OPEN_API_TIMEOUT", "3s", "KYCSTATE_RECONCILE_STALE_AFTER", "2h")
	cfg, err := loadConfig(path, getenv, environ)
	if err != nil {
		t.Fatal(err)
	}
	r, err := resolveConfig(cfg, getenv, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.OpenAPIs) != 1 || r.OpenAPIs[0].OpenAPI.PrivateKey != "the-private-key" ||
		r.OpenAPIs[0].OpenAPI.Timeout != 3*time.Second || r.OpenAPIs[0].App != r.Apps[0] {
		t.Fatalf("open_api: %+v", r.OpenAPIs)
	}
	rc := reconcileConfig(r)
	if rc.Every != 0 || rc.Rate != 2.5 || rc.StaleAfter != 2*time.Hour || rc.FullEvery != reconcile.DefaultFullEvery {
		t.Fatalf("reconcile: %+v", rc)
	}
	// Defaults: section 10's.
	d := defaultConfig().Reconcile
	if time.Duration(d.Every) != 15*time.Minute || time.Duration(d.StaleAfter) != time.Hour ||
		time.Duration(d.FullEvery) != 24*time.Hour || d.Rate != 5 {
		t.Fatalf("defaults %+v", d)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := Secret("hunter2-hunter2-hunter2")
	for _, got := range []string{s.String(), strings.TrimSpace(fmtV(s))} {
		if strings.Contains(got, "hunter2") {
			t.Fatalf("secret printed: %q", got)
		}
	}
}

func fmtV(v any) string { return fmt.Sprintf("%v %+v %#v", v, v, v) }

// The NATS credentials: a password resolved like every secret, and, with nats.url set and
// nothing configured, the seed serve made for its listener under data_dir.
func TestConfigNATSCredentials(t *testing.T) {
	dir := t.TempDir()
	pwFile := writeFile(t, "nats-password", "pw-from-a-file\n")
	getenv, environ := envFunc("KYCSTATE_NATS_USER", "query", "KYCSTATE_NATS_PASSWORD", "file:"+pwFile,
		"KYCSTATE_NATS_URL", "nats://a:4222,nats://b:4222", "KYCSTATE_DATA_DIR", dir,
		"KYCSTATE_NATS_TLS_CA", "/ca.pem")
	cfg, err := loadConfig("", getenv, environ)
	if err != nil {
		t.Fatal(err)
	}
	r, err := resolveConfig(cfg, getenv, false, false)
	if err != nil {
		t.Fatal(err)
	}
	nc := natsConfig(r, "query")
	if nc.User != "query" || nc.Password != "pw-from-a-file" || nc.TLS.CA != "/ca.pem" || nc.Credentials != "" {
		t.Fatalf("user %q, password read %v, ca %q, credentials %q", nc.User, nc.Password == "pw-from-a-file", nc.TLS.CA, nc.Credentials)
	}
	if want := filepath.Join(dir, natsSeedName); nc.ListenSeed != want {
		t.Errorf("listener seed %q, want %q", nc.ListenSeed, want)
	}

	seed := filepath.Join(dir, natsSeedName)
	for _, c := range []struct {
		name     string
		env      []string
		seedFile bool
		want     string
	}{
		{"url, nothing configured, no seed file", []string{"KYCSTATE_NATS_URL", "nats://h:1"}, false, ""},
		{"url, nothing configured, seed file", []string{"KYCSTATE_NATS_URL", "nats://h:1"}, true, seed},
		{"url, credentials configured", []string{"KYCSTATE_NATS_URL", "nats://h:1", "KYCSTATE_NATS_CREDENTIALS", "/x.creds"}, true, "/x.creds"},
		{"url, user configured", []string{"KYCSTATE_NATS_URL", "nats://h:1", "KYCSTATE_NATS_USER", "u", "KYCSTATE_NATS_PASSWORD", "p"}, true, ""},
		{"embedded", nil, true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			os.Remove(seed)
			if c.seedFile {
				if err := os.WriteFile(seed, []byte("SU...\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			getenv, environ := envFunc(append(c.env, "KYCSTATE_DATA_DIR", dir)...)
			cfg, err := loadConfig("", getenv, environ)
			if err != nil {
				t.Fatal(err)
			}
			r, err := resolveConfig(cfg, getenv, false, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := natsConfig(r, "ops").Credentials; got != c.want {
				t.Errorf("credentials %q, want %q", got, c.want)
			}
		})
	}
}
