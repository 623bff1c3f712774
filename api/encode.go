package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/httperr"
)

// This file is the API's one place for encoding responses and decoding request
// parameters. Error kinds become HTTP statuses in internal/httperr, for every listener.

// Limits of list parameters.
const (
	defaultLimit  = 100
	maxLimit      = 1000
	maxExtIDBytes = 1024 // externalUserId longer than this cannot be stored; refuse early
)

// errParam is a request error whose message the caller sees (domain.Public): it starts
// with the name of the parameter (or header, or path segment) at fault, so every 400 says
// what to fix. Errors of the projection and the log carry no such message and are
// answered with their kind's generic one (internal/httperr). The console's backend
// builds its errors here too, so a page says what the API answers.
func errParam(name string, kind domain.ErrorKind, msg string) error {
	return errCode(name, kind, "", msg)
}

// errCode is errParam with a code of its own, for answers a client tells apart.
func errCode(name string, kind domain.ErrorKind, code, msg string) error {
	return domain.Public("api", kind, code, name+": "+msg)
}

// writeJSON encodes v as the response body (internal/httperr.WriteJSON: the same headers
// on every answer, errors included).
func writeJSON(w http.ResponseWriter, status int, v any) { httperr.WriteJSON(w, status, v) }

// timePtr is nil for the zero time, so that "never" encodes as null.
func timePtr(t time.Time) *client.Time {
	if t.IsZero() {
		return nil
	}
	v := client.Time(t)
	return &v
}

// strPtr is nil for "", so that "none" encodes as null.
func strPtr[S ~string](s S) *string {
	if s == "" {
		return nil
	}
	v := string(s)
	return &v
}

// nonNil turns a nil slice into an empty one, so lists encode as [] and never as null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// query holds a request's parsed query string. Unknown parameters are ignored.
type query struct {
	v url.Values
}

// knownParams are the query parameters some route reads. One given twice is refused
// rather than resolved: with ?after=3&after=x, a proxy, a log reader and this service could
// each take a different value, and an auditor's request must mean one thing.
func knownParams() []string {
	return []string{"minSeq", "at", "seq", "after", "limit", "cursor",
		"externalUserId", "appKey", "status", "wait", "dryRun", "provider"}
}

// parseQuery decodes the query string, refusing one that is not well formed or that
// repeats a known parameter.
func parseQuery(r *http.Request) (query, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return query{}, errParam("query", domain.KindInvalid, "malformed query string")
	}
	for _, name := range knownParams() {
		if len(v[name]) > 1 {
			return query{}, errParam(name, domain.KindInvalid, fmt.Sprintf("given %d times; give it once", len(v[name])))
		}
	}
	return query{v: v}, nil
}

// has reports whether the parameter is present, even empty.
func (q query) has(name string) bool { return q.v.Has(name) }

func (q query) get(name string) string { return q.v.Get(name) }

// uint returns a non-negative integer parameter, or def when it is absent.
func (q query) uint(name string, def uint64) (uint64, error) {
	if !q.has(name) {
		return def, nil
	}
	return parseUint(name, q.get(name))
}

func parseUint(name, s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || s == "" || s[0] == '+' {
		return 0, errParam(name, domain.KindInvalid, fmt.Sprintf("must be a non-negative integer, got %s", quote(s)))
	}
	return n, nil
}

// limit returns ?limit: default 100, values above 1000 capped at 1000, anything that is
// not a positive integer refused.
func (q query) limit() (int, error) {
	if !q.has("limit") {
		return defaultLimit, nil
	}
	s := q.get("limit")
	if s == "" || strings.TrimLeft(s, "0123456789") != "" || strings.TrimLeft(s, "0") == "" {
		return 0, errParam("limit", domain.KindInvalid, fmt.Sprintf("must be a positive integer (more than %d gives %d), got %s", maxLimit, maxLimit, quote(s)))
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > maxLimit { // all digits: err is overflow, i.e. huge
		return maxLimit, nil
	}
	return n, nil
}

// time returns an RFC 3339 time parameter.
func (q query) time(name string) (time.Time, error) {
	s := q.get(name)
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errParam(name, domain.KindInvalid, fmt.Sprintf("must be an RFC 3339 time such as 2024-05-01T12:00:00Z, got %s", quote(s)))
	}
	return t, nil
}

// parseUUID checks a UUID (either case) and returns it in canonical lower case, the form
// ids are stored in.
func parseUUID(name, s string) (string, error) {
	u, ok := domain.ParseUUID(s)
	if !ok {
		return "", errParam(name, domain.KindInvalid, fmt.Sprintf("must be a UUID, got %s", quote(s)))
	}
	return u, nil
}

// quote shows a bad value in an error message, shortened: the caller sent it, but a
// message should stay readable and bounded.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}
