package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/kycstate/kycstate/domain"
	"go.uber.org/zap"
)

// Cookie names. Both are scoped to /console/, HttpOnly and SameSite=Strict.
const (
	sessionCookie = "kycstate_console"
	// preCookie holds a random nonce from the sign-in page to its POST, so that the
	// sign-in form carries a CSRF token before any session exists (login CSRF: another
	// site signing a browser in under the attacker's token).
	preCookie  = "kycstate_console_pre"
	cookiePath = "/console/"
	// maxCookieBytes bounds what is decoded: a session cookie is some 200 bytes.
	maxCookieBytes = 1024
	preTTL         = time.Hour
)

// keys are the HMAC keys derived from the session key, one per use, so that a MAC made
// for one purpose is never accepted for another.
type keys struct {
	session, csrf, signin []byte
}

func deriveKeys(k []byte) keys {
	d := func(label string) []byte {
		m := hmac.New(sha256.New, k)
		m.Write([]byte("kycstate console " + label))
		return m.Sum(nil)
	}
	return keys{session: d("session"), csrf: d("csrf"), signin: d("signin")}
}

func mac(key []byte, parts ...string) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

var b64 = base64.RawURLEncoding

// session is what the cookie carries: who signed in, until when, and a random id that
// CSRF tokens and sign-out are tied to. Never the token.
type session struct {
	Name    string      `json:"n"`
	Role    domain.Role `json:"r"`
	Expires int64       `json:"e"` // Unix seconds
	ID      string      `json:"s"` // 16 random bytes, hex
}

func (s session) principal() Principal { return Principal{Name: s.Name, Role: s.Role} }

// encode returns the cookie value: base64url(JSON) "." base64url(HMAC).
func (k keys) encode(s session) string {
	body, _ := json.Marshal(s) // strings and integers: cannot fail
	p := b64.EncodeToString(body)
	return p + "." + b64.EncodeToString(mac(k.session, p))
}

// decode checks the MAC before looking inside, then the expiry and the role.
func (k keys) decode(v string, now time.Time) (session, bool) {
	if len(v) > maxCookieBytes {
		return session{}, false
	}
	p, sig, ok := strings.Cut(v, ".")
	if !ok {
		return session{}, false
	}
	got, err := b64.DecodeString(sig)
	if err != nil || !hmac.Equal(got, mac(k.session, p)) {
		return session{}, false
	}
	body, err := b64.DecodeString(p)
	if err != nil {
		return session{}, false
	}
	var s session
	if err := json.Unmarshal(body, &s); err != nil {
		return session{}, false
	}
	if !s.Role.Valid() || s.ID == "" || now.Unix() >= s.Expires {
		return session{}, false
	}
	return s, true
}

// csrfToken is the token every POST of a session carries.
func (k keys) csrfToken(s session) string { return b64.EncodeToString(mac(k.csrf, s.ID)) }

func (k keys) checkCSRF(s session, tok string) bool {
	got, err := b64.DecodeString(tok)
	return err == nil && hmac.Equal(got, mac(k.csrf, s.ID))
}

// signinToken is the sign-in form's CSRF token, tied to the pre-session nonce.
func (k keys) signinToken(nonce string) string { return b64.EncodeToString(mac(k.signin, nonce)) }

func (k keys) checkSignin(nonce, tok string) bool {
	got, err := b64.DecodeString(tok)
	return nonce != "" && err == nil && hmac.Equal(got, mac(k.signin, nonce))
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails
	return hex.EncodeToString(b)
}

// cookie builds one of the console's cookies; maxAge < 0 deletes it.
func (c *Console) cookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: name, Value: value, Path: cookiePath, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.secure || overHTTPS(r),
	}
}

// overHTTPS reports whether the browser reached the console over HTTPS: TLS here, or a
// TLS-terminating proxy that says so (X-Forwarded-Proto, or Forwarded's proto). The
// headers are trusted without knowing the proxy because Secure only narrows where the
// browser sends the cookie: a client that forges them only keeps its own cookie off
// plain HTTP.
func overHTTPS(r *http.Request) bool {
	if r.TLS != nil || strings.EqualFold(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto")), "https") {
		return true
	}
	for _, f := range r.Header.Values("Forwarded") {
		for _, elem := range strings.Split(f, ",") {
			for _, pair := range strings.Split(elem, ";") {
				k, v, _ := strings.Cut(strings.TrimSpace(pair), "=")
				if strings.EqualFold(k, "proto") && strings.EqualFold(strings.Trim(v, `"`), "https") {
					return true
				}
			}
		}
	}
	return false
}

// sessionOf returns the request's session, if it has a valid one that was not signed out.
func (c *Console) sessionOf(r *http.Request) (session, bool) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, false
	}
	now := c.now()
	s, ok := c.keys.decode(ck.Value, now)
	if !ok || c.revoked.has(s.ID, now) {
		return session{}, false
	}
	if c.signOuts != nil {
		ctx, cancel := context.WithTimeout(r.Context(), signOutWait)
		out, err := c.signOuts.SignedOut(ctx, s.ID, now)
		cancel()
		switch {
		case err != nil:
			c.warnSignOuts("shared sign-outs not checked; only this node's apply", err)
		case out:
			c.revoked.add(s.ID, s.Expires, now) // no need to ask again
			return session{}, false
		}
	}
	return s, true
}

// signOutWait bounds the shared sign-out store's answers, as part of a page's time.
const signOutWait = 2 * time.Second

// signOut ends s on this node and, when they are shared, on the others.
func (c *Console) signOut(ctx context.Context, s session) {
	c.revoked.add(s.ID, s.Expires, c.now())
	if c.signOuts == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, signOutWait)
	defer cancel()
	if err := c.signOuts.SignOut(ctx, s.ID, time.Unix(s.Expires, 0)); err != nil {
		c.log.Warn("sign-out not shared with the other query nodes; they accept the session until it expires",
			zap.String("token", s.Name), zap.Error(err))
	}
}

// warnSignOuts logs a failure of the shared sign-outs at most once a minute: during an
// outage every page would log it.
func (c *Console) warnSignOuts(msg string, err error) {
	now := c.now().Unix()
	if last := c.warned.Load(); now-last >= 60 && c.warned.CompareAndSwap(last, now) {
		c.log.Warn(msg, zap.Error(err))
	}
}

// revocations remembers signed-out sessions until they would have expired, so a copied
// cookie stops working at sign-out rather than at expiry. It is bounded: when full of
// unexpired entries it forgets the one closest to expiry, the least harmful to forget.
type revocations struct {
	mu  sync.Mutex
	max int
	m   map[string]int64 // session id -> expiry, Unix seconds
}

func newRevocations(max int) *revocations {
	return &revocations{max: max, m: make(map[string]int64)}
}

func (v *revocations) add(id string, expires int64, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.m) >= v.max {
		soonest, soonestID := int64(0), ""
		for k, e := range v.m {
			if e <= now.Unix() {
				delete(v.m, k)
			} else if soonestID == "" || e < soonest {
				soonest, soonestID = e, k
			}
		}
		if len(v.m) >= v.max {
			delete(v.m, soonestID)
		}
	}
	v.m[id] = expires
}

func (v *revocations) has(id string, now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.m[id]
	return ok && e > now.Unix()
}
