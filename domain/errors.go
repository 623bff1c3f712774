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

// Error carries the operation that failed, a kind, and the cause. Messages never hold
// keys, signatures or plaintext.
type Error struct {
	Op   string
	Kind ErrorKind
	Err  error
}

// E builds an *Error. msg may be an error or a string.
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

func (e *Error) Error() string {
	switch {
	case e.Err == nil:
		return e.Op + ": " + e.Kind.String()
	case e.Op == "":
		return e.Err.Error()
	}
	return e.Op + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind of the outermost *Error in err's chain with a kind set, or
// KindOther.
func KindOf(err error) ErrorKind {
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return KindOther
		}
		if e.Kind != KindOther {
			return e.Kind
		}
		err = e.Err
	}
	return KindOther
}
