// Package httperr is where an error becomes an HTTP answer, for every listener (the
// webhook listener of ingest, the read API and its console): the status and the default
// code of each error kind, side by side in one table, and Answer, which turns any error
// into the status, code and message the caller sees; a body {"error":{"code","message"}}.
//
// The error is domain.Error. Its message is shown only if the code that made the error
// said it may be (domain.Public, domain.WithPublic). Everything else (a store's
// "store.Projection.State: ..." say) is answered with the kind's generic message and
// logged in full: the caller sees what to do, the operator sees what happened, and no
// error text written for the logs reaches the wire by accident.
package httperr

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"

	"github.com/kycstate/kycstate/domain"
	"go.uber.org/zap"
)

// Default codes of the error kinds, and the code of every 405. They never change meaning:
// clients branch on them (api/client has the same strings).
const (
	CodeInvalid          = "invalid"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeTooLarge         = "too_large"
	CodeUnprocessable    = "unprocessable"
	CodeConflict         = "conflict"
	CodeUnavailable      = "unavailable"
	CodeInternal         = "internal"
	CodeMethodNotAllowed = "method_not_allowed"
)

// kindAnswer is one row of the table: what an error of a kind is answered with when it
// brings no code or message of its own.
type kindAnswer struct {
	status  int
	code    string
	message string
}

// answerOf is the one table of kinds to answers. KindOther (an error nobody classified)
// and any kind without a row are 500 internal: a bug or a broken invariant.
//
// KindConflict is 409: the request is well formed and allowed, but collides with the
// state of the thing it asks about (a verify already running); asking again later can
// succeed. A conflict that is no caller's doing (a projection file of another schema
// under the event log, say) is a broken invariant, and the code that meets it re-kinds it
// KindInternal (ingest's append path does) rather than this table guessing.
func answerOf(k domain.ErrorKind) kindAnswer {
	switch k {
	case domain.KindInvalid:
		return kindAnswer{http.StatusBadRequest, CodeInvalid, "invalid request"}
	case domain.KindUnauthorized:
		return kindAnswer{http.StatusUnauthorized, CodeUnauthorized, "not authenticated"}
	case domain.KindForbidden:
		return kindAnswer{http.StatusForbidden, CodeForbidden, "not allowed"}
	case domain.KindNotFound:
		return kindAnswer{http.StatusNotFound, CodeNotFound, "not found"}
	case domain.KindTooLarge:
		return kindAnswer{http.StatusRequestEntityTooLarge, CodeTooLarge, "request too large"}
	case domain.KindUnprocessable:
		return kindAnswer{http.StatusUnprocessableEntity, CodeUnprocessable, "request cannot be processed"}
	case domain.KindConflict:
		return kindAnswer{http.StatusConflict, CodeConflict, "conflicts with the current state; ask again later"}
	case domain.KindUnavailable:
		return kindAnswer{http.StatusServiceUnavailable, CodeUnavailable, "temporarily unavailable; retry later"}
	}
	return kindAnswer{http.StatusInternalServerError, CodeInternal, "internal error"}
}

// Status maps an error kind to its HTTP status.
func Status(k domain.ErrorKind) int { return answerOf(k).status }

// Code is the code of an error of kind k that names none of its own.
func Code(k domain.ErrorKind) string { return answerOf(k).code }

// Answer is what the caller is told of err, exactly as every listener answers it: the
// status of its kind; its code (domain.CodeOf) or the kind's; its caller-safe message
// (domain.MessageOf) or the kind's generic one. Of a 500 the caller sees only the code and
// "internal error", whatever the error says: it is a bug or a broken invariant, and its
// text is for the operator.
func Answer(err error) (status int, code, msg string) {
	a := answerOf(domain.KindOf(err))
	status, code, msg = a.status, a.code, a.message
	if c := domain.CodeOf(err); c != "" {
		code = c
	}
	if m := domain.MessageOf(err); m != "" && status != http.StatusInternalServerError {
		msg = m
	}
	return status, code, msg
}

// Body is every error answer: {"error":{"code":"...","message":"..."}}.
type Body struct {
	Error Detail `json:"error"`
}

// Detail is the inside of Body.
type Detail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Writer answers errors for one listener.
type Writer struct {
	// Log receives every 5xx but 503 in full (the caller got "internal error"). Nil: the
	// listener logs its refusals itself.
	Log *zap.Logger
	// RetryAfter, if set, is the Retry-After (seconds) of every 503.
	RetryAfter string
}

// Write answers err (Answer) and returns what it answered.
func (wr Writer) Write(w http.ResponseWriter, r *http.Request, err error) (status int, code, msg string) {
	status, code, msg = Answer(err)
	if status == http.StatusInternalServerError && wr.Log != nil {
		wr.Log.Error("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
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
