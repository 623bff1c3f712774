package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every command's --help prints its usage and exits 0, keys and rejects (which take a
// word before their flags) included.
func TestEveryHelpExitsZero(t *testing.T) {
	getenv, environ := envFunc("KYCSTATE_DATA_DIR", t.TempDir())
	for _, c := range commands() {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), []string{c.name, "--help"}, getenv, environ, nil, &stdout, &stderr)
		if code := exitCode(err, &stderr); code != 0 {
			t.Errorf("%s --help: exit %d: %s", c.name, code, stderr.String())
		}
		if out := stdout.String() + stderr.String(); !strings.Contains(out, "Usage: kycstate "+c.name) {
			t.Errorf("%s --help printed no usage:\n%s", c.name, out)
		}
	}
}

// A bad flag is reported once, after the usage, and exits 2.
func TestBadFlagReportedOnce(t *testing.T) {
	getenv, environ := envFunc()
	for _, args := range [][]string{{"keygen", "--bogus"}, {"replay", "--format"}, {"keys", "rewrap", "--nope"}} {
		var stderr bytes.Buffer
		err := run(t.Context(), args, getenv, environ, nil, &bytes.Buffer{}, &stderr)
		if code := exitCode(err, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		out := stderr.String()
		_, msg, _ := strings.Cut(err.Error(), "usage error: ")
		if n := strings.Count(out, msg); msg == "" || n != 1 || !strings.Contains(out, "Usage: kycstate") {
			t.Errorf("%v: %q said %d times (want once, with the usage):\n%s", args, msg, n, out)
		}
	}
}

// The development config written on first start shows the defaults the service runs
// with, not zero values.
func TestDevConfigShowsDefaults(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, devConfigName)
	if _, err := ensureDevConfig(dir, path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"keep_raw: true", "timeout: 10s", "queue_wait: 2s"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("dev config has no %q:\n%s", want, b)
		}
	}
}
