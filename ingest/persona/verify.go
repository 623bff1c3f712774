package persona

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/kycstate/kycstate/ingest/webhook"
)

// Bounds on Persona-Signature. Each t costs one HMAC of the whole body per secret, so a
// header may not ask for more than a few: Persona sends one set, two while rotating.
const (
	maxSignatureSets = 4
	maxSignatures    = 4  // v1 values in one set
	maxTimestampLen  = 20 // digits of t
)

// verify reports whether sig, a Persona-Signature value, holds a set t=<unix>,v1=<hex>
// whose v1 is the HMAC-SHA256 of "<t>.<body>" under one of a's secrets. Sets are
// separated by white space, pairs by commas; a set may repeat v1, and keys other than t
// and v1 are skipped. Every set is tried whichever matches, and webhook.Verify tries
// every signature and secret of a set in constant time, so the time taken says nothing
// about which one matched.
func (a *App) verify(body []byte, sig string) bool {
	sets := strings.Fields(sig)
	if len(sets) == 0 || len(sets) > maxSignatureSets {
		return false
	}
	ok := false
	for _, set := range sets {
		t, sigs := "", [][]byte(nil)
		for _, pair := range strings.Split(set, ",") {
			k, v, _ := strings.Cut(pair, "=")
			switch k {
			case "t":
				t = v
			case "v1":
				if b, err := hex.DecodeString(v); err == nil && len(b) == sha256.Size && len(sigs) < maxSignatures {
					sigs = append(sigs, b)
				}
			}
		}
		if !isDigits(t) || len(t) > maxTimestampLen || len(sigs) == 0 {
			continue
		}
		ok = webhook.Verify(sha256.New, a.Secrets, sigs, signed(t, body)...) || ok
	}
	return ok
}

// isDigits reports whether s is one or more ASCII digits.
func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
