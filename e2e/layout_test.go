package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestReadmeLayout holds README.md's "## Layout" section to the module as `go list ./...`
// sees it: every package directory has its line, and every line names a package or a
// directory without Go code that exists (deploy's files, docs/). A package added
// without a line, or a line left behind by a package moved or deleted, fails here, so the
// map a newcomer reads first cannot go stale. It needs no built binary.
func TestReadmeLayout(t *testing.T) {
	root := moduleRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	named, err := layoutPaths(readme)
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	pkgs := packageDirs(t, root)
	if problems := checkLayout(root, named, pkgs); len(problems) > 0 {
		t.Errorf("README.md's ## Layout disagrees with `go list ./...`:\n  %s", strings.Join(problems, "\n  "))
	}
}

// TestReadmeLayoutCatchesDrift: the check must be able to fail, or TestReadmeLayout
// proves nothing. A package with no line, a line with no package and a line that is not a
// path are each found.
func TestReadmeLayoutCatchesDrift(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a", "a/b", "docs", "mixed"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "mixed", "x.go"), []byte("package x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pkgs := []string{"a", "a/b"}
	section := func(lines ...string) []byte {
		return []byte("# x\n\n## Layout\n\n    " + strings.Join(lines, "\n    ") + "\n\n## Next\n\n    c/ not layout\n")
	}
	for _, c := range []struct {
		name  string
		lines []string
		want  string // "" : no problem
	}{
		{"complete", []string{"a/  one", "a/b/ two,", "      wrapped", "docs/  files"}, ""},
		{"package without a line", []string{"a/  one", "docs/ files"}, `"a/b/"`},
		{"line without a package", []string{"a/", "a/b/", "gone/  moved away"}, `"gone/"`},
		{"Go directory not a package", []string{"a/", "a/b/", "mixed/"}, `"mixed/"`},
		{"twice", []string{"a/", "a/b/", "a/ again"}, `"a/"`},
	} {
		named, err := layoutPaths(section(c.lines...))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		problems := strings.Join(checkLayout(root, named, pkgs), "\n")
		if c.want == "" && problems != "" || !strings.Contains(problems, c.want) {
			t.Errorf("%s: problems %q, want one naming %s", c.name, problems, c.want)
		}
	}
	for name, readme := range map[string]string{
		"no section":      "# x\n\n## Running\n",
		"empty section":   "## Layout\n\nprose only\n",
		"line not path":   "## Layout\n\n    cmd/kycstate  the binary\n    domain   vocabulary\n",
		"path no slash":   "## Layout\n\n    api the read API\n",
		"absolute path":   "## Layout\n\n    /api/ the read API\n",
		"climbing path":   "## Layout\n\n    ../api/ the read API\n",
		"unclean path":    "## Layout\n\n    api//client/ the client\n",
		"only the root":   "## Layout\n\n    ./ the module\n",
		"section ends":    "## Layout\n\n## Next\n\n    api/ read API\n",
		"first line wrap": "## Layout\n\n      wrapped/ first\n",
	} {
		if named, err := layoutPaths([]byte(readme)); err == nil {
			t.Errorf("%s: accepted as %v", name, named)
		}
	}
}

// layoutLine is one entry of the layout: a path and where it stands.
type layoutLine struct {
	path string // relative to the module root, with its trailing slash
	line int
}

// layoutPaths reads the code block (indented four spaces) of README's "## Layout"
// section. An entry starts at that indentation with a path relative to the module root
// and a slash; a line indented further continues the entry above it.
func layoutPaths(readme []byte) ([]layoutLine, error) {
	var out []layoutLine
	in, found := false, false
	sc := bufio.NewScanner(bytes.NewReader(readme))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") || strings.HasPrefix(line, "# ") {
			in = strings.TrimSpace(line) == "## Layout"
			found = found || in
			continue
		}
		if !in || strings.TrimSpace(line) == "" {
			continue
		}
		text := strings.TrimLeft(line, " ")
		switch depth := len(line) - len(text); {
		case depth < 4:
			continue // prose around the block
		case depth > 4:
			if len(out) == 0 {
				return nil, fmt.Errorf("line %d: continues no entry", n)
			}
			continue
		}
		path, _, _ := strings.Cut(text, " ")
		clean := filepath.ToSlash(filepath.Clean(path)) + "/"
		if !strings.HasSuffix(path, "/") || clean != path || strings.HasPrefix(path, "/") ||
			strings.HasPrefix(path, "../") || path == "./" {
			return nil, fmt.Errorf("line %d: %q does not start with a directory of the module and a slash", n, text)
		}
		out = append(out, layoutLine{path: path, line: n})
	}
	if !found {
		return nil, fmt.Errorf("no ## Layout section")
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("## Layout names no directory")
	}
	return out, sc.Err()
}

// checkLayout compares the layout's entries with the module's package directories (pkgs,
// relative to root): what is missing, left over or named twice.
func checkLayout(root string, named []layoutLine, pkgs []string) []string {
	var problems []string
	seen := map[string]int{}
	for _, l := range named {
		if first, ok := seen[l.path]; ok {
			problems = append(problems, fmt.Sprintf("line %d: %q again (first on line %d)", l.line, l.path, first))
			continue
		}
		seen[l.path] = l.line
		dir := strings.TrimSuffix(l.path, "/")
		if slices.Contains(pkgs, dir) {
			continue
		}
		fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(dir)))
		switch {
		case err != nil || !fi.IsDir():
			problems = append(problems, fmt.Sprintf("line %d: %q is not a directory of the module", l.line, l.path))
		case hasGo(filepath.Join(root, filepath.FromSlash(dir))):
			problems = append(problems, fmt.Sprintf("line %d: %q holds Go files but `go list ./...` lists no package there", l.line, l.path))
		}
	}
	for _, p := range pkgs {
		if _, ok := seen[p+"/"]; !ok {
			problems = append(problems, fmt.Sprintf("package %q has no line in ## Layout (a line starting %q)", p, p+"/"))
		}
	}
	return problems
}

// hasGo reports whether dir itself holds a .go file.
func hasGo(dir string) bool {
	m, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	return len(m) > 0
}

// packageDirs lists the directories of the module's packages, relative to root, as
// `go list ./...` sees them (test-only packages included; testdata, vendor and hidden
// directories excluded, as the go tool excludes them).
func packageDirs(t *testing.T, root string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", "{{.Dir}}", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v\n%s", err, stderr.String())
	}
	var dirs []string
	for _, dir := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, dir)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			t.Fatalf("go list ./...: %s is outside the module root %s", dir, root)
		}
		if rel == "." {
			t.Fatalf("go list ./...: a package at the module root, which DESIGN.md section 1 keeps free of Go code")
		}
		dirs = append(dirs, filepath.ToSlash(rel))
	}
	if len(dirs) == 0 {
		t.Fatal("go list ./... listed no package")
	}
	return dirs
}

// moduleRoot is the directory of go.mod above the test's working directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}
