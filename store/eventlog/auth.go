package eventlog

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Who may reach the log (DESIGN.md section 15, "Only kycstate writes the log"): a client of
// an external NATS proves who it is with the credentials its configuration names, and the
// embedded server, once it listens on a port, admits only clients that present the nkey
// it made for itself. Errors name the configuration key that is wrong and never the
// secret: a seed, a password or a private key is read, checked and handed to the NATS
// client, never formatted into a message.

// TLSFiles are the PEM files of nats.tls.
type TLSFiles struct {
	// CA (nats.tls.ca) verifies the server's certificate; empty: the system's roots.
	CA string
	// Cert and Key (nats.tls.cert, nats.tls.key) are the client certificate, for a
	// server that verifies its clients; both or neither.
	Cert, Key string
}

func (f TLSFiles) set() bool { return f.CA != "" || f.Cert != "" || f.Key != "" }

// credsMarker opens the user JWT of a creds file; a file without it is taken as a bare
// nkey seed.
var credsMarker = []byte("-----BEGIN NATS USER JWT-----")

// authOptions checks the credentials and TLS files cfg names and returns the client
// options that present them. The files are read again by the NATS client on every
// (re)connect, so a rotated file takes effect without a restart.
func authOptions(cfg NATSConfig) ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case cfg.Credentials != "" && (cfg.User != "" || cfg.Password != ""):
		return nil, errors.New("nats.credentials and nats.user/nats.password: give one way to authenticate, not both")
	case cfg.Credentials != "":
		opt, err := credentialsOption(cfg.Credentials)
		if err != nil {
			return nil, err
		}
		opts = append(opts, opt)
	case cfg.User != "" && cfg.Password == "":
		return nil, errors.New("nats.password: not set, but nats.user is")
	case cfg.User == "" && cfg.Password != "":
		return nil, errors.New("nats.user: not set, but nats.password is")
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	if cfg.TLS.set() {
		tlsOpts, err := tlsOptions(cfg.TLS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, tlsOpts...)
	}
	return opts, nil
}

// credentialsOption reads path, a creds file (user JWT and seed) or an nkey user seed.
func credentialsOption(path string) (nats.Option, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("nats.credentials: %w", err)
	}
	defer wipe(raw)
	kp, err := nkeys.ParseDecoratedNKey(raw)
	if err != nil {
		// nkeys' messages name the format, never the bytes.
		return nil, fmt.Errorf("nats.credentials: %s is neither a creds file nor an nkey seed file: %w", path, err)
	}
	pub, err := kp.PublicKey()
	kp.Wipe()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return nil, fmt.Errorf("nats.credentials: %s does not hold a user seed (SU...)", path)
	}
	if bytes.Contains(raw, credsMarker) {
		return nats.UserCredentials(path), nil
	}
	opt, err := nats.NkeyOptionFromSeed(path)
	if err != nil {
		return nil, fmt.Errorf("nats.credentials: %s: %w", path, err)
	}
	return opt, nil
}

func tlsOptions(f TLSFiles) ([]nats.Option, error) {
	var opts []nats.Option
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("nats.tls.ca: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("nats.tls.ca: %s holds no PEM certificate", f.CA)
		}
		opts = append(opts, nats.RootCAs(f.CA))
	}
	switch {
	case f.Cert != "" && f.Key == "":
		return nil, errors.New("nats.tls.key: not set, but nats.tls.cert is")
	case f.Cert == "" && f.Key != "":
		return nil, errors.New("nats.tls.cert: not set, but nats.tls.key is")
	case f.Cert != "":
		if _, err := tls.LoadX509KeyPair(f.Cert, f.Key); err != nil {
			// crypto/tls names what is wrong with the PEM, not its contents.
			return nil, fmt.Errorf("nats.tls.cert, nats.tls.key: %w", err)
		}
		opts = append(opts, nats.ClientCert(f.Cert, f.Key))
	}
	return opts, nil
}

// listenIdentity returns the nkey pair of the embedded server's listener, reading its
// seed from path or, the first time, making one and writing it there (mode 0600, written
// whole or not at all). The server admits only clients that sign its challenge with this
// key: the seed never crosses the network (an nkey answers a nonce), so a neighbour who
// watches the plaintext port cannot learn it.
func listenIdentity(path string) (nkeys.KeyPair, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return makeListenIdentity(path)
	}
	if err != nil {
		return nil, fmt.Errorf("nats listener credentials: %w", err)
	}
	defer wipe(raw)
	kp, err := nkeys.ParseDecoratedNKey(raw)
	if err != nil {
		return nil, fmt.Errorf("nats listener credentials %s: not an nkey seed (remove it to make a new one): %w", path, err)
	}
	if pub, err := kp.PublicKey(); err != nil || !nkeys.IsValidPublicUserKey(pub) {
		kp.Wipe()
		return nil, fmt.Errorf("nats listener credentials %s: not a user seed (remove it to make a new one)", path)
	}
	return kp, nil
}

func makeListenIdentity(path string) (nkeys.KeyPair, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("nats listener credentials: %w", err)
	}
	// Seed returns the pair's own bytes: they are copied, and only the copy is wiped.
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("nats listener credentials: %w", err)
	}
	line := append(append(make([]byte, 0, len(seed)+1), seed...), '\n')
	defer wipe(line)
	fail := func(err error) (nkeys.KeyPair, error) {
		kp.Wipe()
		return nil, fmt.Errorf("nats listener credentials: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	tmp, err := os.CreateTemp(dir, ".nats-seed-*")
	if err != nil {
		return fail(err)
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing left to remove
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fail(err)
	}
	_, err = tmp.Write(line)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	// One process makes it: the embedded server runs in the process that holds the data
	// dir's lock.
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fail(err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the new name survives a crash
		d.Close()
	}
	return kp, nil
}

func wipe(b []byte) {
	for i := range b {
		b[i] = 'x'
	}
}
