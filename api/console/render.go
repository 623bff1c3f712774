package console

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/internal/httperr"
	"go.uber.org/zap"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// csp allows the console's own files and nothing else: no inline script or style (so
// markup that slipped through could not run), no other origin, no framing, forms only to
// the console itself.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; font-src 'none'; object-src 'none'; base-uri 'none'; " +
	"form-action 'self'; frame-ancestors 'none'"

// setHeaders puts the console's security headers on a response. Cache-Control is
// no-store: every page but the static files shows log data, and the static handler
// relaxes it.
func setHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

// statusText shows a status; "none" before the first status event.
func statusText(s domain.Status) string {
	if s == domain.StatusNone {
		return "none"
	}
	return string(s)
}

// wireStatus shows a status in the API's form, where null is none.
func wireStatus(s *string) string {
	if s == nil {
		return statusText(domain.StatusNone)
	}
	return *s
}

// pages are the parsed templates, one set per page, each with the shared layout.
type pages map[string]*template.Template

var funcs = template.FuncMap{
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format(time.RFC3339Nano)
	},
	"status": statusText,
	// provider names an applicant's provider: one stored before providers were recorded
	// is empty, and was Allpass's.
	"provider":   func(p domain.Provider) domain.Provider { return domain.ProviderOf(string(p)) },
	"wireStatus": wireStatus,
	"ext": func(e domain.ExternalUserID) string {
		if e == "" {
			return "—"
		}
		return string(e)
	},
	// wire is a value as indented JSON: a history event as the API answers it, for the
	// auditor's raw view. A value that does not encode says so, without the encoder's
	// text, which may quote the value.
	"wire": func(v any) string {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return "(this value cannot be shown as JSON)"
		}
		return string(b)
	},
	"allows": func(p *Principal, need domain.Role) bool { return p != nil && p.Role.Allows(need) },
}

func parsePages() (pages, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := pages{}
	for _, n := range names {
		base := n[len("templates/") : len(n)-len(".html")]
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, err
		}
		out[base] = t
	}
	return out, nil
}

// view is what every page template receives.
type view struct {
	Title string
	Nav   string     // the nav item to mark current
	User  *Principal // nil: not signed in
	CSRF  string     // the session's CSRF token, for the sign-out form and other POSTs
	Error string     // shown with data-test="error"
	Code  string     // the error's stable code, as the API answers it (data-code)
	Data  any        // the page's own data
}

// render writes page with status. The page is executed into a buffer first, so a
// template error becomes a 500 and never half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, v view) {
	t, ok := c.pages[page]
	if !ok {
		c.log.Error("no such page", zap.String("page", page))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		c.log.Error("page failed to render", zap.String("page", page), zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// fail renders an error page for err with what the API answers for it (httperr.Answer):
// its status, and its caller-safe message or its kind's generic one. Nothing written for
// the logs (a store's text, a key id, a parser's words) reaches the page; a 5xx is logged
// in full.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	status, code, msg := c.answer(r, err)
	v := view{Title: http.StatusText(status), Error: msg, Code: code}
	if s != nil {
		p := s.principal()
		v.User, v.CSRF = &p, c.keys.csrfToken(*s)
	}
	c.render(w, r, status, "error", v)
}

// answer is httperr.Answer, with the failures that are the service's own logged.
func (c *Console) answer(r *http.Request, err error) (status int, code, msg string) {
	status, code, msg = httperr.Answer(err)
	switch {
	case status == http.StatusServiceUnavailable:
		c.log.Warn("console request unavailable", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
	case status >= 500:
		c.log.Error("console request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
	}
	return status, code, msg
}

// static serves the embedded stylesheet and script.
func static() http.Handler {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(fmt.Sprint("console: embedded static files: ", err)) // a build defect
	}
	files := http.StripPrefix("/console/static/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		// The files change only with the binary; revalidate rather than store them blind.
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
