package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/kycstate/kycstate/domain"
	"go.uber.org/zap"
)

// principal is who made a request: the token's name (for logs) and role.
type principal struct {
	name string
	role domain.Role
}

type principalKey struct{}

// principalFrom returns the authenticated caller; handlers behind require always have one.
func principalFrom(ctx context.Context) (principal, bool) {
	p, ok := ctx.Value(principalKey{}).(principal)
	return p, ok
}

// require lets through requests bearing a token whose role may use a route needing need:
// 401 (with WWW-Authenticate: Bearer) without a valid token, 403 when the role may not.
func (s *server) require(need domain.Role, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, tok, err := s.authenticate(r)
		if err != nil {
			challenge := `Bearer realm="kycstate"`
			reason := "no token"
			if err == errBadToken {
				challenge += `, error="invalid_token"`
				reason = "unknown token"
			}
			s.refused.Refused(s.proxies.Of(r), tok, reason, zap.String("method", r.Method), zap.String("path", r.URL.Path))
			w.Header().Set("WWW-Authenticate", challenge)
			s.errs.Write(w, r, errParam("Authorization", domain.KindUnauthorized, err.Error()))
			return
		}
		if !p.role.Allows(need) {
			s.errs.Write(w, r, errParam("Authorization", domain.KindForbidden,
				"role "+string(p.role)+" may not use this route; it needs "+string(need)))
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// authenticate finds the token presented in the Authorization header, and returns it
// (for its fingerprint in the log of a refusal). It compares the presented token's hash
// with every configured token's, without stopping at a match, so the time taken says
// neither whether nor which token matched.
func (s *server) authenticate(r *http.Request) (principal, string, error) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if h == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
		return principal{}, "", errNoToken
	}
	tok = strings.TrimSpace(tok)
	p, err := s.authenticateToken(tok)
	return p, tok, err
}

// authenticateToken finds the configured token tok is, as authenticate does for a
// header; the console's sign-in checks tokens with it too.
func (s *server) authenticateToken(tok string) (principal, error) {
	if tok == "" {
		return principal{}, errNoToken
	}
	sum := sha256.Sum256([]byte(tok))
	found, idx := 0, 0
	for i := range s.tokens {
		eq := subtle.ConstantTimeCompare(sum[:], s.tokens[i].sum[:])
		idx = subtle.ConstantTimeSelect(eq, i, idx)
		found |= eq
	}
	if found == 0 {
		return principal{}, errBadToken
	}
	return principal{name: s.tokens[idx].name, role: s.tokens[idx].role}, nil
}
