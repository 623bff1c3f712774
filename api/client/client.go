// Package client is the Go client of kycstate's read API (DESIGN.md section 7,
// api/openapi.yaml): the response types, which the API itself encodes, and one method
// per route under /v1, each returning the answer's X-Kycstate-Seq beside its value.
// Callers branch on an answer's stable code (Code, the Code* constants), never on its
// message, which is for people and may be reworded.
//
// Product services import it, so it imports nothing of the server: only domain's
// vocabulary and the shared JSON quoting (internal/jsonscan), never a store, NATS or bbolt.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kycstate/kycstate/domain"
)

// SeqHeader carries, on every answer, the last stream sequence the projection had applied
// when the answer was read.
const SeqHeader = "X-Kycstate-Seq"

// Codes of the read API's error answers. They never change meaning; a new failure gets a
// new code.
const (
	CodeInvalid          = "invalid"            // 400: a parameter is malformed; the message starts with its name
	CodeUnauthorized     = "unauthorized"       // 401: no valid bearer token
	CodeForbidden        = "forbidden"          // 403: the token's role may not
	CodeNotFound         = "not_found"          // 404: no such applicant (or none by then), or no such route
	CodeMethodNotAllowed = "method_not_allowed" // 405
	CodeUnprocessable    = "unprocessable"      // 422: a history too long to fold for a point in time
	CodeUnavailable      = "unavailable"        // 503: the projection or the log cannot answer now; retry
	CodeInternal         = "internal"           // 500: the details are in the service's log
	// CodeVerifyDisabled (404): this node was started without an event log to compare
	// with; verify offline on a stopped node's data dir instead.
	CodeVerifyDisabled = "verify_disabled"
	// CodeConflict (409): a verify is already running on this node; ask again later.
	CodeConflict = "conflict"
	// CodeReconcileDisabled (404): this node has no Open API configured for any app.
	CodeReconcileDisabled = "reconcile_disabled"
	// CodeAmbiguousApplicant (409): applicants of two providers (or two apps of one) hold
	// the id asked for; ask again naming the provider (?provider=).
	CodeAmbiguousApplicant = "ambiguous_applicant"
)

// Error is an answer other than 200. Code is "" when the body was not the API's error
// form (a proxy's page, say); Message is then the status text.
type Error struct {
	Status  int
	Code    string
	Message string
	Seq     uint64 // X-Kycstate-Seq of the answer, 0 without one
}

func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("read API answered %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("read API answered %d %s: %s", e.Status, e.Code, e.Message)
}

// Code returns the code of the *Error in err's chain, or "".
func Code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// ErrorBody is the body of every error answer: {"error":{"code","message"}}.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Client reads from one read API. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	token     string
	http      *http.Client
	userAgent string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sends through hc (default: a client that follows no redirect, so the
// token goes to base only).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithUserAgent names the caller in User-Agent.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// New returns a client of the read API at base, authenticating with token. base may omit
// the scheme (127.0.0.1:8081) and may carry a path prefix (a proxy's); it must not carry
// credentials, a query or a fragment.
func New(base, token string, opts ...Option) (*Client, error) {
	u, err := parseBase(base)
	if err != nil {
		return nil, err
	}
	c := &Client{base: u, token: token, userAgent: "kycstate-client",
		http: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

func parseBase(base string) (*url.URL, error) {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil {
		return nil, errors.New("not a URL such as http://127.0.0.1:8081")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("must be an http or https URL, such as http://127.0.0.1:8081")
	case u.Host == "":
		return nil, errors.New("has no host; give one such as http://127.0.0.1:8081")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, errors.New("must not carry a query or fragment")
	case u.User != nil:
		return nil, errors.New("must not carry credentials; give the token separately")
	}
	return u, nil
}

// URL returns the address of path (segments joined under base), for messages.
func (c *Client) URL(path ...string) string { return c.base.JoinPath(path...).String() }

// StateQuery selects which state GET /v1/applicants/{id} answers.
type StateQuery struct {
	// MinSeq, if not 0, holds the request (bounded by the server) until the projection
	// has applied it; the answer's seq says how far it got.
	MinSeq uint64
	// At or Seq (auditor role, one of them): the state as known at that moment.
	At  time.Time
	Seq uint64
	// Provider, if not "", names whose applicant id is (DESIGN.md section 13); without
	// it, an Allpass applicant with the id answers, else the one other provider's.
	Provider domain.Provider
}

// State reads one applicant. seq is the answer's X-Kycstate-Seq.
func (c *Client) State(ctx context.Context, id domain.ApplicantID, q StateQuery) (st State, seq uint64, err error) {
	v := url.Values{}
	if q.MinSeq > 0 {
		v.Set("minSeq", strconv.FormatUint(q.MinSeq, 10))
	}
	if !q.At.IsZero() {
		v.Set("at", q.At.UTC().Format(time.RFC3339Nano))
	}
	if q.Seq > 0 {
		v.Set("seq", strconv.FormatUint(q.Seq, 10))
	}
	if q.Provider != "" {
		v.Set("provider", string(q.Provider))
	}
	seq, err = c.get(ctx, "applicant", &st, v, "v1", "applicants", string(id))
	return st, seq, err
}

// History reads one page of an applicant's history (auditor): events after after, at
// most limit (0: the server's default).
func (c *Client) History(ctx context.Context, id domain.ApplicantID, after uint64, limit int) (h History, seq uint64, err error) {
	return c.ProviderHistory(ctx, "", id, after, limit)
}

// ProviderHistory is History of provider p's applicant id ("" as History: an Allpass
// applicant with the id, else the one other provider's).
func (c *Client) ProviderHistory(ctx context.Context, p domain.Provider, id domain.ApplicantID, after uint64, limit int) (h History, seq uint64, err error) {
	v := page(after, "after", limit)
	if p != "" {
		v.Set("provider", string(p))
	}
	seq, err = c.get(ctx, "history", &h, v, "v1", "applicants", string(id), "history")
	return h, seq, err
}

// Erase erases an applicant's personal data (admin role; DESIGN.md section 11) for
// reason: its state keeps status and history, and says erased from then on. A repeated
// erasure is harmless. Codes: invalid (no reason), not_found, forbidden.
func (c *Client) Erase(ctx context.Context, id domain.ApplicantID, reason string) (e Erasure, seq uint64, err error) {
	seq, err = c.doBody(ctx, http.MethodPost, map[string]string{"reason": reason}, "erasure", &e, nil, "v1", "applicants", string(id), "erase")
	return e, seq, err
}

// ApplicantsByExternalUserID lists the applicants of a product's user id, in one app if
// appKey is not "".
func (c *Client) ApplicantsByExternalUserID(ctx context.Context, ext domain.ExternalUserID, appKey domain.AppKey, limit int) (a Applicants, seq uint64, err error) {
	v := page(0, "", limit)
	v.Set("externalUserId", string(ext))
	if appKey != "" {
		v.Set("appKey", string(appKey))
	}
	seq, err = c.get(ctx, "applicant list", &a, v, "v1", "applicants")
	return a, seq, err
}

// ApplicantsByStatus lists one page of the applicants with status st, after cursor.
func (c *Client) ApplicantsByStatus(ctx context.Context, st domain.Status, cursor domain.ApplicantID, limit int) (a Applicants, seq uint64, err error) {
	v := page(0, "", limit)
	v.Set("status", string(st))
	if cursor != "" {
		v.Set("cursor", string(cursor))
	}
	seq, err = c.get(ctx, "applicant list", &a, v, "v1", "applicants")
	return a, seq, err
}

// Anomalies reads one page of irregular events after cursor (auditor).
func (c *Client) Anomalies(ctx context.Context, cursor uint64, limit int) (a Anomalies, seq uint64, err error) {
	seq, err = c.get(ctx, "anomaly list", &a, page(cursor, "cursor", limit), "v1", "anomalies")
	return a, seq, err
}

// Changes reads the status changes after after; with wait > 0 the server holds the
// request (whole seconds, at most 60) until one exists.
func (c *Client) Changes(ctx context.Context, after uint64, limit int, wait time.Duration) (ch Changes, seq uint64, err error) {
	v := page(after, "after", limit)
	if s := int64(wait / time.Second); s > 0 {
		v.Set("wait", strconv.FormatInt(s, 10))
	}
	seq, err = c.get(ctx, "change list", &ch, v, "v1", "changes")
	return ch, seq, err
}

// Verify asks the node to fold its log afresh and compare it with its projection
// (auditor). It may take minutes; ctx bounds the wait.
func (c *Client) Verify(ctx context.Context) (res Verify, seq uint64, err error) {
	var v verifyStrict
	seq, err = c.get(ctx, "verify result", &v, nil, "v1", "verify")
	return v.Verify, seq, err
}

// Reconcile asks the node to check one applicant against Allpass's Open API now and to
// append the Open API's status if it differs (auditor); dryRun compares only. A check
// that failed is a 200 whose report says so (Action "error"); an applicant kycstate
// never saw is a 404 with CodeNotFound.
func (c *Client) Reconcile(ctx context.Context, id domain.ApplicantID, dryRun bool) (rep Reconcile, seq uint64, err error) {
	var v url.Values
	if dryRun {
		v = url.Values{"dryRun": {"true"}}
	}
	var strict reconcileStrict
	seq, err = c.do(ctx, http.MethodPost, "reconcile report", &strict, v, "v1", "applicants", string(id), "reconcile")
	return strict.Reconcile, seq, err
}

// reconcileStrict refuses an answer without an action.
type reconcileStrict struct{ Reconcile }

func (r *reconcileStrict) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, &r.Reconcile); err != nil {
		return err
	}
	if r.Action == "" {
		return errors.New("no action")
	}
	return nil
}

// verifyStrict refuses a verify answer without its checkpoint or differences (a JSON
// object of another service, say), which the plain type would read as a clean result.
type verifyStrict struct{ Verify }

func (v *verifyStrict) UnmarshalJSON(b []byte) error {
	var probe struct {
		Checkpoint  *json.RawMessage `json:"checkpoint"`
		Differences *json.RawMessage `json:"differences"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return err
	}
	if probe.Checkpoint == nil || probe.Differences == nil || string(*probe.Differences) == "null" {
		return errors.New("no checkpoint or differences")
	}
	return json.Unmarshal(b, &v.Verify)
}

func page(from uint64, name string, limit int) url.Values {
	v := url.Values{}
	if from > 0 {
		v.Set(name, strconv.FormatUint(from, 10))
	}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	return v
}

// maxBody bounds an answer the client reads: a page of 1000 states is well under it.
const maxBody = 64 << 20

// get GETs the path with query q and decodes a 200 into out; what names out in errors.
// Unknown fields are ignored, so a newer service's answers still read.
func (c *Client) get(ctx context.Context, what string, out any, q url.Values, path ...string) (uint64, error) {
	return c.do(ctx, http.MethodGet, what, out, q, path...)
}

// do is get with another method (and no body).
func (c *Client) do(ctx context.Context, method, what string, out any, q url.Values, path ...string) (uint64, error) {
	return c.doBody(ctx, method, nil, what, out, q, path...)
}

// doBody is do with body (JSON) sent when not nil.
func (c *Client) doBody(ctx context.Context, method string, body any, what string, out any, q url.Values, path ...string) (uint64, error) {
	u := c.base.JoinPath(path...)
	u.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	seq, _ := strconv.ParseUint(resp.Header.Get(SeqHeader), 10, 64)
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return seq, fmt.Errorf("reading the answer of %s: %w", u.Path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return seq, decodeError(resp.StatusCode, seq, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return seq, &BadAnswerError{Base: c.base.Redacted(), Path: u.Path, What: what}
	}
	return seq, nil
}

// BadAnswerError is a 200 whose body is not what the route answers: the address is
// likely not a kycstate read API's.
type BadAnswerError struct {
	Base, Path string
	What       string // what the route answers ("verify result")
}

func (e *BadAnswerError) Error() string {
	return fmt.Sprintf("%s answered %s with something that is not a %s; is that kycstate's read API?", e.Base, e.Path, e.What)
}

func decodeError(status int, seq uint64, b []byte) *Error {
	e := &Error{Status: status, Seq: seq, Message: http.StatusText(status)}
	var body ErrorBody
	if json.Unmarshal(b, &body) == nil && body.Error.Code != "" {
		e.Code, e.Message = body.Error.Code, body.Error.Message
	}
	return e
}
