package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/source"
	"go.uber.org/zap"
)

// routes is the console's whole surface. Every page but sign-in and the static files
// needs a session; what each shows depends on the session's role, as in the API.
func (c *Console) routes() {
	c.mux.Handle("GET /console/static/", static())
	c.mux.HandleFunc("GET /console/signin", c.signinPage)
	c.mux.HandleFunc("POST /console/signin", c.signin)
	c.mux.Handle("POST /console/signout", c.post(domain.RoleReader, c.signout))
	c.mux.Handle("GET /console/{$}", c.page(domain.RoleReader, c.search))
	c.mux.Handle("GET /console/applicants/{id}", c.page(domain.RoleReader, c.applicant))
	c.mux.Handle("GET /console/anomalies", c.page(domain.RoleAuditor, c.anomalies))
	c.mux.Handle("GET /console/changes", c.page(domain.RoleReader, c.changes))
	c.mux.Handle("GET /console/changes/feed", c.feed()) // JSON for changes.js
	c.mux.Handle("GET /console/ops", c.page(domain.RoleReader, c.ops))
	c.mux.Handle("POST /console/ops/verify", c.post(domain.RoleAuditor, c.verify))
	c.mux.Handle("POST /console/applicants/{id}/erase", c.post(domain.RoleAdmin, c.erase))
	c.mux.Handle("/console/", c.page(domain.RoleReader, func(w http.ResponseWriter, r *http.Request, s session) error {
		return errParam("path", domain.KindNotFound, "no console page "+quote(r.URL.Path))
	}))
}

// sessionHandler is a page handler that runs with a valid session. It returns an error
// only before it has written anything, and page answers it (fail) as the API would; nil
// when it has answered or there is no one left to answer.
type sessionHandler func(w http.ResponseWriter, r *http.Request, s session) error

// page runs h for requests with a session whose role allows need, and answers h's error.
// Without a session (none, expired, forged, signed out) it redirects to sign-in, coming
// back here afterwards.
func (c *Console) page(need domain.Role, h sessionHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := c.sessionOf(r)
		if !ok {
			c.toSignin(w, r)
			return
		}
		var err error
		if s.Role.Allows(need) {
			err = h(w, r, s)
		} else {
			err = errParam("role", domain.KindForbidden,
				fmt.Sprintf("this page needs the %s role; %s is signed in as %s", need, s.Name, s.Role))
		}
		if err != nil {
			c.fail(w, r, &s, err)
		}
	})
}

// post is page for form POSTs: also the body bounded and the session's CSRF token.
func (c *Console) post(need domain.Role, h sessionHandler) http.Handler {
	return c.page(need, func(w http.ResponseWriter, r *http.Request, s session) error {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			return errParam("form", domain.KindInvalid, "malformed or oversized form")
		}
		if !c.keys.checkCSRF(s, r.PostForm.Get("csrf")) {
			return errParam("csrf", domain.KindForbidden, "the form's CSRF token does not match this session; reload the page and try again")
		}
		return h(w, r, s)
	})
}

// toSignin drops any stale session cookie and sends the browser to the sign-in page.
func (c *Console) toSignin(w http.ResponseWriter, r *http.Request) {
	if _, err := r.Cookie(sessionCookie); err == nil {
		http.SetCookie(w, c.cookie(r, sessionCookie, "", -1))
	}
	target := "/console/signin"
	if r.Method == http.MethodGet {
		if next := safeNext(r.URL.RequestURI()); next != "/console/" {
			target += "?next=" + url.QueryEscape(next)
		}
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

type signinData struct {
	Next  string
	Token string // the sign-in form's CSRF token
}

func (c *Console) signinPage(w http.ResponseWriter, r *http.Request) {
	p, err := parseParams(r.URL.RawQuery)
	next := "/console/"
	if err == nil {
		next = safeNext(p.v.Get("next"))
	}
	c.renderSignin(w, r, http.StatusOK, next, "")
}

// renderSignin shows the sign-in form with a fresh pre-session nonce and its CSRF token.
func (c *Console) renderSignin(w http.ResponseWriter, r *http.Request, status int, next, msg string) {
	nonce := randomHex(16)
	http.SetCookie(w, c.cookie(r, preCookie, nonce, int(preTTL/time.Second)))
	c.render(w, r, status, "signin", view{Title: "Sign in", Error: msg,
		Data: signinData{Next: next, Token: c.keys.signinToken(nonce)}})
}

// signin checks the token and starts a session. A valid token always signs in; an
// attempt from a source with many recent failures is held first (slower), right or wrong
// alike, and a failure is logged (rate-limited) with the source and the token's
// fingerprint, never with what was typed. The token is checked before the slower is
// asked, in the backend's constant time, so the decision can never turn a valid token
// away.
func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		c.renderSignin(w, r, http.StatusBadRequest, "/console/", "The sign-in form was malformed or too large.")
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	pre, _ := r.Cookie(preCookie)
	if pre == nil || !c.keys.checkSignin(pre.Value, r.PostForm.Get("csrf")) {
		c.renderSignin(w, r, http.StatusForbidden, next, "The sign-in form expired or did not come from this console; try again.")
		return
	}
	tok := strings.TrimSpace(r.PostForm.Get("token"))
	if tok == "" {
		c.renderSignin(w, r, http.StatusUnauthorized, next, "Enter an API token.")
		return
	}
	src, now := c.proxies.Of(r), c.now()
	var p Principal
	err := domain.E("console.signin", domain.KindUnauthorized, "token longer than any configured one")
	if len(tok) <= maxTokenBytes {
		p, err = c.b.Authenticate(tok)
	}
	if err == nil && !p.Role.Valid() {
		err = domain.E("console.signin", domain.KindForbidden, "token has a role the console does not know")
	}
	hold := c.slower.attempt(source.Key(src), now, err != nil)
	if err != nil {
		reason := "unknown token"
		if domain.KindOf(err) == domain.KindForbidden {
			reason = "unknown role"
		}
		c.refusals.Refused(src, tok, reason, zap.String("path", r.URL.Path))
	}
	if hold > 0 {
		if c.sleep(r.Context(), hold) != nil {
			return // the browser went away; no one to answer
		}
		now = c.now()
	}
	if err != nil {
		c.renderSignin(w, r, http.StatusUnauthorized, next, "That token is not valid here.")
		return
	}
	s := session{Name: p.Name, Role: p.Role, Expires: now.Add(c.ttl).Unix(), ID: randomHex(16)}
	http.SetCookie(w, c.cookie(r, sessionCookie, c.keys.encode(s), int(c.ttl/time.Second)))
	http.SetCookie(w, c.cookie(r, preCookie, "", -1))
	c.log.Info("console sign-in", zap.String("token", p.Name), zap.String("role", string(p.Role)),
		zap.String("source", source.String(src)), zap.Duration("held", hold))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) signout(w http.ResponseWriter, r *http.Request, s session) error {
	c.signOut(r.Context(), s)
	http.SetCookie(w, c.cookie(r, sessionCookie, "", -1))
	c.log.Info("console sign-out", zap.String("token", s.Name))
	http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
	return nil
}

// base is the view every signed-in page starts from.
func (c *Console) base(s session, title, nav string) view {
	p := s.principal()
	return view{Title: title, Nav: nav, User: &p, CSRF: c.keys.csrfToken(s)}
}

type searchData struct {
	Query   string
	Matches []domain.State
}

// applicantPath is the address of provider p's applicant id: an Allpass applicant's as it
// always was, Allpass being the default; another provider's names it.
func applicantPath(p domain.Provider, id domain.ApplicantID) string {
	path := "/console/applicants/" + url.PathEscape(string(id))
	if p = domain.ProviderOf(string(p)); p != domain.ProviderAllpass {
		path += "?provider=" + url.QueryEscape(string(p))
	}
	return path
}

// search is the home page: a box for an applicant id or an externalUserId. One match
// opens the applicant; several are listed; none is said plainly.
func (c *Console) search(w http.ResponseWriter, r *http.Request, s session) error {
	p, err := parseParams(r.URL.RawQuery)
	if err != nil {
		return err
	}
	v := c.base(s, "Search", "search")
	q, err := parseSearch(p.v.Get("q"))
	if err != nil {
		return err
	}
	d := searchData{Query: q}
	v.Data = &d
	if q == "" {
		c.render(w, r, http.StatusOK, "search", v)
		return nil
	}
	ctx := r.Context()
	if _, id, err := parseApplicant(q, params{}); err == nil {
		switch st, err := c.b.State(ctx, "", id); {
		case err == nil:
			http.Redirect(w, r, applicantPath(st.Provider, st.ApplicantID), http.StatusSeeOther)
			return nil
		case domain.KindOf(err) != domain.KindNotFound:
			return err
		}
		// Not an applicant id we know: it may still be someone's externalUserId.
	}
	d.Matches, err = c.b.Lookup(ctx, domain.ExternalUserID(q), lookupLimit)
	switch {
	case err != nil:
		return err
	case len(d.Matches) == 1:
		http.Redirect(w, r, applicantPath(d.Matches[0].Provider, d.Matches[0].ApplicantID), http.StatusSeeOther)
	case len(d.Matches) == 0:
		v.Error = "No applicant has the id or externalUserId " + quote(q) + "."
		c.render(w, r, http.StatusNotFound, "search", v)
	default:
		c.render(w, r, http.StatusOK, "search", v)
	}
	return nil
}

type applicantData struct {
	ID       domain.ApplicantID
	Provider domain.Provider // the applicant's: every link on the page names it
	State    domain.State
	AsOf     *AsOf // nil: current state
	SeqIn    string
	AtIn     string
	History  []client.Event // nil for a reader
	After    uint64         // the page's ?after
	Next     uint64         // 0: last page
}

// Included reports whether e is part of the state shown (all of it without an as-of).
func (d *applicantData) Included(e client.Event) bool {
	switch {
	case d.AsOf == nil:
		return true
	case d.AsOf.Seq != 0:
		return e.Seq <= d.AsOf.Seq
	}
	return !e.ReceivedAt.Time().After(d.AsOf.Time)
}

// applicant shows one applicant: the state (current, or as of ?seq / ?at for auditors)
// and, for auditors, the history timeline, a page of it at a time.
func (c *Console) applicant(w http.ResponseWriter, r *http.Request, s session) error {
	p, err := parseParams(r.URL.RawQuery)
	if err != nil {
		return err
	}
	prov, id, err := parseApplicant(r.PathValue("id"), p)
	if err != nil {
		return err
	}
	as, hasAsOf, err := p.asOf()
	if err != nil {
		return err
	}
	after, err := p.seq("after")
	if err != nil {
		return err
	}
	auditor := s.Role.Allows(domain.RoleAuditor)
	if hasAsOf && !auditor {
		return errParam("seq", domain.KindForbidden, "point-in-time state needs the auditor role")
	}
	if p.has("after") && !auditor {
		return errParam("after", domain.KindForbidden, "history needs the auditor role")
	}
	ctx := r.Context()
	d := applicantData{ID: id, After: after, SeqIn: p.get("seq"), AtIn: p.get("at")}
	if hasAsOf {
		d.AsOf = &as
		d.State, err = c.b.StateAt(ctx, prov, id, as)
	} else {
		d.State, err = c.b.State(ctx, prov, id)
	}
	if err != nil {
		return err
	}
	// From here the page names the applicant found, with its provider, so every link
	// and form on it reaches this applicant and no other holding the same id.
	d.ID, d.Provider = d.State.ApplicantID, domain.ProviderOf(string(d.State.Provider))
	if auditor {
		h, err := c.b.History(ctx, d.Provider, d.ID, after, pageSize)
		if err != nil {
			return err
		}
		d.History = h.Events
		if h.Next != nil {
			d.Next = *h.Next
		}
	}
	v := c.base(s, "Applicant "+string(id), "search")
	v.Data = &d
	c.render(w, r, http.StatusOK, "applicant", v)
	return nil
}

type listData struct {
	Anomalies []client.Anomaly
	Changes   []domain.Change
	After     uint64
	Next      uint64 // 0: no further page known
	Latest    uint64 // the checkpoint, for "follow from now"
}

func (c *Console) anomalies(w http.ResponseWriter, r *http.Request, s session) error {
	after, err := afterParam(r.URL.RawQuery)
	if err != nil {
		return err
	}
	page, err := c.b.Anomalies(r.Context(), after, pageSize)
	if err != nil {
		return err
	}
	d := listData{Anomalies: page.Anomalies, After: after}
	if page.Next != nil {
		d.Next = *page.Next
	}
	v := c.base(s, "Irregular events", "anomalies")
	v.Data = &d
	c.render(w, r, http.StatusOK, "anomalies", v)
	return nil
}

// changes lists status changes after ?after; changes.js then follows the feed from the
// last one shown. Without JavaScript the page offers the next page and a refresh link.
func (c *Console) changes(w http.ResponseWriter, r *http.Request, s session) error {
	after, err := afterParam(r.URL.RawQuery)
	if err != nil {
		return err
	}
	changes, err := c.b.Changes(r.Context(), after, pageSize)
	if err != nil {
		return err
	}
	d := listData{Changes: changes, After: after, Next: after, Latest: c.b.Health(r.Context()).Checkpoint}
	if n := len(changes); n > 0 {
		d.Next = changes[n-1].Seq
	}
	v := c.base(s, "Live changes", "changes")
	v.Data = &d
	c.render(w, r, http.StatusOK, "changes", v)
	return nil
}

// feedChange is one change as changes.js reads it; the script writes every field as text.
type feedChange struct {
	Seq            uint64 `json:"seq"`
	ApplicantID    string `json:"applicantId"`
	Provider       string `json:"provider"`
	ExternalUserID string `json:"externalUserId"`
	From           string `json:"from"`
	To             string `json:"to"`
	At             string `json:"at"`
}

type feedBody struct {
	Changes []feedChange `json:"changes"`
	Next    uint64       `json:"next"`
	Error   string       `json:"error,omitempty"`
}

// feed answers changes.js: JSON, with the session cookie. Without a session it answers
// 401 rather than a redirect, which a script cannot follow to a sign-in form.
func (c *Console) feed() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answer := func(status int, b feedBody) {
			body, _ := json.Marshal(b)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			w.Write(body)
		}
		if _, ok := c.sessionOf(r); !ok {
			answer(http.StatusUnauthorized, feedBody{Changes: []feedChange{}, Error: "signed out: sign in again"})
			return
		}
		after, err := afterParam(r.URL.RawQuery)
		if err != nil {
			status, _, msg := c.answer(r, err)
			answer(status, feedBody{Changes: []feedChange{}, Error: msg})
			return
		}
		changes, err := c.b.Changes(r.Context(), after, pageSize)
		if err != nil {
			status, _, msg := c.answer(r, err)
			answer(status, feedBody{Changes: []feedChange{}, Next: after, Error: msg})
			return
		}
		b := feedBody{Changes: make([]feedChange, len(changes)), Next: after}
		for i, ch := range changes {
			b.Changes[i] = feedChange{Seq: ch.Seq, ApplicantID: string(ch.ApplicantID), Provider: string(domain.ProviderOf(string(ch.Provider))),
				ExternalUserID: string(ch.ExternalUserID),
				From:           statusText(ch.From), To: string(ch.To), At: ch.At.UTC().Format(time.RFC3339Nano)}
			b.Next = ch.Seq
		}
		answer(http.StatusOK, b)
	})
}

type opsData struct {
	Health   Health
	Verified *domain.VerifyResult
	Took     time.Duration
}

func (c *Console) ops(w http.ResponseWriter, r *http.Request, s session) error {
	v := c.base(s, "Operations", "ops")
	v.Data = &opsData{Health: c.b.Health(r.Context())}
	c.render(w, r, http.StatusOK, "ops", v)
	return nil
}

// verify runs one verify and shows its result on the ops page. It may read the whole
// log, so the write deadline moves past the backend's bound.
func (c *Console) verify(w http.ResponseWriter, r *http.Request, s session) error {
	if c.verifyBound > 0 {
		err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(c.verifyBound))
		if err != nil && !errors.Is(err, http.ErrNotSupported) {
			c.log.Warn("verify: cannot extend the write deadline", zap.Error(err))
		}
	}
	start := time.Now()
	res, err := c.b.Verify(r.Context())
	if errors.Is(r.Context().Err(), context.Canceled) {
		return nil // the browser went away; no one to answer
	}
	if err != nil {
		return err
	}
	c.log.Info("console verify", zap.String("token", s.Name), zap.Uint64("checkpoint", res.Checkpoint),
		zap.Int("differences", len(res.Differences)))
	v := c.base(s, "Operations", "ops")
	v.Data = &opsData{Health: c.b.Health(r.Context()), Verified: &res, Took: time.Since(start).Round(time.Millisecond)}
	c.render(w, r, http.StatusOK, "ops", v)
	return nil
}

// erase erases the applicant's personal data (admin, a POST with the session's CSRF
// token, as every console form) and shows the applicant again, now erased.
func (c *Console) erase(w http.ResponseWriter, r *http.Request, s session) error {
	p, err := parseParams(r.URL.RawQuery)
	if err != nil {
		return err
	}
	prov, id, err := parseApplicant(r.PathValue("id"), p)
	if err != nil {
		return err
	}
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	if reason == "" {
		return errParam("reason", domain.KindInvalid, "an erasure needs a reason")
	}
	seq, err := c.b.Erase(r.Context(), prov, id, s.Name, reason)
	if err != nil {
		return err
	}
	c.log.Info("console erase", zap.String("token", s.Name), zap.String("provider", string(prov)),
		zap.String("applicantId", string(id)), zap.Uint64("seq", seq))
	http.Redirect(w, r, applicantPath(prov, id), http.StatusSeeOther)
	return nil
}
