package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
)

// Values of the reason label of kycstate_reconcile_openapi_errors_total, one per way an
// Open API call fails. 404 is not among them: it is the check result not_found.
const (
	ReasonUnauthorized = "unauthorized" // 401: the private key is refused; the app's sweep stops
	ReasonForbidden    = "forbidden"    // 403: likewise
	ReasonRateLimited  = "rate_limited" // 429: backed off for Retry-After
	ReasonServerError  = "server_error" // 5xx: backed off
	ReasonTimeout      = "timeout"      // no whole answer within open_api.timeout: backed off
	ReasonTransport    = "transport"    // connection refused, reset, DNS: backed off
	ReasonRedirect     = "redirect"     // a redirect to another host, or too many
	ReasonHTTPStatus   = "http_status"  // another status
	ReasonTooLarge     = "too_large"    // a body over the bound
	ReasonMalformed    = "malformed"    // not the envelope: HTML, not JSON, data of no shape
	ReasonBadSignature = "bad_signature"
	ReasonInvalid      = "invalid" // data fails a field check: id of another applicant, unknown status, updatedAt
	ReasonRefused      = "refused" // the envelope says status false
	ReasonAppend       = "append"  // the event log did not confirm the append
	ReasonNoOpenAPI    = "not_configured"
)

// fetched is one Open API answer as received, before it is parsed.
type fetched struct {
	body      []byte
	signature string
	at        time.Time // when the answer arrived
}

// callError is a failed call: a reason label, a caller-safe message (the report's), for
// 429 the wait Allpass asked for, and the transport's own error for the log.
type callError struct {
	reason     string
	msg        string
	retryAfter time.Duration
	err        error // nil, or the cause; it may name the host, so it is logged, never reported
}

func (e *callError) Error() string { return e.msg }

// client calls one app's Open API. Its http.Client follows no redirect to another host
// (the private key would go with it), bounds each call by the app's timeout (the body
// included, so a trickled body is cut) and reads at most maxBody bytes.
type client struct {
	base    *url.URL
	timeout time.Duration
	// sign adds the request's authentication: Allpass's private key, or a provider's.
	sign func(req *http.Request, id domain.ApplicantID) error
	// path is the request's path under base for an applicant.
	path func(id domain.ApplicantID) string
	// sigHeader is the answer's signature header, kept with the body ("" for none).
	sigHeader string
	maxBody   int64
	tr        *http.Transport
	hc        *http.Client
}

// maxRedirects bounds same-host redirects (a trailing slash, a versioned path).
const maxRedirects = 3

func newClient(app *allpass.App, cfg OpenAPI, maxBody int64) (*client, error) {
	const op = "reconcile.newClient"
	if cfg.PrivateKey == "" {
		return nil, domain.E(op, domain.KindInvalid, fmt.Sprintf("app %q: open_api.private_key is empty", app.Name))
	}
	c, err := newHTTPClient(op, app.Name, "open_api", cfg.BaseURL, cfg.Timeout, maxBody)
	if err != nil {
		return nil, err
	}
	key := cfg.PrivateKey
	c.path = allpass.OpenAPIPath
	c.sigHeader = allpass.SignatureHeader
	c.sign = func(req *http.Request, _ domain.ApplicantID) error {
		req.Header.Set(allpass.PrivateKeyHeader, key)
		return nil
	}
	return c, nil
}

// newHTTPClient returns a client of base (the config key section names it in errors)
// with no path, signing or signature header yet.
func newHTTPClient(op, app, section, base string, timeout time.Duration, maxBody int64) (*client, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" {
		return nil, domain.E(op, domain.KindInvalid, fmt.Sprintf("app %q: %s.base_url must be an http(s) URL with a host and no credentials or query", app, section))
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4
	c := &client{base: u, timeout: timeout, maxBody: maxBody, tr: tr}
	c.hc = &http.Client{Transport: tr, CheckRedirect: c.checkRedirect}
	return c, nil
}

var errRedirect = errors.New("redirect refused")

func (c *client) checkRedirect(req *http.Request, via []*http.Request) error {
	if req.URL.Scheme != c.base.Scheme || req.URL.Host != c.base.Host || len(via) > maxRedirects {
		return errRedirect
	}
	return nil
}

func (c *client) close() { c.tr.CloseIdleConnections() }

// fetch asks for one applicant. Errors: a *callError, or ctx's error when ctx (not the
// call's own timeout) ended.
func (c *client) fetch(ctx context.Context, id domain.ApplicantID) (fetched, error) {
	callCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := c.base.JoinPath(c.path(id)).String()
	req, err := http.NewRequestWithContext(callCtx, http.MethodGet, u, nil)
	if err == nil {
		err = c.sign(req, id)
	}
	if err != nil {
		return fetched{}, &callError{reason: ReasonTransport, msg: "building the request failed"}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "kycstate-reconcile")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fetched{}, c.transportErr(ctx, callCtx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return fetched{}, c.transportErr(ctx, callCtx, err)
	}
	if int64(len(body)) > c.maxBody {
		return fetched{}, &callError{reason: ReasonTooLarge, msg: fmt.Sprintf("the Open API answer is over %d bytes", c.maxBody)}
	}
	f := fetched{body: body, at: time.Now().UTC()}
	if c.sigHeader != "" {
		f.signature = resp.Header.Get(c.sigHeader)
	}
	switch s := resp.StatusCode; {
	case s == http.StatusOK:
		return f, nil
	case s == http.StatusNotFound:
		return f, errNotFound
	case s == http.StatusUnauthorized:
		return f, &callError{reason: ReasonUnauthorized, msg: "the Open API refused the private key (401)"}
	case s == http.StatusForbidden:
		return f, &callError{reason: ReasonForbidden, msg: "the Open API refused the private key (403)"}
	case s == http.StatusTooManyRequests:
		return f, &callError{reason: ReasonRateLimited, msg: "the Open API is rate limiting (429)", retryAfter: retryAfter(resp.Header.Get("Retry-After"), f.at)}
	case s >= 500:
		return f, &callError{reason: ReasonServerError, msg: fmt.Sprintf("the Open API answered %d", s)}
	case s >= 300 && s < 400:
		return f, &callError{reason: ReasonRedirect, msg: fmt.Sprintf("the Open API answered a redirect (%d) that was not followed", s)}
	}
	return f, &callError{reason: ReasonHTTPStatus, msg: fmt.Sprintf("the Open API answered %d", resp.StatusCode)}
}

// errNotFound is a 404: Allpass has no such applicant.
var errNotFound = errors.New("the Open API has no such applicant (404)")

// transportErr classifies a failed request or body read. The message is the report's: it
// names no URL and quotes no transport error (which names the host and says nothing a
// caller can act on); the error itself goes to the log with the back-off.
func (c *client) transportErr(parent, call context.Context, err error) error {
	if parent.Err() != nil {
		return parent.Err()
	}
	if errors.Is(err, errRedirect) {
		return &callError{reason: ReasonRedirect, msg: "the Open API redirected to another host, or too often; not followed"}
	}
	var ne net.Error
	if call.Err() != nil || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &callError{reason: ReasonTimeout, msg: fmt.Sprintf("no whole answer from the Open API within %s", c.timeout)}
	}
	return &callError{reason: ReasonTransport, msg: "the Open API could not be reached", err: err}
}

// retryAfter reads a Retry-After of seconds or an HTTP date; absent or unreadable: 0.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
