package eventlog

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"go.uber.org/zap"
)

// authServer starts a nats-server on a loopback port with opts (Host and Port are set
// here) and returns its client URL; the test's cleanup stops it.
func authServer(t *testing.T, opts *server.Options) string {
	t.Helper()
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.NoSigs, opts.NoLog = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	return fmt.Sprintf("nats://%s", ns.Addr().String())
}

// authConnect connects to url with cfg, a short timeout, and returns the connection or
// the error.
func authConnect(t *testing.T, url string, cfg NATSConfig) (*Conn, error) {
	t.Helper()
	cfg.URLs = []string{url}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 3 * time.Second
	}
	c, err := Connect(context.Background(), cfg, zap.NewNop())
	if err == nil {
		t.Cleanup(func() { _ = c.Close() })
	}
	return c, err
}

// authRefused asserts that err is a refused connection that names what refused it and
// leaks none of secrets.
func authRefused(t *testing.T, err error, want string, secrets ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("connection accepted")
	}
	if k := domain.KindOf(err); k != domain.KindUnavailable {
		t.Fatalf("kind %v (%v), want unavailable", k, err)
	}
	if !strings.Contains(strings.ToLower(err.Error()), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q holds a secret", err)
		}
	}
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newUserKey(t *testing.T) (pub string, seed []byte) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ = kp.PublicKey()
	seed, _ = kp.Seed()
	return pub, seed
}

// The embedded server's listener admits only the identity it made: not an anonymous
// client, not another nkey; its seed file is private, and kept across restarts.
func TestConnectEmbeddedListenerRequiresItsCredentials(t *testing.T) {
	dir := t.TempDir()
	seedPath := filepath.Join(dir, "auth", "nats-client.nk")
	listen := fmt.Sprintf("127.0.0.1:%d", natsFreePort(t))
	cfg := NATSConfig{StoreDir: filepath.Join(dir, "nats"), Listen: listen, ListenSeed: seedPath}
	srv := natsStart(t, cfg)

	// The in-process client authenticated with it: it can use JetStream.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := srv.JS.AccountInfo(ctx); err != nil {
		t.Fatalf("in-process client: %v", err)
	}
	st, err := os.Stat(seedPath)
	if err != nil {
		t.Fatalf("no credentials file: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("credentials file mode %v, want 0600", st.Mode().Perm())
	}
	seed1, _ := os.ReadFile(seedPath)

	url := "nats://" + listen
	// Anonymous: refused by the server, both by a bare client and through Connect.
	if nc, err := nats.Connect(url, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("anonymous client connected to the listener")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		t.Fatalf("anonymous client: %v, want authorization violation", err)
	}
	_, err = authConnect(t, url, NATSConfig{ConnectTimeout: 2 * time.Second})
	authRefused(t, err, "authorization violation")
	// Another nkey: refused.
	_, otherSeed := newUserKey(t)
	other := writeFile(t, dir, "other.nk", otherSeed)
	_, err = authConnect(t, url, NATSConfig{Credentials: other, ConnectTimeout: 2 * time.Second})
	authRefused(t, err, "authorization violation", string(otherSeed))
	// The listener's own credentials file: accepted, and JetStream answers.
	ext, err := authConnect(t, url, NATSConfig{Credentials: seedPath})
	if err != nil {
		t.Fatalf("with the listener's credentials: %v", err)
	}
	if _, err := ext.JS.AccountInfo(ctx); err != nil {
		t.Fatalf("external client: %v", err)
	}
	ext.Close()

	// A restart reads the same identity rather than making a new one.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	natsStart(t, cfg)
	if seed2, _ := os.ReadFile(seedPath); string(seed2) != string(seed1) {
		t.Error("the credentials file changed across a restart")
	}
	if _, err := authConnect(t, url, NATSConfig{Credentials: seedPath}); err != nil {
		t.Fatalf("after restart, with the same credentials: %v", err)
	}
}

// Without a listener nothing changes: no port, no credentials file.
func TestConnectEmbeddedWithoutListenerMakesNoCredentials(t *testing.T) {
	dir := t.TempDir()
	seedPath := filepath.Join(dir, "nats-client.nk")
	c := natsStart(t, NATSConfig{StoreDir: filepath.Join(dir, "nats"), ListenSeed: seedPath})
	if c.Server().Addr() != nil {
		t.Errorf("listens on %v", c.Server().Addr())
	}
	if _, err := os.Stat(seedPath); !os.IsNotExist(err) {
		t.Errorf("credentials file made without a listener: %v", err)
	}
}

func TestConnectEmbeddedListenerCredentialsErrors(t *testing.T) {
	dir := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", natsFreePort(t))
	junk := writeFile(t, dir, "junk.nk", []byte("not a seed\n"))
	_, accountSeed := func() (string, []byte) {
		kp, _ := nkeys.CreateAccount()
		pub, _ := kp.PublicKey()
		seed, _ := kp.Seed()
		return pub, seed
	}()
	account := writeFile(t, dir, "account.nk", accountSeed)
	for name, cfg := range map[string]NATSConfig{
		"no seed path":     {StoreDir: t.TempDir(), Listen: listen},
		"junk seed":        {StoreDir: t.TempDir(), Listen: listen, ListenSeed: junk},
		"not a user seed":  {StoreDir: t.TempDir(), Listen: listen, ListenSeed: account},
		"unreadable place": {StoreDir: t.TempDir(), Listen: listen, ListenSeed: filepath.Join(junk, "x.nk")},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := Connect(context.Background(), cfg, zap.NewNop())
			if err == nil {
				c.Close()
				t.Fatal("Connect succeeded")
			}
			if k := domain.KindOf(err); k != domain.KindInvalid {
				t.Fatalf("kind %v (%v), want invalid", k, err)
			}
			if strings.Contains(err.Error(), string(accountSeed)) {
				t.Fatalf("error %q holds the seed", err)
			}
		})
	}
}

func TestConnectUserPassword(t *testing.T) {
	const password = "pw-3f9a1c2e7d"
	url := authServer(t, &server.Options{Users: []*server.User{{Username: "ingest", Password: password}}})
	if _, err := authConnect(t, url, NATSConfig{User: "ingest", Password: password}); err != nil {
		t.Fatalf("right password: %v", err)
	}
	_, err := authConnect(t, url, NATSConfig{User: "ingest", Password: password + "x", ConnectTimeout: 2 * time.Second})
	authRefused(t, err, "authorization violation", password)
	_, err = authConnect(t, url, NATSConfig{ConnectTimeout: 2 * time.Second})
	authRefused(t, err, "authorization violation")
}

func TestConnectNkeySeedFile(t *testing.T) {
	pub, seed := newUserKey(t)
	url := authServer(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	dir := t.TempDir()
	// A bare seed, and the decorated form nsc and nk write.
	bare := writeFile(t, dir, "bare.nk", append(seed, '\n'))
	decorated := writeFile(t, dir, "decorated.nk", []byte(
		"-----BEGIN USER NKEY SEED-----\n"+string(seed)+"\n------END USER NKEY SEED------\n"))
	for _, p := range []string{bare, decorated} {
		if _, err := authConnect(t, url, NATSConfig{Credentials: p}); err != nil {
			t.Fatalf("%s: %v", filepath.Base(p), err)
		}
	}
}

// A creds file (user JWT and seed) against a server in operator mode.
func TestConnectCredsFile(t *testing.T) {
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	ojwt, err := oc.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	opClaims, err := jwt.DecodeOperatorClaims(ojwt)
	if err != nil {
		t.Fatal(err)
	}
	akp, _ := nkeys.CreateAccount()
	apub, _ := akp.PublicKey()
	ajwt, err := jwt.NewAccountClaims(apub).Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(apub, ajwt); err != nil {
		t.Fatal(err)
	}
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	useed, _ := ukp.Seed()
	ujwt, err := jwt.NewUserClaims(upub).Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(ujwt, useed)
	if err != nil {
		t.Fatal(err)
	}
	url := authServer(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{opClaims}, AccountResolver: resolver})
	path := writeFile(t, t.TempDir(), "kycstate.creds", creds)
	c, err := authConnect(t, url, NATSConfig{Credentials: path})
	if err != nil {
		t.Fatalf("creds file: %v", err)
	}
	if !c.NC.IsConnected() {
		t.Fatal("not connected")
	}
	// The same seed without its JWT is not a user this server knows.
	bare := writeFile(t, t.TempDir(), "bare.nk", useed)
	_, err = authConnect(t, url, NATSConfig{Credentials: bare, ConnectTimeout: 2 * time.Second})
	authRefused(t, err, "authorization violation", string(useed))
}

// tlsPKI is a CA with a server certificate for 127.0.0.1 and a client certificate, as PEM
// files in a temporary directory.
type tlsPKI struct {
	ca, serverCert, serverKey, clientCert, clientKey string
	otherCA                                          string // a CA that signed neither
}

func newTLSPKI(t *testing.T) tlsPKI {
	t.Helper()
	dir := t.TempDir()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(0)
	write := func(name, typ string, der []byte) string {
		return writeFile(t, dir, name, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	writeKey := func(name string, k *ecdsa.PrivateKey) string {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name, "EC PRIVATE KEY", der)
	}
	mkCA := func(cn string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		serial++
		k := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(der)
		return cert, k, der
	}
	leaf := func(ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		serial++
		k := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	ca, caKey, caDER := mkCA("kycstate test CA")
	_, _, otherDER := mkCA("another CA")
	sDER, sKey := leaf(ca, caKey, "nats", x509.ExtKeyUsageServerAuth)
	cDER, cKey := leaf(ca, caKey, "kycstate-ingest", x509.ExtKeyUsageClientAuth)
	return tlsPKI{
		ca:         write("ca.pem", "CERTIFICATE", caDER),
		otherCA:    write("other-ca.pem", "CERTIFICATE", otherDER),
		serverCert: write("server.pem", "CERTIFICATE", sDER),
		serverKey:  writeKey("server-key.pem", sKey),
		clientCert: write("client.pem", "CERTIFICATE", cDER),
		clientKey:  writeKey("client-key.pem", cKey),
	}
}

func tlsServer(t *testing.T, pki tlsPKI, verifyClients bool) string {
	t.Helper()
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: pki.serverCert, KeyFile: pki.serverKey,
		CaFile: pki.ca, Verify: verifyClients})
	if err != nil {
		t.Fatal(err)
	}
	return authServer(t, &server.Options{TLS: true, TLSConfig: tc, TLSVerify: verifyClients, TLSTimeout: 2})
}

func TestConnectTLS(t *testing.T) {
	pki := newTLSPKI(t)
	t.Run("server verified by ca", func(t *testing.T) {
		url := tlsServer(t, pki, false)
		c, err := authConnect(t, url, NATSConfig{TLS: TLSFiles{CA: pki.ca}})
		if err != nil {
			t.Fatalf("with the CA: %v", err)
		}
		if _, err := c.NC.TLSConnectionState(); err != nil {
			t.Fatalf("connection is not TLS: %v", err)
		}
		// A CA that did not sign the server's certificate: refused by the client.
		_, err = authConnect(t, url, NATSConfig{TLS: TLSFiles{CA: pki.otherCA}, ConnectTimeout: 2 * time.Second})
		authRefused(t, err, "certificate")
	})
	t.Run("client certificate", func(t *testing.T) {
		url := tlsServer(t, pki, true)
		c, err := authConnect(t, url, NATSConfig{TLS: TLSFiles{CA: pki.ca, Cert: pki.clientCert, Key: pki.clientKey}})
		if err != nil {
			t.Fatalf("with a client certificate: %v", err)
		}
		state, err := c.NC.TLSConnectionState()
		if err != nil || len(state.PeerCertificates) == 0 {
			t.Fatalf("TLS state %v: %v", state, err)
		}
		// No client certificate: the server refuses the handshake.
		_, err = authConnect(t, url, NATSConfig{TLS: TLSFiles{CA: pki.ca}, ConnectTimeout: 2 * time.Second})
		if err == nil {
			t.Fatal("connected without a client certificate")
		}
		if k := domain.KindOf(err); k != domain.KindUnavailable {
			t.Fatalf("kind %v (%v), want unavailable", k, err)
		}
	})
}

// Bad settings are refused before any connection, with the key that is wrong named and
// no secret shown.
func TestConnectAuthConfigErrors(t *testing.T) {
	pki := newTLSPKI(t)
	dir := t.TempDir()
	const password = "pw-7c1e99a0"
	_, seed := newUserKey(t)
	akp, _ := nkeys.CreateAccount()
	aseed, _ := akp.Seed()
	junk := writeFile(t, dir, "junk", []byte("hello\n"))
	accountSeed := writeFile(t, dir, "account.nk", aseed)
	userSeed := writeFile(t, dir, "user.nk", seed)
	keyPEM, _ := os.ReadFile(pki.clientKey)
	for name, c := range map[string]struct {
		cfg NATSConfig
		key string
	}{
		"missing credentials":     {NATSConfig{Credentials: filepath.Join(dir, "nope")}, "nats.credentials"},
		"junk credentials":        {NATSConfig{Credentials: junk}, "nats.credentials"},
		"account seed":            {NATSConfig{Credentials: accountSeed}, "nats.credentials"},
		"credentials and user":    {NATSConfig{Credentials: userSeed, User: "u", Password: password}, "nats.credentials"},
		"user without password":   {NATSConfig{User: "u"}, "nats.password"},
		"password without user":   {NATSConfig{Password: password}, "nats.user"},
		"missing ca":              {NATSConfig{TLS: TLSFiles{CA: filepath.Join(dir, "nope")}}, "nats.tls.ca"},
		"ca not pem":              {NATSConfig{TLS: TLSFiles{CA: junk}}, "nats.tls.ca"},
		"cert without key":        {NATSConfig{TLS: TLSFiles{Cert: pki.clientCert}}, "nats.tls.key"},
		"key without cert":        {NATSConfig{TLS: TLSFiles{Key: pki.clientKey}}, "nats.tls.cert"},
		"key does not match cert": {NATSConfig{TLS: TLSFiles{Cert: pki.clientCert, Key: pki.serverKey}}, "nats.tls.cert"},
		"key not pem":             {NATSConfig{TLS: TLSFiles{Cert: pki.clientCert, Key: junk}}, "nats.tls.key"},
	} {
		t.Run(name, func(t *testing.T) {
			c.cfg.URLs = []string{"nats://127.0.0.1:1"}
			conn, err := Connect(context.Background(), c.cfg, zap.NewNop())
			if err == nil {
				conn.Close()
				t.Fatal("Connect succeeded")
			}
			if k := domain.KindOf(err); k != domain.KindInvalid {
				t.Fatalf("kind %v (%v), want invalid", k, err)
			}
			if !strings.Contains(err.Error(), c.key) {
				t.Errorf("error %q does not name %s", err, c.key)
			}
			for _, s := range []string{password, string(seed), string(aseed), string(keyPEM)} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q holds a secret", err)
				}
			}
		})
	}
}
