package ingest

import (
	"errors"
	"testing"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
)

func TestCode(t *testing.T) {
	if Code(nil) != "" {
		t.Errorf("Code(nil) = %q", Code(nil))
	}
	byKind := map[domain.ErrorKind]string{
		domain.KindInvalid:       allpass.CodeMalformedEnvelope,
		domain.KindUnauthorized:  allpass.CodeBadSignature,
		domain.KindUnprocessable: allpass.CodeInvalidPayload,
		domain.KindNotFound:      CodeUnknownApp,
		domain.KindTooLarge:      CodeBodyTooLarge,
		domain.KindUnavailable:   CodeUnavailable,
		domain.KindInternal:      CodeInternal,
		domain.KindConflict:      CodeInternal,
	}
	for kind, want := range byKind {
		if got := Code(domain.E("handler", kind, "x")); got != want {
			t.Errorf("Code(kind %v) = %q, want %q", kind, got, want)
		}
	}
	if got := Code(errors.New("plain")); got != CodeInternal {
		t.Errorf("Code(plain error) = %q", got)
	}
	// A code attached by the wire format wins over the kind, also when wrapped again.
	_, err := allpass.ParseKey("main", "secret_key", "not a key")
	if got := Code(domain.E("outer", domain.KindOther, err)); got != allpass.CodeInvalidConfig {
		t.Errorf("wrapped code = %q", got)
	}
}
