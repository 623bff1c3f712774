package allpass

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/kycstate/kycstate/domain"
)

// keyLen is the length of every key this package accepts: AES-256 secrets and HMAC keys.
const keyLen = 32

// ParseHMACKey parses an HMAC key given the same ways as a secret: 64 hex characters or
// base64 (standard or URL alphabet, padded or not) of 32 bytes. The vectors use a 32-byte
// key; a key of another length is refused so that a truncated or mistyped key fails at
// start-up rather than as a 401 on every webhook. Errors are KindInvalid and name the app
// and field, never the value.
func ParseHMACKey(app, field, s string) ([]byte, error) {
	return parseKeyBytes("allpass.ParseHMACKey", app, field, s)
}

// parseKeyBytes decodes a 32-byte key from hex or base64. Surrounding white space (a
// trailing newline in a secrets file) is ignored.
func parseKeyBytes(op, app, field, s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, domain.Public(op, domain.KindInvalid, CodeInvalidConfig, fmt.Sprintf("app %q: %s is empty", app, field))
	}
	if b, ok := decodeFixed(s, keyLen); ok {
		return b, nil
	}
	return nil, domain.Public(op, domain.KindInvalid, CodeInvalidConfig,
		fmt.Sprintf("app %q: %s must be 64 hex characters or base64 of 32 bytes", app, field))
}

// decodeFixed decodes s as hex (exactly 2n characters) or as base64 of exactly n bytes.
func decodeFixed(s string, n int) ([]byte, bool) {
	if len(s) == 2*n {
		if b, err := hex.DecodeString(s); err == nil {
			return b, true
		}
	}
	if b, ok := decodeBase64(s); ok && len(b) == n {
		return b, true
	}
	return nil, false
}

// decodeBase64 decodes s with the first base64 form that takes it. These forms are
// accepted wherever the format is ambiguous (keys, signatures, CBC data): standard or URL
// alphabet, padded or not. At most one alphabet decodes a string holding '+', '/', '-'
// or '_', and both give the same bytes when it holds none.
func decodeBase64(s string) ([]byte, bool) {
	for _, enc := range [...]*base64.Encoding{
		base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding,
	} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, true
		}
	}
	return nil, false
}
