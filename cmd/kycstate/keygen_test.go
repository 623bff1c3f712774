package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/nats-io/nkeys"
)

// keygen --nats writes one private seed per identity of deploy/nats/nats-cluster.conf and
// prints the public keys the servers take; it never replaces an identity.
func TestKeygenNATS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	getenv, environ := envFunc()
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"keygen", "--nats", dir}, getenv, environ, nil, &stdout, &stderr); err != nil {
		t.Fatalf("keygen --nats: %v\n%s", err, stderr.String())
	}
	seeds := map[string][]byte{}
	for _, id := range []struct{ name, env string }{{"ingest", "NATS_INGEST_NKEY"}, {"query", "NATS_QUERY_NKEY"}, {"admin", "NATS_ADMIN_NKEY"}} {
		m := regexp.MustCompile(`(?m)^` + id.env + `=(\S+)$`).FindSubmatch(stdout.Bytes())
		if m == nil {
			t.Fatalf("no %s line in:\n%s", id.env, stdout.String())
		}
		path := filepath.Join(dir, "nats-"+id.name+".nk")
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", path, st.Mode().Perm())
		}
		raw, _ := os.ReadFile(path)
		seeds[id.name] = raw
		kp, err := nkeys.ParseDecoratedNKey(raw)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if pub, _ := kp.PublicKey(); pub != string(m[1]) || !nkeys.IsValidPublicUserKey(pub) {
			t.Errorf("%s prints %s, but its seed's user key is %s", id.env, m[1], pub)
		}
		if bytes.Contains(stdout.Bytes(), bytes.TrimSpace(raw)) {
			t.Errorf("keygen printed the %s seed", id.name)
		}
	}
	if !regexp.MustCompile(`(?m)^NATS_CLUSTER_PASSWORD=[0-9a-f]{48}$`).Match(stdout.Bytes()) {
		t.Errorf("no NATS_CLUSTER_PASSWORD of 48 hex characters in:\n%s", stdout.String())
	}
	if bytes.Equal(seeds["ingest"], seeds["query"]) || bytes.Equal(seeds["query"], seeds["admin"]) {
		t.Error("two identities share a seed")
	}

	// Again into the same directory: refused, nothing replaced.
	stdout.Reset()
	err := run(t.Context(), []string{"keygen", "--nats", dir}, getenv, environ, nil, &stdout, &stderr)
	if err == nil {
		t.Fatal("keygen --nats replaced existing identities")
	}
	for name, want := range seeds {
		if got, _ := os.ReadFile(filepath.Join(dir, "nats-"+name+".nk")); !bytes.Equal(got, want) {
			t.Errorf("the %s seed changed", name)
		}
	}
}
