package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kycstate/kycstate/domain"
	"go.uber.org/zap"
)

// This file is the API's one place for encoding responses, decoding request parameters
// and mapping error kinds to HTTP statuses. Parameter errors are domain errors whose Op
// is the parameter's name, so every 400 names what to fix.

// Limits of list parameters.
const (
	defaultLimit  = 100
	maxLimit      = 1000
	maxExtIDBytes = 1024 // externalUserId longer than this cannot be stored; refuse early
)

// statusFor maps an error kind to its HTTP status.
func statusFor(k domain.ErrorKind) int {
	switch k {
	case domain.KindInvalid:
		return http.StatusBadRequest
	case domain.KindUnauthorized:
		return http.StatusUnauthorized
	case domain.KindForbidden:
		return http.StatusForbidden
	case domain.KindNotFound:
		return http.StatusNotFound
	case domain.KindTooLarge:
		return http.StatusRequestEntityTooLarge
	case domain.KindUnprocessable:
		return http.StatusUnprocessableEntity
	case domain.KindConflict:
		return http.StatusConflict
	case domain.KindUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// errorBody is {"error":{"code","message"}}, the body of every error response.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// writeError answers with err's status and a JSON body naming the problem. Server-side
// failures (5xx but 503) are logged in full and answered with a generic message, so that
// no internal detail reaches the caller.
func writeError(w http.ResponseWriter, r *http.Request, log *zap.Logger, err error) {
	kind := domain.KindOf(err)
	status := statusFor(kind)
	code, msg := kind.String(), err.Error()
	if status == http.StatusInternalServerError {
		code, msg = domain.KindInternal.String(), "internal error"
		log.Error("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
	}
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: msg}})
}

// writeJSON encodes v as the response body. Encoding happens before the header is sent,
// so a value that cannot be encoded turns into a 500 rather than half a body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(errorBody{Error: errorDetail{Code: domain.KindInternal.String(), Message: "internal error"}})
		status = http.StatusInternalServerError
	}
	// Canonical keys set directly, sharing one backing array: this runs on every response.
	vals := []string{"application/json", "no-store", "nosniff"}
	h := w.Header()
	h["Content-Type"], h["Cache-Control"], h["X-Content-Type-Options"] = vals[0:1:1], vals[1:2:2], vals[2:3:3]
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// Time is a time encoded as RFC 3339 in UTC, with as many fractional digits as it has.
type Time time.Time

// MarshalJSON writes the RFC 3339 UTC form.
func (t Time) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(time.RFC3339Nano)+2)
	b = append(b, '"')
	b = time.Time(t).UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

// UnmarshalJSON reads an RFC 3339 time, so clients in Go can decode the views.
func (t *Time) UnmarshalJSON(b []byte) error {
	var v time.Time
	if err := v.UnmarshalJSON(b); err != nil {
		return err
	}
	*t = Time(v)
	return nil
}

// timePtr is nil for the zero time, so that "never" encodes as null.
func timePtr(t time.Time) *Time {
	if t.IsZero() {
		return nil
	}
	v := Time(t)
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

// query holds a request's parsed query string. Unknown parameters are ignored; of a
// repeated parameter the first value counts.
type query struct {
	v url.Values
}

// parseQuery decodes the query string, refusing one that is not well formed.
func parseQuery(r *http.Request) (query, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return query{}, domain.E("query", domain.KindInvalid, "malformed query string")
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
		return 0, domain.E(name, domain.KindInvalid, fmt.Sprintf("must be a non-negative integer, got %s", quote(s)))
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
		return 0, domain.E("limit", domain.KindInvalid, fmt.Sprintf("must be an integer from 1 to %d, got %s", maxLimit, quote(s)))
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
		return time.Time{}, domain.E(name, domain.KindInvalid, fmt.Sprintf("must be an RFC 3339 time such as 2024-05-01T12:00:00Z, got %s", quote(s)))
	}
	return t, nil
}

// parseUUID checks a UUID (either case) and returns it in canonical lower case, the form
// ids are stored in.
func parseUUID(name, s string) (string, error) {
	u, ok := domain.ParseUUID(s)
	if !ok {
		return "", domain.E(name, domain.KindInvalid, fmt.Sprintf("must be a UUID, got %s", quote(s)))
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
