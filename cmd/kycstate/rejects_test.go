package main

import (
	"errors"
	"io"
	"testing"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest"
)

// TestReprocessSummary: reprocess answers people with counts they can read and a stable
// order of reasons, not a Go struct dump.
func TestReprocessSummary(t *testing.T) {
	cases := []struct {
		res  ingest.ReprocessResult
		want string
	}{
		{ingest.ReprocessResult{Next: 1}, "reprocessed 0 rejects: recovered: 0, duplicates: 0, failing: 0; next run: --from 1"},
		{ingest.ReprocessResult{Seen: 5, Recovered: 1, Duplicates: 1, Failing: 3, Next: 6,
			FailingByReason: map[string]int{"invalid_payload": 1, "bad_signature": 2}},
			"reprocessed 5 rejects: recovered: 1, duplicates: 1, failing: 3 (bad_signature: 2, invalid_payload: 1); next run: --from 6"},
		{ingest.ReprocessResult{Seen: 4, Recovered: 1, Truncated: 3, Next: 9},
			"reprocessed 4 rejects: recovered: 1, duplicates: 0, failing: 0, skipped (samples cut when kept): 3; next run: --from 9"},
	}
	for _, c := range cases {
		if got := reprocessSummary(c.res); got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
	}
}

func TestRejectsRefusesBadFormat(t *testing.T) {
	for _, sub := range []string{"list", "reprocess"} {
		err := run(t.Context(), []string{"rejects", sub, "--format", "xml"}, func(string) string { return "" }, nil, nil, io.Discard, io.Discard)
		if !errors.Is(err, errUsage) {
			t.Errorf("rejects %s --format xml: %v, want a usage error", sub, err)
		}
	}
}

// TestRejectApp: the table names another provider's reject by provider and app, an
// Allpass one as before.
func TestRejectApp(t *testing.T) {
	for _, c := range []struct {
		r    domain.Reject
		want string
	}{
		{domain.Reject{App: "main"}, "main"},
		{domain.Reject{}, "(any)"},
		{domain.Reject{Provider: "allpass", App: "main"}, "main"},
		{domain.Reject{Provider: "sumsub", App: "ss"}, "sumsub/ss"},
	} {
		if got := rejectApp(c.r); got != c.want {
			t.Errorf("rejectApp(%+v) = %q, want %q", c.r, got, c.want)
		}
	}
}
