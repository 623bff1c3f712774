package main

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestConfigContractKeysYAMLAndEnv: every key DESIGN.md section 8 names is read from the
// YAML file under exactly that name, and its KYCSTATE_* variable sets the same value.
func TestConfigContractKeysYAMLAndEnv(t *testing.T) {
	cases := []struct{ key, yaml, env, val string }{
		{"data_dir", "data_dir: /x", "KYCSTATE_DATA_DIR", "/x"},
		{"nats.url", "nats: {url: 'nats://h:1'}", "KYCSTATE_NATS_URL", "nats://h:1"},
		{"nats.replicas", "nats: {replicas: 3}", "KYCSTATE_NATS_REPLICAS", "3"},
		{"ingest.listen", "ingest: {listen: ':1'}", "KYCSTATE_INGEST_LISTEN", ":1"},
		{"ingest.queue_wait", "ingest: {queue_wait: 3s}", "KYCSTATE_INGEST_QUEUE_WAIT", "3s"},
		{"ingest.max_in_flight", "ingest: {max_in_flight: 7}", "KYCSTATE_INGEST_MAX_IN_FLIGHT", "7"},
		{"ingest.read_timeout", "ingest: {read_timeout: 3s}", "KYCSTATE_INGEST_READ_TIMEOUT", "3s"},
		{"ingest.max_conns_per_source", "ingest: {max_conns_per_source: 9}", "KYCSTATE_INGEST_MAX_CONNS_PER_SOURCE", "9"},
		{"ingest.max_clock_skew", "ingest: {max_clock_skew: 90s}", "KYCSTATE_INGEST_MAX_CLOCK_SKEW", "90s"},
		{"ingest.max_event_age", "ingest: {max_event_age: 72h}", "KYCSTATE_INGEST_MAX_EVENT_AGE", "72h"},
		{"nats.duplicate_window", "nats: {duplicate_window: 2s}", "KYCSTATE_NATS_DUPLICATE_WINDOW", "2s"},
		{"api.listen", "api: {listen: ':2'}", "KYCSTATE_API_LISTEN", ":2"},
		{"api.tokens[].name", "api: {tokens: [{name: n}]}", "KYCSTATE_API_TOKENS_0_NAME", "n"},
		{"api.tokens[].role", "api: {tokens: [{role: auditor}]}", "KYCSTATE_API_TOKENS_0_ROLE", "auditor"},
		{"api.tokens[].token", "api: {tokens: [{token: 'env:T'}]}", "KYCSTATE_API_TOKENS_0_TOKEN", "env:T"},
		{"apps[].name", "apps: [{name: a}]", "KYCSTATE_APPS_0_NAME", "a"},
		{"apps[].app_key", "apps: [{app_key: 71f2c0c6-c720-423b-8df0-7763102ad57e}]", "KYCSTATE_APPS_0_APP_KEY", "71f2c0c6-c720-423b-8df0-7763102ad57e"},
		{"apps[].method", "apps: [{method: aes-256-gcm}]", "KYCSTATE_APPS_0_METHOD", "aes-256-gcm"},
		{"apps[].secret_key", "apps: [{secret_key: 'file:/s'}]", "KYCSTATE_APPS_0_SECRET_KEY", "file:/s"},
		{"apps[].hmac_key", "apps: [{hmac_key: 'env:H'}]", "KYCSTATE_APPS_0_HMAC_KEY", "env:H"},
		{"apps[].open_api.base_url", "apps: [{open_api: {base_url: 'http://o'}}]", "KYCSTATE_APPS_0_OPEN_API_BASE_URL", "http://o"},
		{"apps[].open_api.private_key", "apps: [{open_api: {private_key: 'env:P'}}]", "KYCSTATE_APPS_0_OPEN_API_PRIVATE_KEY", "env:P"},
		{"apps[].open_api.timeout", "apps: [{open_api: {timeout: 4s}}]", "KYCSTATE_APPS_0_OPEN_API_TIMEOUT", "4s"},
		{"reconcile.every", "reconcile: {every: 0s}", "KYCSTATE_RECONCILE_EVERY", "0s"},
		{"reconcile.stale_after", "reconcile: {stale_after: 2h}", "KYCSTATE_RECONCILE_STALE_AFTER", "2h"},
		{"reconcile.full_every", "reconcile: {full_every: 48h}", "KYCSTATE_RECONCILE_FULL_EVERY", "48h"},
		{"reconcile.rate", "reconcile: {rate: 2.5}", "KYCSTATE_RECONCILE_RATE", "2.5"},
		{"keys.master", "keys: {master: 'env:M'}", "KYCSTATE_KEYS_MASTER", "env:M"},
		{"keys.previous", "keys: {previous: ['file:/p']}", "KYCSTATE_KEYS_PREVIOUS_0", "file:/p"},
		{"retention.erase_after", "retention: {erase_after: 43800h}", "KYCSTATE_RETENTION_ERASE_AFTER", "43800h"},
		{"nats.rejects_max_age", "nats: {rejects_max_age: 72h}", "KYCSTATE_NATS_REJECTS_MAX_AGE", "72h"},
		{"api.tokens[].role admin", "api: {tokens: [{role: admin}]}", "KYCSTATE_API_TOKENS_0_ROLE", "admin"},
		{"projection.snapshot_every", "projection: {snapshot_every: 1h}", "KYCSTATE_PROJECTION_SNAPSHOT_EVERY", "1h"},
		{"projection.snapshots_keep", "projection: {snapshots_keep: 5}", "KYCSTATE_PROJECTION_SNAPSHOTS_KEEP", "5"},
		{"projector.batch", "projector: {batch: 7}", "KYCSTATE_PROJECTOR_BATCH", "7"},
		{"projector.batch_wait", "projector: {batch_wait: 2ms}", "KYCSTATE_PROJECTOR_BATCH_WAIT", "2ms"},
		{"ingest.keep_raw", "ingest: {keep_raw: false}", "KYCSTATE_INGEST_KEEP_RAW", "false"},
		{"keys.previous as a list", "keys: {previous: ['file:/p', 'env:Q']}", "KYCSTATE_KEYS_PREVIOUS", "file:/p,env:Q"},
		{"api.trusted_proxies", "api: {trusted_proxies: ['10.0.0.0/8', 'fd00::/8']}", "KYCSTATE_API_TRUSTED_PROXIES", "10.0.0.0/8, fd00::/8"},
		{"api.console.session_key", "api: {console: {session_key: 'env:K'}}", "KYCSTATE_API_CONSOLE_SESSION_KEY", "env:K"},
		{"nats.credentials", "nats: {credentials: /run/secrets/nats.nk}", "KYCSTATE_NATS_CREDENTIALS", "/run/secrets/nats.nk"},
		{"nats.user", "nats: {user: ingest}", "KYCSTATE_NATS_USER", "ingest"},
		{"nats.password", "nats: {password: 'file:/run/secrets/nats'}", "KYCSTATE_NATS_PASSWORD", "file:/run/secrets/nats"},
		{"nats.tls.ca", "nats: {tls: {ca: /ca.pem}}", "KYCSTATE_NATS_TLS_CA", "/ca.pem"},
		{"nats.tls.cert", "nats: {tls: {cert: /c.pem}}", "KYCSTATE_NATS_TLS_CERT", "/c.pem"},
		{"nats.tls.key", "nats: {tls: {key: /k.pem}}", "KYCSTATE_NATS_TLS_KEY", "/k.pem"},
		{"apps[].previous_keys[].secret_key", "apps: [{previous_keys: [{secret_key: 'env:S'}]}]", "KYCSTATE_APPS_0_PREVIOUS_KEYS_0_SECRET_KEY", "env:S"},
	}
	getenv, environ := envFunc()
	defaults, err := loadConfig("", getenv, environ)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.key, func(t *testing.T) {
			getenv, environ := envFunc()
			fromYAML, err := loadConfig(writeFile(t, "c.yaml", c.yaml), getenv, environ)
			if err != nil {
				t.Fatalf("yaml %q: %v", c.yaml, err)
			}
			getenv, environ = envFunc(c.env, c.val)
			fromEnv, err := loadConfig("", getenv, environ)
			if err != nil {
				t.Fatalf("%s=%s: %v", c.env, c.val, err)
			}
			if reflect.DeepEqual(fromYAML, defaults) {
				t.Fatalf("yaml %q changed nothing", c.yaml)
			}
			if !reflect.DeepEqual(fromYAML, fromEnv) {
				t.Fatalf("%s=%s gives\n%+v\nbut yaml %q gives\n%+v", c.env, c.val, fromEnv, c.yaml, fromYAML)
			}
		})
	}
}

// TestConfigEnvSetsEveryKey: every leaf of Config, found by walking its type, can be set
// from its KYCSTATE_* variable, so a key added later cannot lose its override.
func TestConfigEnvSetsEveryKey(t *testing.T) {
	getenv, environ := envFunc()
	defaults, err := loadConfig("", getenv, environ)
	if err != nil {
		t.Fatal(err)
	}
	var walk func(t reflect.Type, name string, visit func(name, val string))
	walk = func(t reflect.Type, name string, visit func(name, val string)) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch {
		case t == reflect.TypeFor[Duration]():
			visit(name, "3s")
		case t.Kind() == reflect.Struct:
			for i := range t.NumField() {
				key := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
				walk(t.Field(i).Type, name+"_"+strings.ToUpper(key), visit)
			}
		case t.Kind() == reflect.Slice:
			if t.Elem().Kind() == reflect.String {
				visit(name, "a,b")
			}
			walk(t.Elem(), name+"_0", visit)
		case t.Kind() == reflect.String:
			visit(name, "x")
		case t.Kind() == reflect.Bool:
			visit(name, "false")
		case t.Kind() == reflect.Float64:
			visit(name, "2.5")
		default:
			visit(name, "17") // no int key's default (projection.snapshots_keep's is 3)
		}
	}
	n := 0
	walk(reflect.TypeFor[Config](), "KYCSTATE", func(name, val string) {
		n++
		t.Run(name, func(t *testing.T) {
			getenv, environ := envFunc(name, val)
			cfg, err := loadConfig("", getenv, environ)
			if err != nil {
				t.Fatalf("%s=%s: %v", name, val, err)
			}
			if reflect.DeepEqual(cfg, defaults) {
				t.Fatalf("%s=%s changed nothing", name, val)
			}
		})
	})
	if n < 40 {
		t.Fatalf("walked only %d keys", n)
	}
}

// TestConfigEnvIndexGap: an element that only fills the room up to a variable's index, and
// that no variable sets, is refused by the variable that made it, naming the index that
// comes next, whatever the order of the environment.
func TestConfigEnvIndexGap(t *testing.T) {
	oneApp := "apps: [{name: a}]"
	cases := []struct {
		name, yaml string
		env        []string
		want       []string // substrings of the error; none: accepted
	}{
		{"past the file's list", oneApp, []string{"KYCSTATE_APPS_5_NAME=x"}, []string{"KYCSTATE_APPS_5_NAME", "next index is 1"}},
		{"past an empty list", "", []string{"KYCSTATE_API_TOKENS_1_NAME=x"}, []string{"KYCSTATE_API_TOKENS_1_NAME", "next index is 0"}},
		{"nested", oneApp, []string{"KYCSTATE_APPS_0_PREVIOUS_KEYS_2_SECRET_KEY=x"}, []string{"KYCSTATE_APPS_0_PREVIOUS_KEYS_2_SECRET_KEY", "next index is 0"}},
		{"partly filled", oneApp, []string{"KYCSTATE_APPS_4_NAME=x", "KYCSTATE_APPS_1_NAME=y"}, []string{"KYCSTATE_APPS_4_NAME", "next index is 2"}},
		{"after a whole list", "", []string{"KYCSTATE_KEYS_PREVIOUS_3=c", "KYCSTATE_KEYS_PREVIOUS=a,b"}, []string{"KYCSTATE_KEYS_PREVIOUS_3", "next index is 2"}},
		{"filled later", oneApp, []string{"KYCSTATE_APPS_2_NAME=x", "KYCSTATE_APPS_1_NAME=y"}, nil},
		{"extends a whole list", "", []string{"KYCSTATE_KEYS_PREVIOUS_2=c", "KYCSTATE_KEYS_PREVIOUS=a,b"}, nil},
	}
	for _, c := range cases {
		for _, reverse := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/reverse=%v", c.name, reverse), func(t *testing.T) {
				environ := append([]string(nil), c.env...)
				if reverse {
					slices.Reverse(environ)
				}
				_, err := loadConfig(writeFile(t, "c.yaml", c.yaml), func(string) string { return "" }, environ)
				if c.want == nil {
					if err != nil {
						t.Fatal(err)
					}
					return
				}
				if err == nil {
					t.Fatal("accepted")
				}
				for _, w := range c.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
			})
		}
	}
}

// TestConfigEnvList: a list of strings without an index is read comma-separated and
// replaces the file's list; an index then sets one element of the result.
func TestConfigEnvList(t *testing.T) {
	path := writeFile(t, "c.yaml", "keys: {previous: ['env:OLD1', 'env:OLD2', 'env:OLD3']}")
	environ := []string{"KYCSTATE_KEYS_PREVIOUS_1=env:C", "KYCSTATE_KEYS_PREVIOUS=env:A, env:B"}
	cfg, err := loadConfig(path, func(string) string { return "" }, environ)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Secret{"env:A", "env:C"}; !slices.Equal(cfg.Keys.Previous, want) {
		t.Fatalf("keys.previous %q, want %q", cfg.Keys.Previous, want)
	}
}
