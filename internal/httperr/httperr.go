// Package httperr is where an error becomes an HTTP answer, for every listener (the
// webhook listener of ingest and the read API): the status from the error's kind, in one
// function; a body {"error":{"code","message"}} with a stable code and a message that is
// safe to show the caller.
//
// A message is shown only if the code that made the error said it may be (New, Wrap).
// Everything else (a store's "store.Projection.State: ..." say) is answered with the
// kind's generic message and logged in full: the caller sees what to do, the operator
// sees what happened, and no error text written for the logs reaches the wire by
// accident.
package httperr

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"

	"github.com/kycstate/kycstate/domain"
	"go.uber.org/zap"
)

// Status maps an error kind to its HTTP status. It is the only such mapping.
//
// KindConflict is 409: the request is well formed and allowed, but collides with the
// state of the thing it asks about (a verify already running); asking again later can
// succeed. A conflict that is no caller's doing (a projection file of another schema
// under the event log, say) is a broken invariant, and the code that meets it re-kinds it
// KindInternal (ingest's append path does) rather than this mapping guessing.
func Status(k domain.ErrorKind) int {
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

// CodeInternal is the code of every 500 whose error names no other, and
// CodeMethodNotAllowed the code of every 405.
const (
	CodeInternal         = "internal"
	CodeMethodNotAllowed = "method_not_allowed"
)

// Body is every error answer: {"error":{"code":"...","message":"..."}}.
type Body struct {
	Error Detail `json:"error"`
}

// Detail is the inside of Body.
type Detail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error is what the caller of a request may see of an error: a stable code and a
// caller-safe message, and the cause for the logs. It is found in an error's chain with
// errors.As; the kind is the chain's (domain.KindOf).
type Error struct {
	Code    string // "": the kind's name
	Message string // "": the kind's generic message
	Err     error  // the cause; never shown to the caller
}

func (e *Error) Error() string {
	switch {
	case e.Err == nil:
		return e.Message
	case e.Message == "":
		return e.Err.Error()
	}
	return e.Message + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an error of kind whose answer carries code ("" for the kind's name) and msg,
// which must name the problem without secrets, plaintext or internals.
func New(kind domain.ErrorKind, code, msg string) error {
	return domain.E("", kind, &Error{Code: code, Message: msg})
}

// Wrap gives err (its kind kept) the code and caller-safe message its answer carries;
// err's own text goes to the logs only.
func Wrap(err error, code, msg string) error {
	return &Error{Code: code, Message: msg, Err: err}
}

// generic is the message of an error that brings none the caller may see.
func generic(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid request"
	case http.StatusUnauthorized:
		return "not authenticated"
	case http.StatusForbidden:
		return "not allowed"
	case http.StatusNotFound:
		return "not found"
	case http.StatusConflict:
		return "conflicts with the current state; ask again later"
	case http.StatusRequestEntityTooLarge:
		return "request too large"
	case http.StatusUnprocessableEntity:
		return "request cannot be processed"
	case http.StatusServiceUnavailable:
		return "temporarily unavailable; retry later"
	}
	return "internal error"
}

// Writer answers errors for one listener.
type Writer struct {
	// Log receives every 5xx but 503 in full (the caller got "internal error"). Nil: the
	// listener logs its refusals itself.
	Log *zap.Logger
	// RetryAfter, if set, is the Retry-After (seconds) of every 503.
	RetryAfter string
}

// Write answers err and returns what it answered. Of a 500 the caller sees only its code
// and "internal error", whatever the error says: it is a bug or a broken invariant, and
// its text is for the operator.
func (wr Writer) Write(w http.ResponseWriter, r *http.Request, err error) (status int, code, msg string) {
	kind := domain.KindOf(err)
	status = Status(kind)
	code, msg = kind.String(), ""
	var e *Error
	if errors.As(err, &e) {
		if e.Code != "" {
			code = e.Code
		}
		msg = e.Message
	}
	if status == http.StatusInternalServerError {
		if e == nil || e.Code == "" {
			code = CodeInternal
		}
		msg = ""
		if wr.Log != nil {
			wr.Log.Error("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		}
	}
	if msg == "" {
		msg = generic(status)
	}
	if status == http.StatusServiceUnavailable && wr.RetryAfter != "" {
		w.Header().Set("Retry-After", wr.RetryAfter)
	}
	WriteJSON(w, status, Body{Error: Detail{Code: code, Message: msg}})
	return status, code, msg
}

// MethodNotAllowed answers 405 with Allow: allow. It is HTTP's routing answer rather
// than an error kind: no domain operation fails with it.
func MethodNotAllowed(w http.ResponseWriter, allow, msg string) {
	w.Header().Set("Allow", allow)
	WriteJSON(w, http.StatusMethodNotAllowed, Body{Error: Detail{Code: CodeMethodNotAllowed, Message: msg}})
}

// HandlerFunc is a handler that returns its error instead of answering it; Handle
// answers it. A HandlerFunc returns an error only before it has written anything, and
// nil when it has answered or there is no one left to answer (the client went away).
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Handle adapts h to an http.Handler that answers h's error with wr.
func (wr Writer) Handle(h HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			wr.Write(w, r, err)
		}
	})
}

// WriteJSON answers v as JSON with status. Encoding happens before the header is sent,
// so a value that cannot be encoded turns into a 500 rather than half a body. Every
// answer of both listeners, errors or not, goes through it, so all carry the same
// headers: not cached, not sniffed. A value with an AppendJSON method (an Appender) is
// encoded by it.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	buf := bodies.Get().(*bytes.Buffer)
	defer putBody(buf)
	buf.Reset()
	if a, ok := v.(Appender); ok {
		buf.Write(a.AppendJSON(buf.AvailableBuffer()))
		buf.WriteByte('\n')
	} else if err := json.NewEncoder(buf).Encode(v); err != nil { // as json.Marshal, and a newline
		buf.Reset()
		buf.WriteString(`{"error":{"code":"internal","message":"internal error"}}` + "\n")
		status = http.StatusInternalServerError
	}
	// Canonical keys set directly, sharing one backing array: this runs on every response.
	vals := []string{"application/json", "no-store", "nosniff", strconv.Itoa(buf.Len())}
	h := w.Header()
	h["Content-Type"], h["Cache-Control"], h["X-Content-Type-Options"] = vals[0:1:1], vals[1:2:2], vals[2:3:3]
	h["Content-Length"] = vals[3:4:4]
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// Appender is a value that encodes itself as JSON, appending to b exactly what
// json.Marshal would give for it (api/client.State: the API's most read answer).
type Appender interface {
	AppendJSON(b []byte) []byte
}

// bodies holds the buffers WriteJSON encodes into: a response's body is written once
// and the buffer reused, instead of json.Marshal's slice and the copy that appending the
// newline made.
var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// putBody gives buf back, unless one large answer (a long history page) grew it past
// what is worth keeping.
func putBody(buf *bytes.Buffer) {
	if buf.Cap() <= 64<<10 {
		bodies.Put(buf)
	}
}
