package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kycstate/kycstate/api"
	"github.com/kycstate/kycstate/store/projection"
	"go.uber.org/zap/zaptest"
)

// consoleNode is one query node's console, built from its config as serve builds it
// (resolveConfig, apiTokens, consoleSessionKey), over an empty projection of its own.
func consoleNode(t *testing.T, yml string, env ...string) http.Handler {
	t.Helper()
	getenv, environ := envFunc(env...)
	cfg, err := loadConfig(writeFile(t, "node.yaml", yml), getenv, environ)
	if err != nil {
		t.Fatal(err)
	}
	r, err := resolveConfig(cfg, getenv, false, true)
	if err != nil {
		t.Fatal(err)
	}
	proj, err := projection.Open(filepath.Join(t.TempDir(), "projection.db"), projection.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proj.Close() })
	h, err := api.NewServer(api.Config{Projection: proj, Tokens: apiTokens(r), Logger: zaptest.NewLogger(t),
		ConsoleSessionKey: consoleSessionKey(r)})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// nodeConfig is a query node's config: the same tokens on every node, its own master key
// and, if not empty, api.console.session_key.
func nodeConfig(master, sessionKey string) string {
	y := "data_dir: ./d\nkeys: { master: " + master + " }\napi:\n  tokens:\n    - { name: audit, role: auditor, token: audit-token-0123456789 }\n"
	if sessionKey != "" {
		y += "  console: { session_key: '" + sessionKey + "' }\n"
	}
	return y
}

// signInOn signs in on node h and returns the session cookie.
func signInOn(t *testing.T, h http.Handler) *http.Cookie {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/console/signin", nil))
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(rec.Body.String())
	var pre *http.Cookie
	for _, c := range rec.Result().Cookies() {
		if c.Name == "kycstate_console_pre" {
			pre = c
		}
	}
	if m == nil || pre == nil {
		t.Fatalf("sign-in page: %d without its form", rec.Code)
	}
	req := httptest.NewRequest("POST", "/console/signin", strings.NewReader(url.Values{"token": {"audit-token-0123456789"}, "csrf": {m[1]}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(pre)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		if c.Name == "kycstate_console" && c.MaxAge > 0 {
			return c
		}
	}
	t.Fatalf("sign-in: %d without a session", rec.Code)
	return nil
}

// accepts reports whether node h opens the console for session.
func accepts(t *testing.T, h http.Handler, session *http.Cookie) bool {
	t.Helper()
	req := httptest.NewRequest("GET", "/console/", nil)
	req.AddCookie(session)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	io.Copy(io.Discard, rec.Body)
	switch rec.Code {
	case http.StatusOK:
		return true
	case http.StatusSeeOther:
		return false
	}
	t.Fatalf("console home: %d", rec.Code)
	return false
}

// TestConsoleSessionKeyShared: two query nodes whose configs have the same
// api.console.session_key accept each other's sessions, even with different master keys
// (the session key, not keys.master, signs them); with different session keys they do
// not. Without session_key, the key derived from keys.master stays the default: nodes
// with one master key agree, nodes with two do not. The key is read from the
// environment (env:) and in any of its encodings.
func TestConsoleSessionKeyShared(t *testing.T) {
	masterA, masterB := randHex(32), randHex(32)
	raw := bytes.Repeat([]byte{7}, 32)
	shared := hex.EncodeToString(raw)
	other := randHex(32)
	for _, tc := range []struct {
		name   string
		a, b   string
		env    []string
		accept bool
	}{
		{"same session key, different masters", nodeConfig(masterA, shared), nodeConfig(masterB, shared), nil, true},
		{"same session key, hex and base64", nodeConfig(masterA, shared), nodeConfig(masterB, base64.StdEncoding.EncodeToString(raw)), nil, true},
		{"same session key from the environment", nodeConfig(masterA, shared), nodeConfig(masterB, "env:SESSION_KEY"), []string{"SESSION_KEY", shared}, true},
		{"different session keys, one master", nodeConfig(masterA, shared), nodeConfig(masterA, other), nil, false},
		{"no session key, one master", nodeConfig(masterA, ""), nodeConfig(masterA, ""), nil, true},
		{"no session key, different masters", nodeConfig(masterA, ""), nodeConfig(masterB, ""), nil, false},
		{"a session key on one node only", nodeConfig(masterA, shared), nodeConfig(masterA, ""), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := consoleNode(t, tc.a), consoleNode(t, tc.b, tc.env...)
			s := signInOn(t, a)
			if !accepts(t, a, s) {
				t.Fatal("node A refuses its own session")
			}
			if got := accepts(t, b, s); got != tc.accept {
				t.Errorf("node B accepts A's session: %v, want %v", got, tc.accept)
			}
			if got := accepts(t, a, signInOn(t, b)); got != tc.accept {
				t.Errorf("node A accepts B's session: %v, want %v", got, tc.accept)
			}
		})
	}
}

// TestDevConfigHasSessionKey: the development config that serve writes under data_dir
// holds a console session key of its own, which resolves to 32 bytes; the keygen's
// config carries one too.
func TestDevConfigHasSessionKey(t *testing.T) {
	getenv, environ := envFunc("KYCSTATE_DATA_DIR", t.TempDir())
	e := &env{getenv: getenv, environ: environ, stdout: io.Discard, stderr: io.Discard}
	cfg, err := loadServiceConfig(e, "", true)
	if err != nil {
		t.Fatal(err)
	}
	r, err := resolveConfig(cfg, getenv, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.ConsoleSessionKey) != 32 {
		t.Fatalf("development session key: %d bytes, want 32", len(r.ConsoleSessionKey))
	}
	var out bytes.Buffer
	if err := cmdKeygen(t.Context(), &env{getenv: getenv, stdout: &out, stderr: io.Discard}, nil); err != nil {
		t.Fatal(err)
	}
	kg, err := loadConfig(writeFile(t, "kg.yaml", out.String()), getenv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := kg.API.Console.SessionKey.resolve("k", getenv); err != nil || len(k) != 64 {
		t.Fatalf("keygen's session key %d characters (%v), want 64 hex", len(k), err)
	}
}
