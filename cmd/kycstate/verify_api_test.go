package main

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

// The token is --token when given (literal, env: or file:), else the config's first
// auditor token, never a reader's.
func TestVerifyToken(t *testing.T) {
	const cfg = `
data_dir: DATA
api:
  tokens:
    - { name: product, role: reader,  token: "reader-token-0123456789" }
    - { name: audit,   role: auditor, token: "env:AUDIT_TOKEN" }
    - { name: audit2,  role: auditor, token: "second-auditor-0123456789" }
`
	dir := t.TempDir()
	path := writeFile(t, "c.yaml", strings.ReplaceAll(cfg, "DATA", filepath.Join(dir, "data")))
	getenv, environ := envFunc("AUDIT_TOKEN", "first-auditor-0123456789", "OTHER", "from-env-0123456789")
	e := &env{getenv: getenv, environ: environ, stdout: io.Discard, stderr: io.Discard}

	for _, c := range []struct{ cfg, flag, want, bad string }{
		{cfg: path, want: "first-auditor-0123456789"},
		{cfg: path, flag: "literal-0123456789", want: "literal-0123456789"},
		{cfg: filepath.Join(dir, "missing.yaml"), flag: "env:OTHER", want: "from-env-0123456789"}, // the config is not read
		{cfg: path, flag: "file:" + writeFile(t, "tok", "from-file-0123456789\n"), want: "from-file-0123456789"},
		{cfg: path, flag: "env:UNSET", bad: "UNSET"},
		{cfg: filepath.Join(dir, "missing.yaml"), bad: "--token"},
		{cfg: writeFile(t, "readers.yaml", "api: { tokens: [ { name: p, role: reader, token: reader-token-0123456789 } ] }\n"), bad: "no auditor token"},
	} {
		got, err := verifyToken(e, c.cfg, c.flag)
		switch {
		case c.bad == "" && (err != nil || got != c.want):
			t.Errorf("config %s, --token %q: %q, %v; want %q", filepath.Base(c.cfg), c.flag, got, err, c.want)
		case c.bad != "" && (err == nil || !strings.Contains(err.Error(), c.bad)):
			t.Errorf("config %s, --token %q: %q, %v; want an error naming %q", filepath.Base(c.cfg), c.flag, got, err, c.bad)
		case err != nil && strings.Contains(err.Error(), "0123456789"):
			t.Errorf("config %s, --token %q: the error shows a token: %v", filepath.Base(c.cfg), c.flag, err)
		}
	}
}

// The offline path, with --token, or with a URL that is not one, is a usage error (exit 2)
// before anything is opened.
func TestVerifyUsage(t *testing.T) {
	getenv, environ := envFunc()
	var stderr bytes.Buffer
	for _, args := range [][]string{
		{"verify", "--token", "x"},
		{"verify", "--api", "ftp://x", "--token", "some-token-0123456789"},
	} {
		stderr.Reset()
		err := run(t.Context(), args, getenv, environ, nil, io.Discard, &stderr)
		if !errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}
