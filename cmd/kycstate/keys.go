package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/kycstate/kycstate/store/eventlog"
)

// devMasterKeyName is the development master key serve generates under data_dir when
// keys.master is not set.
const devMasterKeyName = "master.key"

// errNoMasterKey is what ingest and query nodes, and commands that write the log, say
// without keys.master.
func errNoMasterKey(who string) error {
	return cfgErr("keys.master", "must be set for %s: 32 bytes as 64 hex characters or base64, given literally, as env:NAME or as file:PATH (kycstate keygen prints one); every node of a cluster needs the same key", who)
}

// useDevMasterKey gives r the development master key under data_dir, generating it on
// first use, and says so: serve without keys.master runs, as in development mode, with
// a key kept beside the data it protects.
func useDevMasterKey(e *env, r *Resolved) error {
	path := filepath.Join(r.DataDir, devMasterKeyName)
	created, err := loadOrCreateMasterKey(r, path, true)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(e.stderr, "kycstate: keys.master is not set: generated a development master key in %s (keep it: without it the personal data in this data_dir cannot be read). Set keys.master for production.\n", path)
	} else {
		fmt.Fprintf(e.stderr, "kycstate: keys.master is not set: using the development master key in %s\n", path)
	}
	return nil
}

// loadOrCreateMasterKey reads the key at path into r.Keys; with create, it writes a new
// one when there is none. It reports whether it created one.
func loadOrCreateMasterKey(r *Resolved, path string, create bool) (bool, error) {
	b, err := os.ReadFile(path)
	created := false
	switch {
	case errors.Is(err, fs.ErrNotExist) && create:
		if err := os.MkdirAll(r.DataDir, 0o700); err != nil {
			return false, fmt.Errorf("data_dir: %w", err)
		}
		key := eventlog.NewMasterKeyHex()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(key+"\n"), 0o600); err != nil {
			return false, fmt.Errorf("keys.master: write %s: %w", path, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return false, fmt.Errorf("keys.master: write %s: %w", path, err)
		}
		b, created = []byte(key), true
	case err != nil:
		return false, fmt.Errorf("keys.master: read %s: %w", path, err)
	}
	m, err := eventlog.ParseMasterKey(strings.TrimSpace(string(b)))
	if err != nil {
		return false, cfgErr("keys.master", "%s: %v", path, err)
	}
	r.Keys = &eventlog.MasterKeys{Current: m}
	return created, nil
}

// consoleSessionKey is the key that signs console sessions: api.console.session_key
// when it is set, else one derived from keys.master, so that deployments without it keep
// their sessions valid across restarts and query nodes. Every node with the same key (and
// the same api.tokens, which the API binds it to) accepts the same sessions.
func consoleSessionKey(r *Resolved) []byte {
	if r.ConsoleSessionKey != nil {
		return r.ConsoleSessionKey
	}
	return r.Keys.Current.SessionKey()
}

// opsMasterKey gives an operations command the master key: keys.master, else the
// development key of a serve's data_dir if there is one. Without either, r.Keys stays
// nil: the log is read without opening personal data.
func opsMasterKey(r *Resolved) error {
	if r.Keys != nil {
		return nil
	}
	path := filepath.Join(r.DataDir, devMasterKeyName)
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	_, err := loadOrCreateMasterKey(r, path, false)
	return err
}

func cmdKeys(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "keys", `keys rewrap: after a rotation of keys.master (the new key in keys.master, the old one in
keys.previous), wraps every data key of KYC_KEYS that is wrapped under an old master key
under the new one, and securely deletes the old wrapping. Once it reports 0 left, the old
key can be removed from keys.previous. Safe to run on a running cluster (through nats.url)
and to run twice; offline, it works on a stopped serve's data dir.`+offlineNote)
	cfgPath := fs.String("config", "", "YAML config file")
	if len(args) == 0 || args[0] != "rewrap" {
		if len(args) > 0 && isHelp(args[0]) {
			fs.Usage()
			return nil
		}
		fs.Usage()
		return fmt.Errorf("%w: kycstate keys rewrap [--config FILE]", errUsage)
	}
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	o, err := openOps(ctx, e, *cfgPath, opsOptions{NeedKeys: true})
	if err != nil {
		return err
	}
	defer o.Close()
	n, err := o.events.Keys().Rewrap(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "rewrapped %d keys under master key id %s\n", n, o.r.Keys.Current.ID())
	return nil
}
