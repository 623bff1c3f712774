package api

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/kycstate/kycstate/domain"
)

// TestSessionKeyFor: the console's session key is the same for the same tokens in any
// order, and changes when a token is removed, its secret rotated, its role or its name
// changed; without a configured key it stays nil (a key per process).
func TestSessionKeyFor(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	tok := func(name string, role domain.Role, secret string) tokenHash {
		return tokenHash{name: name, role: role, sum: sha256.Sum256([]byte(secret))}
	}
	a, b := tok("ops", domain.RoleAdmin, "s1"), tok("audit", domain.RoleAuditor, "s2")
	base := sessionKeyFor(key, []tokenHash{a, b})
	if len(base) != 32 || !bytes.Equal(base, sessionKeyFor(key, []tokenHash{b, a})) {
		t.Fatal("the key depends on the order of the tokens")
	}
	for name, ts := range map[string][]tokenHash{
		"removed": {a},
		"rotated": {a, tok("audit", domain.RoleAuditor, "s3")},
		"role":    {a, tok("audit", domain.RoleReader, "s2")},
		"renamed": {a, tok("audit2", domain.RoleAuditor, "s2")},
	} {
		if bytes.Equal(base, sessionKeyFor(key, ts)) {
			t.Errorf("%s token: same session key", name)
		}
	}
	if bytes.Equal(base, sessionKeyFor(bytes.Repeat([]byte{2}, 32), []tokenHash{a, b})) {
		t.Error("another key gives the same session key")
	}
	if sessionKeyFor(nil, []tokenHash{a}) != nil {
		t.Error("no configured key must stay nil")
	}
}
