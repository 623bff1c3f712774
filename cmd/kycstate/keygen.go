package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nkeys"
)

func cmdKeygen(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "keygen", `Prints a fresh app key, AES-256 secret key, HMAC key, three API tokens, a console session
key and a master key (keys.master), as YAML to paste into a config.

With --nats DIR it makes the NATS identities of deploy/nats/nats-cluster.conf instead: an
nkey seed per identity in DIR/nats-ingest.nk, nats-query.nk and nats-admin.nk (mode 0600;
a node presents its file as nats.credentials), and prints their public keys as the
NATS_*_NKEY lines the servers' environment takes (deploy/compose.env), with a fresh
NATS_CLUSTER_PASSWORD for the servers' routes. It never overwrites a seed.`)
	natsDir := fs.String("nats", "", "make the NATS identities' seeds in this directory")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *natsDir != "" {
		return keygenNATS(e, *natsDir)
	}
	fmt.Fprintf(e.stdout, `apps:
  - name: main
    app_key: %s
    method: aes-256-cbc
    secret_key: %s
    hmac_key: %s
api:
  tokens:
    - { name: product, role: reader, token: %s }
    - { name: audit, role: auditor, token: %s }
    - { name: dpo, role: admin, token: %s }
  console:
    # Signs console sessions; every query node behind one balancer needs the same.
    session_key: %s
keys:
  # Wraps every applicant's data key (DESIGN.md section 11). Keep it apart from the data:
  # without it no personal data in the log can be read; with it and the log, all of it.
  master: %s
`, domain.NewUUID(), randHex(32), randHex(32), randHex(24), randHex(24), randHex(24), randHex(32), randHex(32))
	return nil
}

// keygenNATS writes a seed file per identity into dir and prints the public keys. A seed
// already there is an identity a cluster may be using: keygen refuses before writing any.
func keygenNATS(e *env, dir string) error {
	// The users of deploy/nats/nats-cluster.conf, each with the variable that gives the
	// servers its public nkey.
	natsIdentities := []struct{ name, env string }{
		{"ingest", "NATS_INGEST_NKEY"},
		{"query", "NATS_QUERY_NKEY"},
		{"admin", "NATS_ADMIN_NKEY"},
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keygen --nats: %w", err)
	}
	path := func(name string) string { return filepath.Join(dir, "nats-"+name+".nk") }
	for _, id := range natsIdentities {
		if _, err := os.Stat(path(id.name)); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("keygen --nats: %s exists; remove it to replace that identity (and update %s on every NATS server)", path(id.name), id.env)
		}
	}
	fmt.Fprintf(e.stdout, "# NATS identities (deploy/nats/nats-cluster.conf): public keys for the servers'\n# environment; the seeds are in %s.\n", dir)
	for _, id := range natsIdentities {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return fmt.Errorf("keygen --nats: %w", err)
		}
		pub, _ := kp.PublicKey()
		seed, _ := kp.Seed()
		f, err := os.OpenFile(path(id.name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			_, err = f.Write(append(seed, '\n'))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		kp.Wipe()
		if err != nil {
			return fmt.Errorf("keygen --nats: %w", err)
		}
		fmt.Fprintf(e.stdout, "%s=%s\n", id.env, pub)
	}
	fmt.Fprintf(e.stdout, "# The routes' password, the same on the three servers (a secret).\nNATS_CLUSTER_PASSWORD=%s\n", randHex(24))
	return nil
}
