package domain

import (
	"crypto/rand"
	"encoding/hex"
)

// ParseUUID returns s in the canonical form ids are stored and routed in: 8-4-4-4-12
// lower-case hex digits. Upper-case hex is accepted and lowered (Allpass and callers
// differ in case); anything else is refused. A subject token built from the result can
// hold no '.', '*', '>', space or case variant, which is why every id that reaches a
// NATS subject, a bbolt key or a URL passes through here.
func ParseUUID(s string) (string, bool) {
	if len(s) != 36 {
		return "", false
	}
	var b [36]byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", false
			}
		default:
			switch {
			case '0' <= c && c <= '9', 'a' <= c && c <= 'f':
			case 'A' <= c && c <= 'F':
				c += 'a' - 'A'
			default:
				return "", false
			}
		}
		b[i] = c
	}
	return string(b[:]), true
}

// IsCanonicalUUID reports whether s is already in ParseUUID's output form. It allocates
// nothing: it guards every subject the log builds, on every append and read.
func IsCanonicalUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}

// ParseApplicantID parses an applicant id (a UUID, any case) into its canonical form.
// Errors: KindInvalid.
func ParseApplicantID(s string) (ApplicantID, error) {
	u, ok := ParseUUID(s)
	if !ok {
		return "", E("domain.ParseApplicantID", KindInvalid, "applicant id is not a UUID")
	}
	return ApplicantID(u), nil
}

// ParseAppKey parses an Allpass app key (a UUID, any case) into its canonical form.
// Errors: KindInvalid.
func ParseAppKey(s string) (AppKey, error) {
	u, ok := ParseUUID(s)
	if !ok {
		return "", E("domain.ParseAppKey", KindInvalid, "app key is not a UUID")
	}
	return AppKey(u), nil
}

// NewUUID returns a random (version 4) UUID in canonical form, as Allpass gives
// applicants and app keys.
func NewUUID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// MaxProviderID is the longest id a provider other than Allpass may give an applicant or
// an app (DESIGN.md section 13).
const MaxProviderID = 64

// IsSubjectToken reports whether s can stand as one token of a NATS subject and a bbolt
// key as it is: 1 to MaxProviderID characters of [A-Za-z0-9_-]. No '.', '*', '>', space
// or control character passes, so a subject built from it has exactly the tokens meant.
// It allocates nothing.
func IsSubjectToken(s string) bool {
	if len(s) == 0 || len(s) > MaxProviderID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// ParseProviderID parses the applicant id a provider other than Allpass gives (Sumsub's
// applicantId, Persona's inquiry id, Veriff's session id, Onfido's workflow run id): kept
// verbatim, case included, when IsSubjectToken accepts it. Errors: KindInvalid.
func ParseProviderID(s string) (ApplicantID, error) {
	if !IsSubjectToken(s) {
		return "", E("domain.ParseProviderID", KindInvalid, "applicant id is not 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")
	}
	return ApplicantID(s), nil
}
