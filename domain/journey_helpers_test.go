package domain

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/looplab/fsm"
)

// Helpers for the per-provider tables of DESIGN.md section 13 (journey_<provider>_test.go).

// classifyCase is one row of a provider's classification table, written as text in the
// tests so that a typo in the package's tables (or in the test) fails.
type classifyCase struct {
	typ, providerStatus string
	class               Class
	status              Status
}

// parseClassifyTable reads rows of "type providerStatus class status": class is status,
// annotation or unknown; "-" stands for an empty field.
func parseClassifyTable(tb testing.TB, table string) []classifyCase {
	tb.Helper()
	classes := map[string]Class{"status": ClassStatus, "annotation": ClassAnnotation, "unknown": ClassUnknown}
	field := func(s string) string {
		if s == "-" {
			return ""
		}
		return s
	}
	var out []classifyCase
	for _, line := range strings.Split(strings.TrimSpace(table), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) != 4 {
			tb.Fatalf("table row %q has %d fields, want 4", line, len(f))
		}
		class, ok := classes[f[2]]
		if !ok {
			tb.Fatalf("table row %q: class %q", line, f[2])
		}
		out = append(out, classifyCase{field(f[0]), field(f[1]), class, Status(field(f[3]))})
	}
	return out
}

func checkClassify(t *testing.T, p Provider, table string) {
	t.Helper()
	for _, c := range parseClassifyTable(t, table) {
		class, status := p.Classify(EventType(c.typ), c.providerStatus)
		if class != c.class || status != c.status {
			t.Errorf("%s.Classify(%q, %q) = %v, %q; want %v, %q", p, c.typ, c.providerStatus, class, status, c.class, c.status)
		}
	}
}

// journeyColumns are the destinations of a journey grid, in column order.
var journeyColumns = []Status{StatusInit, StatusIncomplete, StatusInProgress, StatusOnHold,
	StatusInReview, StatusCompleted, StatusApproved, StatusRejected}

// checkJourney asks a provider's journey machine every transition from every status (and
// from "no status yet") to every status, against a grid written out cell by cell:
//
//	A  a regular transition
//	=  the applicant already has that status (the fold applies it as it is)
//	I  not in the journey: the fold applies it and flags it irregular
func checkJourney(t *testing.T, events fsm.Events, grid string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(grid), "\n")
	header := strings.Fields(lines[0])[1:]
	if len(header) != len(journeyColumns) {
		t.Fatalf("grid header has %d columns, want %d", len(header), len(journeyColumns))
	}
	for i, h := range header {
		if h != string(journeyColumns[i]) {
			t.Fatalf("grid column %d is %q, want %q", i, h, journeyColumns[i])
		}
	}
	if len(lines) != 1+1+len(Statuses()) {
		t.Fatalf("grid has %d rows, want one per status and one for none", len(lines)-1)
	}
	m := fsm.NewFSM(fsmNew, events, nil)
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) != len(journeyColumns)+1 {
			t.Fatalf("grid row %q has %d fields", line, len(f))
		}
		from := f[0]
		if from == "-" {
			from = fsmNew
		} else if !Status(from).Valid() {
			t.Fatalf("grid row %q: %q is no status", line, from)
		}
		for i, cell := range f[1:] {
			to := journeyColumns[i]
			m.SetState(from)
			err := m.Event(context.Background(), string(to))
			var got string
			var noTransition fsm.NoTransitionError
			switch {
			case string(to) == from:
				got = "=" // the fold never asks; the machine must not list it either
				if err == nil || errors.As(err, &noTransition) {
					got = "A"
				}
			case err == nil:
				got = "A"
			default:
				got = "I"
			}
			if got != cell {
				t.Errorf("%s -> %s: %s, grid says %s (machine: %v)", f[0], to, got, cell, err)
			}
		}
	}
}

// TestJourneysReachEveryClassifiedStatus holds each table to its journey: every common
// status a provider's events can lead to is the destination of one of its journey's
// events, and the journey names no status the events never lead to.
func TestJourneysReachEveryClassifiedStatus(t *testing.T) {
	for _, c := range []struct {
		p       Provider
		table   string
		journey fsm.Events
	}{
		{ProviderSumsub, sumsubClassifyTable, journeySumsub()},
		{ProviderPersona, personaClassifyTable, journeyPersona()},
		{ProviderVeriff, veriffClassifyTable, journeyVeriff()},
		{ProviderOnfido, onfidoClassifyTable, journeyOnfido()},
	} {
		reached := map[Status]bool{}
		for _, row := range parseClassifyTable(t, c.table) {
			if row.class == ClassStatus {
				reached[row.status] = true
			}
		}
		dst := map[Status]bool{}
		for _, e := range c.journey {
			if e.Name != e.Dst {
				t.Errorf("%s: event %q leads to %q: an event is named by its destination", c.p, e.Name, e.Dst)
			}
			dst[Status(e.Dst)] = true
		}
		for s := range reached {
			if !dst[s] {
				t.Errorf("%s: events lead to %s, which the journey never reaches", c.p, s)
			}
		}
		for s := range dst {
			if !reached[s] {
				t.Errorf("%s: the journey reaches %s, which no event leads to", c.p, s)
			}
		}
	}
}

func TestClassifyAllpassAndOthers(t *testing.T) {
	for typ, want := range map[EventType]Status{"applicantApproved": StatusApproved, "applicantCreated": StatusInit} {
		if class, s := ProviderAllpass.Classify(typ, "ignored"); class != ClassStatus || s != want {
			t.Errorf("allpass %s: %v %q", typ, class, s)
		}
	}
	if class, s := ProviderAllpass.Classify("applicantStepPassed", ""); class != ClassAnnotation || s != StatusNone {
		t.Errorf("allpass applicantStepPassed: %v %q", class, s)
	}
	if class, s := Provider("nobody").Classify("decision", "approved"); class != ClassUnknown || s != StatusNone {
		t.Errorf("unknown provider: %v %q", class, s)
	}
}
