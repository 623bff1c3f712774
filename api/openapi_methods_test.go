package api

import (
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/reconcile"
)

// methods are the methods a client may send; the service answers each on every path.
var methods = [...]string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions, http.MethodTrace}

// TestOpenAPIOperationsAnswered: every operation openapi.yaml declares on the read API's
// listener is one the service answers. A well-formed request with a token of the
// operation's x-kycstate-role gets 200, a token one role below 403, no token 401, each
// matching the document; every GET has its HEAD. The requests go over a real
// connection, so a HEAD's body is what a client gets: none.
func TestOpenAPIOperationsAnswered(t *testing.T) {
	doc := loadSpec(t)
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	f := newLogFixture(t, func(c *Config) { // over a real log, so /v1/verify is served
		c.Tokens = append(c.Tokens, Token{Name: "dpo", Role: domain.RoleAdmin, Secret: adminToken})
		c.Reconcile = func(_ context.Context, id domain.ApplicantID, dryRun bool) (reconcile.Report, error) {
			return reconcile.Report{ApplicantID: id, AppKey: app1, Action: reconcile.ActionInSync, DryRun: dryRun,
				ProjectionStatus: domain.StatusApproved, ProjectionStatusAt: at,
				OpenAPIStatus: domain.StatusApproved, OpenAPIUpdatedAt: at}, nil
		}
		// Sequence 1 is applied already, so the answer need not wait for the projection.
		c.Erase = func(context.Context, domain.Provider, domain.AppKey, domain.ApplicantID, string, string) (uint64, bool, error) {
			return 1, false, nil
		}
	})
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)

	token := map[string]string{"reader": readerToken, "auditor": auditorToken, "admin": adminToken}
	below := map[string]string{"auditor": readerToken, "admin": auditorToken}
	answered := 0
	for _, path := range slices.Sorted(maps.Keys(doc.doc.Paths.Map())) {
		if strings.HasPrefix(path, "/webhooks/") {
			continue // the ingest listener: TestOpenAPIWebhooks
		}
		target := sampleTarget(path)
		ops := doc.doc.Paths.Value(path).Operations()
		if ops[http.MethodGet] != nil && ops[http.MethodHead] == nil {
			t.Errorf("%s: GET without its HEAD", path)
		}
		for _, method := range slices.Sorted(maps.Keys(ops)) {
			op := ops[method]
			role, _ := op.Extensions["x-kycstate-role"].(string)
			public := op.Security != nil && len(*op.Security) == 0
			if !public && token[role] == "" {
				t.Errorf("%s %s: x-kycstate-role %q is not a role", method, path, role)
				continue
			}
			body := ""
			if op.RequestBody != nil {
				body = `{"reason":"every declared operation is answered"}`
			}
			rec := send(t, srv, method, target, token[role], body)
			if rec.Code != http.StatusOK {
				t.Errorf("%s %s as %q: %d, want 200: %s", method, target, role, rec.Code, rec.Body)
			}
			if method == http.MethodHead && rec.Body.Len() != 0 {
				t.Errorf("HEAD %s: a body of %d bytes", target, rec.Body.Len())
			}
			doc.checkOp(t, method, target, rec)
			answered++
			if public {
				continue
			}
			refused := []struct {
				token string
				want  int
			}{{"", http.StatusUnauthorized}}
			if below[role] != "" {
				refused = append(refused, struct {
					token string
					want  int
				}{below[role], http.StatusForbidden})
			}
			for _, r := range refused {
				rec := send(t, srv, method, target, r.token, body)
				if rec.Code != r.want {
					t.Errorf("%s %s with token %q: %d, want %d", method, target, r.token, rec.Code, r.want)
				}
				doc.checkOp(t, method, target, rec)
			}
		}
	}
	// The erasure's body is bounded: 413, as declared.
	big := `{"reason":"` + strings.Repeat("x", 17<<10) + `"}`
	target := sampleTarget("/v1/applicants/{id}/erase")
	rec := send(t, srv, http.MethodPost, target, adminToken, big)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("POST %s with %d bytes: %d, want 413", target, len(big), rec.Code)
	}
	doc.checkOp(t, http.MethodPost, target, rec)

	if answered < 20 {
		t.Errorf("%d operations answered; openapi.yaml declares at least 20 on the read API", answered)
	}
}

// TestOpenAPIHead: every GET request of TestOpenAPI again as HEAD, over a real
// connection: the same status and headers, no body, and matching the HEAD operation.
func TestOpenAPIHead(t *testing.T) {
	doc := loadSpec(t)
	srv := httptest.NewServer(newFixture(t, nil).h)
	t.Cleanup(srv.Close)
	for _, c := range openAPICases() {
		get := send(t, srv, http.MethodGet, c.target, c.token, "")
		head := send(t, srv, http.MethodHead, c.target, c.token, "")
		if head.Code != get.Code || head.Body.Len() != 0 {
			t.Errorf("HEAD %s: %d with %d bytes; GET %d", c.target, head.Code, head.Body.Len(), get.Code)
		}
		for _, h := range []string{SeqHeader, "Content-Type", "WWW-Authenticate", "Allow"} {
			if head.Header().Get(h) != get.Header().Get(h) {
				t.Errorf("HEAD %s: %s %q, GET's %q", c.target, h, head.Header().Get(h), get.Header().Get(h))
			}
		}
		doc.checkOp(t, http.MethodHead, c.target, head)
	}

	// A HEAD answer is checked against its headers: one without X-Kycstate-Seq fails.
	rec := send(t, srv, http.MethodHead, "/v1/applicants/"+string(idA), readerToken, "")
	rec.Header().Del(SeqHeader)
	if err := doc.validateAs(http.MethodHead, "/v1/applicants/"+string(idA), rec); err == nil {
		t.Error("a HEAD answer without X-Kycstate-Seq: accepted")
	}
}

// TestOpenAPIMethodNotAllowed: a path asked with a method it does not declare is
// answered 405 with Allow naming exactly the methods it declares, in the form of the
// MethodNotAllowed response every operation lists; a path the document does not list is
// answered 404 in the form of UnknownPath, whatever the method.
func TestOpenAPIMethodNotAllowed(t *testing.T) {
	doc := loadSpec(t)
	f := newFixture(t, nil)
	for _, path := range slices.Sorted(maps.Keys(doc.doc.Paths.Map())) {
		if strings.HasPrefix(path, "/webhooks/") {
			continue // the ingest listener: TestOpenAPIWebhooks
		}
		ops := doc.doc.Paths.Value(path).Operations()
		var allow []string
		for _, m := range methods {
			if ops[m] != nil {
				allow = append(allow, m)
			}
		}
		for m, op := range ops {
			if r := op.Responses.Status(http.StatusMethodNotAllowed); r == nil || r.Ref != "#/components/responses/MethodNotAllowed" {
				t.Errorf("%s %s: does not list the MethodNotAllowed response as its 405", m, path)
			}
		}
		target := sampleTarget(path)
		for _, m := range methods {
			if ops[m] != nil {
				continue
			}
			rec := f.do(t.Context(), m, target, auditorToken)
			if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != strings.Join(allow, ", ") {
				t.Errorf("%s %s: %d Allow %q, want 405 Allow %q", m, target, rec.Code, rec.Header().Get("Allow"), strings.Join(allow, ", "))
				continue
			}
			checkErrorBody(t, rec, client.CodeMethodNotAllowed, path)
			for _, declared := range allow {
				if err := doc.validateAs(declared, target, rec); err != nil {
					t.Errorf("%s %s: the 405 does not match %s's: %v", m, target, declared, err)
				}
			}
		}
	}

	// The 405's Allow header is declared required and its values listed: an answer
	// without it, or naming another method, fails.
	target := "/v1/changes"
	rec := f.do(t.Context(), http.MethodPut, target, readerToken)
	if err := doc.validateAs(http.MethodGet, target, rec); err != nil {
		t.Fatalf("PUT %s: %v", target, err)
	}
	for _, allow := range []string{"", "PUT"} {
		h := rec.Header().Clone()
		h.Set("Allow", allow)
		if allow == "" {
			h.Del("Allow")
		}
		mutated := httptest.NewRecorder()
		maps.Copy(mutated.Header(), h)
		mutated.WriteHeader(rec.Code)
		mutated.Body.Write(rec.Body.Bytes())
		if err := doc.validateAs(http.MethodGet, target, mutated); err == nil {
			t.Errorf("a 405 with Allow %q: accepted", allow)
		}
	}

	// Unknown paths, whatever the method: 404 not_found, in UnknownPath's form.
	unknown := doc.doc.Components.Responses["UnknownPath"]
	if unknown == nil {
		t.Fatal("openapi.yaml has no components.responses.UnknownPath")
	}
	op := openapi3.NewOperation()
	op.Responses = openapi3.NewResponses(openapi3.WithStatus(http.StatusNotFound, unknown))
	A := string(idA)
	for _, target := range []string{"/", "/v1", "/v1/applicant/" + A, "/v1/applicants/" + A + "/events",
		"/v1/changes/", "/v2/changes", "/healthz/deep"} {
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
			if tmpl := doc.match(m, target); tmpl != "" {
				t.Fatalf("%s %s is documented (%s): not an unknown path", m, target, tmpl)
			}
			rec := f.do(t.Context(), m, target, auditorToken)
			if rec.Code != http.StatusNotFound {
				t.Errorf("%s %s: %d, want 404", m, target, rec.Code)
				continue
			}
			checkErrorBody(t, rec, client.CodeNotFound, "")
			req := doc.request(m, target)
			route := &routers.Route{Spec: doc.doc, Path: target, Method: m, Operation: op}
			if err := doc.validate(req, route, nil, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
				t.Errorf("%s %s: does not match UnknownPath: %v", m, target, err)
			}
		}
	}
}

// TestOpenAPIStatusParameter: the status lookup takes a status in any ASCII case, and the
// document's pattern accepts exactly what the service does.
func TestOpenAPIStatusParameter(t *testing.T) {
	doc := loadSpec(t)
	f := newFixture(t, nil)
	var given []string
	for _, st := range domain.Statuses() {
		s := string(st)
		mixed := []byte(strings.ToLower(s))
		for i := 0; i < len(mixed); i += 2 {
			mixed[i] = strings.ToUpper(string(mixed[i]))[0]
		}
		given = append(given, s, strings.ToLower(s), s[:1]+strings.ToLower(s[1:]), string(mixed))
	}
	given = append(given, "DONE", "\u0131nit", "\u0130NIT", "INIT ", " INIT", "IN-PROGRESS", "INPROGRESS",
		"in progress", "APPROVEDD", "APPROVED|INIT", "\uff29NIT", "K\u212aYC", "")
	accepted := 0
	for _, v := range given {
		_, parses := domain.ParseStatus(v)
		target := "/v1/applicants?status=" + url.QueryEscape(v)
		documented := doc.validateRequest(http.MethodGet, target) == nil
		served := f.get(t, target, readerToken).Code == http.StatusOK
		if documented != parses || served != parses {
			t.Errorf("status=%q: ParseStatus %v, openapi.yaml accepts %v, the service answers 200 %v", v, parses, documented, served)
		}
		if parses {
			accepted++
		}
	}
	if accepted != 4*len(domain.Statuses()) {
		t.Errorf("%d spellings accepted, want %d", accepted, 4*len(domain.Statuses()))
	}
}

// sampleTarget is a well-formed request target for a documented path: the fixture's
// applicant A for {id}, and a status lookup (in lower case) where a lookup key is required.
func sampleTarget(path string) string {
	target := strings.ReplaceAll(path, "{id}", string(idA))
	if path == "/v1/applicants" {
		target += "?status=approved"
	}
	return target
}

// send makes one request to srv over a real connection and returns the answer as a
// recorder, for checkOp.
func send(tb testing.TB, srv *httptest.Server, method, target, token, body string) *httptest.ResponseRecorder {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, srv.URL+target, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	rec := httptest.NewRecorder()
	maps.Copy(rec.Header(), resp.Header)
	rec.WriteHeader(resp.StatusCode)
	rec.Body.Write(b)
	return rec
}

// validateAs checks an answer against the operation declared for method on target's
// path (a 405 answered to another method, say).
func (d *apiDoc) validateAs(method, target string, rec *httptest.ResponseRecorder) error {
	req := d.request(method, target)
	route, params, err := d.router.FindRoute(req)
	if err != nil {
		return err
	}
	return d.validate(req, route, params, rec.Code, rec.Header(), rec.Body.Bytes())
}

// validateRequest checks a request against the document: its path, method and
// parameters (authentication aside).
func (d *apiDoc) validateRequest(method, target string) error {
	req := d.request(method, target)
	route, params, err := d.router.FindRoute(req)
	if err != nil {
		return err
	}
	return openapi3filter.ValidateRequest(req.Context(), &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	})
}
