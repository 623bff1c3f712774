// Package allpasstest gives the tests of any package the shared Allpass test vectors
// (DESIGN.md section 2): webhooks made with Node.js crypto in Allpass's published layout,
// valid ones with their plaintext and invalid ones that must be refused.
//
// It imports nothing of this module, so the in-package tests of ingest/allpass can use it
// as well as those of the packages above.
package allpasstest

import (
	"os"
	"path/filepath"
	"testing"
)

// VectorsRel is where the vectors sit in the shared tree, which is checked out beside
// the repository (in CI) or beside the directory of its worktrees.
const VectorsRel = "shared/testdata/allpass/vectors.json"

// Vectors returns the contents of the shared vectors file, found in the first directory,
// from the test's working directory up, that holds VectorsRel. A missing file fails tb:
// the vectors are the only outside check of the crypto, so a run without them must not
// pass.
func Vectors(tb testing.TB) []byte {
	tb.Helper()
	path, err := findUp(VectorsRel)
	if err != nil {
		tb.Fatalf("Allpass test vectors are missing: %v\n(the shared tree must be checked out beside the repository so that ../%s exists)", err, VectorsRel)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("reading the Allpass test vectors: %v", err)
	}
	return b
}

// findUp returns the first dir/rel that exists, dir going from the working directory up
// to the root.
func findUp(rel string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", &os.PathError{Op: "find", Path: rel, Err: os.ErrNotExist}
		}
		dir = parent
	}
}
