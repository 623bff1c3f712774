package domain_test

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/kycstate/kycstate/domain"
)

func TestKindOf(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want domain.ErrorKind
	}{
		{"nil", nil, domain.KindOther},
		{"plain error", io.EOF, domain.KindOther},
		{"direct", domain.E("ingest.open", domain.KindUnauthorized, "mac mismatch"), domain.KindUnauthorized},
		{"wrapped by fmt.Errorf", fmt.Errorf("webhook: %w", domain.E("ingest.open", domain.KindInvalid, "bad hex")), domain.KindInvalid},
		{"wrapped twice", fmt.Errorf("a: %w", fmt.Errorf("b: %w", domain.E("op", domain.KindNotFound, nil))), domain.KindNotFound},
		{"outer kind wins", domain.E("store.append", domain.KindUnavailable, domain.E("inner", domain.KindInvalid, "x")), domain.KindUnavailable},
		{"outer without kind defers to inner", domain.E("projector.run", domain.KindOther, domain.E("store.apply", domain.KindConflict, "schema")), domain.KindConflict},
		{"inner behind fmt under a kindless outer", domain.E("op", domain.KindOther, fmt.Errorf("ctx: %w", domain.E("op2", domain.KindTooLarge, nil))), domain.KindTooLarge},
		{"kindless all the way", domain.E("op", domain.KindOther, io.EOF), domain.KindOther},
		{"joined", errors.Join(io.EOF, domain.E("op", domain.KindForbidden, nil)), domain.KindForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := domain.KindOf(tt.err); got != tt.want {
				t.Errorf("KindOf(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestE(t *testing.T) {
	t.Run("string cause", func(t *testing.T) {
		err := domain.E("ingest.open", domain.KindUnprocessable, "missing id")
		var e *domain.Error
		if !errors.As(err, &e) || e.Op != "ingest.open" || e.Kind != domain.KindUnprocessable || e.Err == nil {
			t.Fatalf("E with a string: %#v", err)
		}
		if err.Error() != "ingest.open: missing id" {
			t.Errorf("Error() = %q", err.Error())
		}
	})
	t.Run("error cause", func(t *testing.T) {
		err := domain.E("store.append", domain.KindUnavailable, io.ErrUnexpectedEOF)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("the cause is not reachable through errors.Is: %v", err)
		}
		if errors.Unwrap(err) != io.ErrUnexpectedEOF {
			t.Errorf("Unwrap() = %v", errors.Unwrap(err))
		}
		if err.Error() != "store.append: "+io.ErrUnexpectedEOF.Error() {
			t.Errorf("Error() = %q", err.Error())
		}
	})
	t.Run("nil cause", func(t *testing.T) {
		err := domain.E("api.state", domain.KindNotFound, nil)
		if errors.Unwrap(err) != nil {
			t.Errorf("Unwrap() = %v, want nil", errors.Unwrap(err))
		}
		if err.Error() != "api.state: not_found" {
			t.Errorf("Error() = %q", err.Error())
		}
	})
	t.Run("other cause", func(t *testing.T) {
		err := domain.E("op", domain.KindInternal, 42)
		if err.Error() != "op: 42" || domain.KindOf(err) != domain.KindInternal {
			t.Errorf("E with an int: %q, kind %v", err.Error(), domain.KindOf(err))
		}
	})
	t.Run("no op", func(t *testing.T) {
		if err := domain.E("", domain.KindInvalid, "bad"); err.Error() != "bad" {
			t.Errorf("Error() = %q", err.Error())
		}
	})
}

func TestErrorKindString(t *testing.T) {
	want := map[domain.ErrorKind]string{
		domain.KindOther: "other", domain.KindInvalid: "invalid", domain.KindUnauthorized: "unauthorized",
		domain.KindForbidden: "forbidden", domain.KindNotFound: "not_found", domain.KindTooLarge: "too_large",
		domain.KindUnprocessable: "unprocessable", domain.KindConflict: "conflict",
		domain.KindUnavailable: "unavailable", domain.KindInternal: "internal",
		domain.ErrorKind(99): "kind(99)",
	}
	for k, s := range want {
		if k.String() != s {
			t.Errorf("ErrorKind(%d).String() = %q, want %q", int(k), k.String(), s)
		}
	}
}

// The code and message the caller sees come from the outermost error that set them; the
// kind from the outermost with a kind; the cause stays reachable for the logs.
func TestPublic(t *testing.T) {
	cause := errors.New("bolt: database not open at /data/projection.db")
	inner := domain.Public("allpass.Open", domain.KindUnauthorized, "bad_signature", "signature does not verify")
	tests := []struct {
		name      string
		err       error
		kind      domain.ErrorKind
		code, msg string
	}{
		{"nil", nil, domain.KindOther, "", ""},
		{"plain", io.EOF, domain.KindOther, "", ""},
		{"for the logs only", domain.E("store.State", domain.KindUnavailable, cause), domain.KindUnavailable, "", ""},
		{"public", inner, domain.KindUnauthorized, "bad_signature", "signature does not verify"},
		{"public without a code", domain.Public("api", domain.KindInvalid, "", "limit: must be an integer"), domain.KindInvalid, "", "limit: must be an integer"},
		{"wrapped by fmt and E", domain.E("ingest.webhook", domain.KindOther, fmt.Errorf("x: %w", inner)), domain.KindUnauthorized, "bad_signature", "signature does not verify"},
		{"re-kinded keeps the code", domain.E("allpass.Open", domain.KindInternal, inner), domain.KindInternal, "bad_signature", "signature does not verify"},
		{"given a message", domain.WithPublic(domain.E("ingest.append", domain.KindUnavailable, cause), "", "the log did not confirm"), domain.KindUnavailable, "", "the log did not confirm"},
		{"outer code wins", domain.WithPublic(inner, "other", ""), domain.KindUnauthorized, "other", "signature does not verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if k, c, m := domain.KindOf(tt.err), domain.CodeOf(tt.err), domain.MessageOf(tt.err); k != tt.kind || c != tt.code || m != tt.msg {
				t.Errorf("kind %v code %q message %q, want %v %q %q", k, c, m, tt.kind, tt.code, tt.msg)
			}
		})
	}
	w := domain.WithPublic(domain.E("op", domain.KindUnavailable, cause), "c", "m")
	if !errors.Is(w, cause) || w.Error() != "m: op: "+cause.Error() {
		t.Errorf("WithPublic: cause reachable %v, text %q", errors.Is(w, cause), w.Error())
	}
	if inner.Error() != "allpass.Open: signature does not verify" {
		t.Errorf("Public: text %q", inner.Error())
	}
}
