package main

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

func TestVerifyURL(t *testing.T) {
	for _, c := range []struct{ in, want, bad string }{
		{in: "http://127.0.0.1:8081", want: "http://127.0.0.1:8081/v1/verify"},
		{in: "http://127.0.0.1:8081/", want: "http://127.0.0.1:8081/v1/verify"},
		{in: "127.0.0.1:8081", want: "http://127.0.0.1:8081/v1/verify"},
		{in: "localhost:8081", want: "http://localhost:8081/v1/verify"},
		{in: "https://kyc.internal/query/", want: "https://kyc.internal/query/v1/verify"},
		{in: "ftp://127.0.0.1:8081", bad: "http or https"},
		{in: "http://", bad: "no host"},
		{in: "http://127.0.0.1:8081/?x=1", bad: "query"},
		{in: "http://audit:secret@127.0.0.1:8081", bad: "--token"},
		{in: "http://[::1", bad: "not a URL"},
	} {
		got, err := verifyURL(c.in)
		switch {
		case c.bad == "" && (err != nil || got != c.want):
			t.Errorf("verifyURL(%q) = %q, %v; want %q", c.in, got, err, c.want)
		case c.bad != "" && (err == nil || !strings.Contains(err.Error(), c.bad)):
			t.Errorf("verifyURL(%q) = %q, %v; want an error naming %q", c.in, got, err, c.bad)
		case c.bad != "" && strings.Contains(err.Error(), "secret"):
			t.Errorf("verifyURL(%q): the error shows the password: %v", c.in, err)
		}
	}
}

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

func TestDecodeVerify(t *testing.T) {
	good := `{"checkpoint":22,"logLast":21,"applicants":5,"events":21,"future":true,"differences":[
		{"kind":"checkpoint","applicantId":null,"log":"ends at sequence 21","projection":"checkpoint 22"},
		{"kind":"extra","applicantId":"5f81a364-b072-41d3-8465-fffffffffff6","log":"no events","projection":"digest 00, 1 events, last seq 22"}]}`
	res, err := decodeVerify(strings.NewReader(good), "x")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"checkpoint: log ends at sequence 21, projection checkpoint 22",
		"extra 5f81a364-b072-41d3-8465-fffffffffff6: log no events, projection digest 00, 1 events, last seq 22"}
	if res.Checkpoint != 22 || res.LogLast != 21 || res.Applicants != 5 || res.Events != 21 || len(res.Differences) != 2 {
		t.Fatalf("decoded %+v", res)
	}
	for i, d := range res.Differences {
		if d.String() != want[i] {
			t.Errorf("difference %d prints %q, want %q", i, d.String(), want[i])
		}
	}
	for _, bad := range []string{``, `{}`, `[]`, `{"checkpoint":1}`, `{"differences":[]}`, `{"checkpoint":1,"differences":null}`,
		`{"checkpoint":"1","differences":[]}`, `<html>`, `{"error":{"code":"x","message":"y"}}`} {
		if _, err := decodeVerify(strings.NewReader(bad), "x"); err == nil {
			t.Errorf("decodeVerify(%q) accepted it", bad)
		}
	}
}

func FuzzDecodeVerify(f *testing.F) {
	f.Add([]byte(`{"checkpoint":3,"logLast":3,"applicants":1,"events":3,"differences":[]}`))
	f.Add([]byte(`{"checkpoint":3,"differences":[{"kind":"digest","applicantId":"a","log":"x","projection":"y"}]}`))
	f.Add([]byte(`{"checkpoint":3,"differences":[{"applicantId":7}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := decodeVerify(bytes.NewReader(b), "x")
		if err != nil {
			if !strings.Contains(err.Error(), "not a verify result") {
				t.Fatalf("unclear error: %v", err)
			}
			return
		}
		for _, d := range res.Differences {
			if d.String() == "" {
				t.Fatalf("difference %+v prints nothing", d)
			}
		}
	})
}
