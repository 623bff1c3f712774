package domain_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/looplab/fsm"

	"github.com/kycstate/kycstate/domain"
)

var update = flag.Bool("update", false, "rewrite testdata/lifecycle.mmd and the diagram in docs/lifecycle.md")

const (
	goldenDiagram = "testdata/lifecycle.mmd"
	lifecycleDoc  = "../docs/lifecycle.md"
)

// TestLifecycleTable applies every status event to every current status (including "no
// status yet") and checks outcome, resulting status and anomaly count against the table
// of DESIGN.md section 5 as written out in lifecycleTable.
func TestLifecycleTable(t *testing.T) {
	grid := lifecycleGrid(t)
	f := domain.NewFolder()
	froms := append([]domain.Status{""}, domain.Statuses()...)
	if len(froms) != len(grid) {
		t.Fatalf("domain.Statuses() has %d statuses, the table %d", len(froms)-1, len(grid)-1)
	}
	for _, from := range froms {
		for _, typ := range lifecycleColumns {
			cell, ok := grid[from][typ]
			if !ok {
				t.Fatalf("status %q is not in the table", from)
			}
			name := string(from)
			if name == "" {
				name = "none"
			}
			t.Run(name+"/"+string(typ), func(t *testing.T) {
				const priorAnomalies = 2
				s := domain.State{}
				if from != "" {
					s = domain.State{ApplicantID: testApplicant, AppKey: testApp, Status: from,
						StatusAt: at(0), Anomalies: priorAnomalies, Events: 3, LastSeq: 3}
				}
				e := ev(t, 4, typ, at(60))
				next, rec := f.Apply(s, e)

				wantOutcome, wantAnomalies := domain.OutcomeApplied, s.Anomalies
				if cell == 'I' {
					wantOutcome, wantAnomalies = domain.OutcomeIrregular, s.Anomalies+1
				}
				wantTo := statusTargets[typ]
				if rec.Outcome != wantOutcome {
					t.Errorf("outcome %q, want %q", rec.Outcome, wantOutcome)
				}
				if next.Status != wantTo || rec.From != from || rec.To != wantTo {
					t.Errorf("status %q (record %q -> %q), want %q -> %q", next.Status, rec.From, rec.To, from, wantTo)
				}
				if !next.StatusAt.Equal(e.EventAt) {
					t.Errorf("StatusAt %s, want %s", next.StatusAt, e.EventAt)
				}
				if next.Anomalies != wantAnomalies {
					t.Errorf("anomalies %d, want %d", next.Anomalies, wantAnomalies)
				}
				if got, want := f.Regular(from, typ), cell == 'A'; got != want {
					t.Errorf("Regular(%q, %s) = %v, want %v", from, typ, got, want)
				}
			})
		}
	}
}

// TestCatalogue checks the event names and destinations against DESIGN.md section 2.
func TestCatalogue(t *testing.T) {
	for typ, want := range statusTargets {
		if got, ok := typ.Target(); !ok || got != want {
			t.Errorf("%s.Target() = %q, %v; want %q", typ, got, ok, want)
		}
		if typ.Class() != domain.ClassStatus {
			t.Errorf("%s.Class() = %v, want status", typ, typ.Class())
		}
	}
	for _, typ := range annotationTypes {
		if _, ok := typ.Target(); ok || typ.Class() != domain.ClassAnnotation {
			t.Errorf("%s: Class() = %v, Target ok = %v; want annotation without target", typ, typ.Class(), ok)
		}
	}
	for _, typ := range append(unknownTypes, "ApplicantApproved", "applicantapproved") {
		if typ.Class() != domain.ClassUnknown {
			t.Errorf("%q.Class() = %v, want unknown", typ, typ.Class())
		}
	}
	var names []string
	for _, e := range domain.Lifecycle() {
		names = append(names, e.Name)
		if want := statusTargets[domain.EventType(e.Name)]; e.Dst != string(want) {
			t.Errorf("lifecycle event %s goes to %s, want %s", e.Name, e.Dst, want)
		}
	}
	var want []string
	for _, c := range lifecycleColumns {
		want = append(want, string(c))
	}
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("lifecycle events %v, want %v", names, want)
	}
	for _, s := range domain.Statuses() {
		if !s.Valid() {
			t.Errorf("%q.Valid() = false", s)
		}
	}
	for _, s := range []domain.Status{"", "NEW", "approved", "UNKNOWN"} {
		if s.Valid() {
			t.Errorf("%q.Valid() = true", s)
		}
	}
}

func diagram(t *testing.T) string {
	t.Helper()
	d, err := fsm.VisualizeWithType(domain.NewMachine(), fsm.MermaidStateDiagram)
	if err != nil {
		t.Fatalf("visualize: %v", err)
	}
	return d
}

// TestDiagramGolden keeps testdata/lifecycle.mmd equal to the diagram the lifecycle
// machine draws (go test ./domain -update rewrites it), and checks that its edges are
// exactly the regular transitions of lifecycleTable.
func TestDiagramGolden(t *testing.T) {
	got := diagram(t)
	if *update {
		if err := os.WriteFile(goldenDiagram, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenDiagram)
	if err != nil {
		t.Fatalf("%v (run go test ./domain -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s is out of date (run go test ./domain -update):\n got:\n%s\nwant:\n%s", goldenDiagram, got, want)
	}

	grid := lifecycleGrid(t)
	var wantEdges []string
	for from, row := range grid {
		for typ, cell := range row {
			if cell == 'A' {
				src := string(from)
				if src == "" {
					src = "NEW"
				}
				wantEdges = append(wantEdges, src+" --> "+string(statusTargets[typ])+": "+string(typ))
			}
		}
	}
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if lines[0] != "stateDiagram-v2" || strings.TrimSpace(lines[1]) != "[*] --> NEW" {
		t.Fatalf("diagram starts %q, %q; want a state diagram starting at NEW", lines[0], lines[1])
	}
	var gotEdges []string
	for _, l := range lines[2:] {
		gotEdges = append(gotEdges, strings.TrimSpace(l))
	}
	slices.Sort(gotEdges)
	slices.Sort(wantEdges)
	if !slices.Equal(gotEdges, wantEdges) {
		t.Errorf("diagram edges\n got %q\nwant %q", gotEdges, wantEdges)
	}
}

// TestDocDiagram keeps the diagram in docs/lifecycle.md equal to the golden file, so the
// compliance documentation cannot drift from the machine. -update rewrites it in place.
func TestDocDiagram(t *testing.T) {
	doc, err := os.ReadFile(lifecycleDoc)
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile(goldenDiagram)
	if err != nil {
		t.Fatal(err)
	}
	const open, fence = "```mermaid\n", "```"
	i := bytes.Index(doc, []byte(open))
	if i < 0 {
		t.Fatalf("%s has no ```mermaid block", lifecycleDoc)
	}
	start := i + len(open)
	n := bytes.Index(doc[start:], []byte(fence))
	if n < 0 {
		t.Fatalf("%s: the ```mermaid block is not closed", lifecycleDoc)
	}
	if *update {
		out := slices.Concat(doc[:start], golden, doc[start+n:])
		if err := os.WriteFile(filepath.Clean(lifecycleDoc), out, 0o644); err != nil {
			t.Fatal(err)
		}
		doc, n = out, len(golden)
	}
	if got := doc[start : start+n]; !bytes.Equal(got, golden) {
		t.Errorf("the diagram in %s differs from %s (run go test ./domain -update):\n%s", lifecycleDoc, goldenDiagram, got)
	}
}

// TestRegularRemembers: a Folder that remembers the machine's answers gives the same
// answer as a fresh machine for every question, asked again, in reverse order, and
// after more invented event types than it remembers.
func TestRegularRemembers(t *testing.T) {
	f := domain.NewFolder()
	var types []domain.EventType
	for typ := range statusTargets {
		types = append(types, typ)
	}
	types = append(types, domain.EventStepPassed, "somethingInvented")
	statuses := append([]domain.Status{domain.StatusNone}, domain.Statuses()...)
	check := func(from domain.Status, typ domain.EventType) {
		t.Helper()
		if got, want := f.Regular(from, typ), domain.NewFolder().Regular(from, typ); got != want {
			t.Errorf("Regular(%q, %s) = %v, a fresh machine says %v", from, typ, got, want)
		}
	}
	for range 2 {
		for _, from := range statuses {
			for _, typ := range types {
				check(from, typ)
			}
		}
		slices.Reverse(statuses)
	}
	for i := range 3000 {
		check(statuses[i%len(statuses)], domain.EventType(fmt.Sprintf("invented%d", i)))
	}
	for _, from := range statuses {
		for _, typ := range types {
			check(from, typ)
		}
	}
}
