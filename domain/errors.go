package domain

import (
	"errors"
	"fmt"
)

// ErrorKind classifies an error for the caller: the HTTP layer maps kinds to status codes
// in one place, and tests assert on kinds, never on message text.
type ErrorKind int

const (
	KindOther         ErrorKind = iota
	KindInvalid                 // malformed input: 400
	KindUnauthorized            // signature, tag, decryption or token failure: 401
	KindForbidden               // authenticated but not allowed: 403
	KindNotFound                // unknown app, applicant: 404
	KindTooLarge                // body over the limit: 413
	KindUnprocessable           // well-formed but invalid payload: 422
	KindConflict                // state disagrees (schema version, lock held)
	KindUnavailable             // dependency cannot confirm now; retry: 503
	KindInternal                // a bug or broken invariant: 500
)

var kindNames = [...]string{"other", "invalid", "unauthorized", "forbidden", "not_found",
	"too_large", "unprocessable", "conflict", "unavailable", "internal"}

func (k ErrorKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is the one error carrier of kycstate: what failed (Op), what kind of failure it
// is (Kind), and what the caller may be told of it (Code, Message), with the cause (Err)
// for the logs. internal/httperr turns it into an HTTP answer for every listener and the
// console; the rejects stream and reconcile reports record the same code.
//
// Code and Message are set only by code that means them for the caller (Public,
// WithPublic): a Message never holds a key, a key id, a signature, plaintext or a
// parser's text. An error without them is answered with its kind's default code and
// generic message, so text written for the logs never reaches a caller by accident.
type Error struct {
	Op      string
	Kind    ErrorKind
	Code    string // stable code; "": the kind's default (internal/httperr)
	Message string // caller-safe message; "": the kind's generic one
	Err     error  // the cause; for the logs only
}

// E builds an *Error whose cause is for the logs only. cause may be an error or a string.
func E(op string, kind ErrorKind, cause any) error {
	var err error
	switch c := cause.(type) {
	case error:
		err = c
	case string:
		err = errors.New(c)
	case nil:
	default:
		err = fmt.Errorf("%v", c)
	}
	return &Error{Op: op, Kind: kind, Err: err}
}

// Public builds an error the caller is told of: a stable code ("" for the kind's default)
// and msg, which must name the problem without secrets, plaintext or internals.
func Public(op string, kind ErrorKind, code, msg string) error {
	return &Error{Op: op, Kind: kind, Code: code, Message: msg}
}

// WithPublic gives err (its kind kept) the code and caller-safe message its answer
// carries; err's own text stays for the logs.
func WithPublic(err error, code, msg string) error {
	return &Error{Code: code, Message: msg, Err: err}
}

// Error is the text for the logs: the op, the caller's message and the cause.
func (e *Error) Error() string {
	s := e.Op
	add := func(part string) {
		if s != "" {
			s += ": "
		}
		s += part
	}
	if e.Message != "" {
		add(e.Message)
	}
	switch {
	case e.Err != nil:
		add(e.Err.Error())
	case e.Message == "":
		add(e.Kind.String())
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind of the outermost *Error in err's chain with a kind set, or
// KindOther.
func KindOf(err error) ErrorKind { return outermost(err, func(e *Error) ErrorKind { return e.Kind }) }

// CodeOf returns the code of the outermost *Error in err's chain with one set, or "".
func CodeOf(err error) string { return outermost(err, func(e *Error) string { return e.Code }) }

// MessageOf returns the caller-safe message of the outermost *Error in err's chain with
// one set, or "".
func MessageOf(err error) string { return outermost(err, func(e *Error) string { return e.Message }) }

// outermost walks err's chain of *Error from the outside in and returns the first
// non-zero field, or the zero value.
func outermost[T comparable](err error, field func(*Error) T) T {
	var zero T
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return zero
		}
		if v := field(e); v != zero {
			return v
		}
		err = e.Err
	}
	return zero
}
