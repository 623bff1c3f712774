package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/kycstate/kycstate/domain"
)

// TestOpenAPI replays every request of the test tables and checks each real response
// against openapi.yaml with kin-openapi (openapi3filter.ValidateResponse): the status is
// documented for the operation, the headers it calls required are there, and the body
// matches the schema (no undeclared field, every required one, types, enums, formats).
// So the document cannot drift from the code.
func TestOpenAPI(t *testing.T) {
	doc := loadSpec(t)
	f := newFixture(t, nil)

	exercised := map[string]bool{}
	for _, c := range openAPICases() {
		rec := f.get(t, c.target, c.token)
		tmpl := doc.check(t, c.target, rec)
		exercised[tmpl] = true
	}

	// /v1/verify over a real log: agreeing, finding every kind of difference but count,
	// busy and past its bound. (authCases above meet its 404 on the fixture without a log.)
	lf := newLogFixture(t, nil)
	exercised[doc.check(t, "/v1/verify", lf.get(t, "/v1/verify", auditorToken))] = true
	var other []domain.Event
	for _, e := range lf.stored {
		if e.ApplicantID != idD {
			other = append(other, e)
		}
	}
	other[len(other)-1].Stored = append(slices.Clip(other[len(other)-1].Stored), ' ')
	other = append(other, fixtureEvents(t, uint64(len(lf.stored))+1, []spec{{id: idNone, app: app1, typ: domain.EventCreated}})...)
	differ := buildFixture(t, other, verifyAgainst(lf.events, nil))
	rec := differ.get(t, "/v1/verify", auditorToken)
	if n := len(decode(t, rec.Body.Bytes()).(map[string]any)["differences"].([]any)); n != 4 {
		t.Errorf("/v1/verify on a projection of another log: %d differences, want 4: %s", n, rec.Body)
	}
	doc.check(t, "/v1/verify", rec)
	timeout := newLogFixture(t, func(c *Config) { c.VerifyTimeout = time.Nanosecond })
	if rec := timeout.get(t, "/v1/verify", auditorToken); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("/v1/verify past its bound: %d", rec.Code)
	} else {
		doc.check(t, "/v1/verify", rec)
	}

	// A server that is not ready: the 503 of /readyz.
	notReady := newFixture(t, func(c *Config) {
		c.Ready = func(context.Context) error { return errors.New("log unreachable") }
	})
	rec = notReady.get(t, "/readyz", "")
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("/readyz not ready: %d", rec.Code)
	}
	doc.check(t, "/readyz", rec)

	// Every read endpoint the document promises was exercised (so none is a phantom), and
	// its role is the one the route enforces.
	for path, item := range doc.doc.Paths.Map() {
		op := item.Get
		if op == nil {
			continue // the webhooks: POST on the ingest listener
		}
		if !exercised[path] {
			t.Errorf("openapi.yaml documents GET %s but no test exercised it", path)
		}
		role, _ := op.Extensions["x-kycstate-role"].(string)
		for _, r := range authRoutes() {
			p, q, _ := strings.Cut(r.target, "?")
			if doc.match(http.MethodGet, p) == path && (q == "" || strings.HasPrefix(q, "minSeq")) && string(r.need) != role {
				t.Errorf("GET %s: x-kycstate-role %q, route needs %q", path, role, r.need)
			}
		}
	}
	for _, p := range []string{"/webhooks/allpass/{app}", "/webhooks/allpass"} {
		if item := doc.doc.Paths.Value(p); item == nil || item.Post == nil {
			t.Errorf("openapi.yaml lacks POST %s", p)
		}
	}
}

// openAPICases are the GET requests TestOpenAPI checks on the fixture: every golden
// case, every route with every kind of caller, every refused parameter and a few more.
func openAPICases() []exchange {
	var cases []exchange
	cases = append(cases, goldenCases()...)
	cases = append(cases, authCases()...)
	for _, c := range badCases() {
		cases = append(cases, exchange{name: c.target, target: c.target, token: auditorToken})
	}
	return append(cases,
		exchange{target: "/v1/applicants/" + string(idA) + "?minSeq=5", token: readerToken},
		exchange{target: "/v1/changes?after=3&limit=2000&wait=0", token: readerToken},
		exchange{target: "/v1/applicants?status=COMPLETED", token: readerToken},
		exchange{target: "/v1/applicants?externalUserId=user-2&appKey=" + string(app1), token: readerToken},
		exchange{target: "/metrics", token: ""},
	)
}

// apiDoc is openapi.yaml as kin-openapi loads it, with a router over its operations.
type apiDoc struct {
	doc    *openapi3.T
	router routers.Router
}

// loadSpec loads and validates openapi.yaml. Ids and times are checked as the document's
// conventions say they are answered: UUIDs in lower case, times in UTC.
func loadSpec(tb testing.TB) *apiDoc {
	tb.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("openapi.yaml")
	if err != nil {
		tb.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		tb.Fatalf("openapi.yaml: version %q, want 3.1 (null types are written as type lists)", doc.OpenAPI)
	}
	if err := doc.Validate(loader.Context); err != nil {
		tb.Fatalf("openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	doc.SetStringFormatValidator("uuid", openapi3.NewCallbackValidator(func(s string) error {
		if id, ok := domain.ParseUUID(s); !ok || id != s {
			return fmt.Errorf("%q is not a lower-case UUID", s)
		}
		return nil
	}))
	doc.SetStringFormatValidator("date-time", openapi3.NewCallbackValidator(func(s string) error {
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil || !strings.HasSuffix(s, "Z") {
			return fmt.Errorf("%q is not an RFC 3339 UTC time", s)
		}
		return nil
	}))
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		tb.Fatalf("openapi.yaml: %v", err)
	}
	return &apiDoc{doc: doc, router: router}
}

// request is method on target as the document's servers see it: the webhooks on the
// ingest listener, the rest on the read API's.
func (d *apiDoc) request(method, target string) *http.Request {
	base := "http://127.0.0.1:8081"
	if strings.HasPrefix(target, "/webhooks/") {
		base = "http://127.0.0.1:8080"
	}
	return httptest.NewRequest(method, base+target, nil)
}

// match returns the document's path template for method on a request path, or "".
func (d *apiDoc) match(method, path string) string {
	route, _, err := d.router.FindRoute(d.request(method, path))
	if err != nil {
		return ""
	}
	return route.Path
}

// check validates one response; it returns the path template it matched.
func (d *apiDoc) check(t *testing.T, target string, rec *httptest.ResponseRecorder) string {
	t.Helper()
	return d.checkOp(t, http.MethodGet, target, rec)
}

// checkOp validates one response to method on target.
func (d *apiDoc) checkOp(t *testing.T, method, target string, rec *httptest.ResponseRecorder) string {
	t.Helper()
	req := d.request(method, target)
	route, params, err := d.router.FindRoute(req)
	if err != nil {
		if rec.Code != http.StatusNotFound {
			t.Errorf("%s %s: %d from an operation openapi.yaml does not document: %v", method, target, rec.Code, err)
		}
		return ""
	}
	if err := d.validate(req, route, params, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
		t.Errorf("%s %s %d: %v", method, target, rec.Code, err)
	}
	if rec.Header().Get(SeqHeader) != "" && !d.documentsHeader(route, rec.Code, SeqHeader) {
		t.Errorf("%s %s %d: %s sent but not documented", method, target, rec.Code, SeqHeader)
	}
	return route.Path
}

// validate checks one response against the operation of route.
func (d *apiDoc) validate(req *http.Request, route *routers.Route, params map[string]string, status int, h http.Header, body []byte) error {
	if req.Method == http.MethodHead {
		// kin-openapi passes every answer to a HEAD unchecked. The route still names the
		// HEAD operation, so asked as a GET it checks that operation's statuses and headers.
		req = req.Clone(req.Context())
		req.Method = http.MethodGet
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 h,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
			SchemaValidationOptions: d.doc.GetSchemaValidationOptions()},
	}
	in.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(req.Context(), in)
}

func (d *apiDoc) documentsHeader(route *routers.Route, status int, name string) bool {
	resp := route.Operation.Responses.Status(status)
	return resp != nil && resp.Value != nil && resp.Value.Headers[name] != nil
}

// The validation must be able to fail, or TestOpenAPI proves nothing.
func TestOpenAPIValidatorCatchesDrift(t *testing.T) {
	doc := loadSpec(t)
	target := "/v1/applicants/" + string(idA)
	rec := newFixture(t, nil).get(t, target, readerToken)
	req := doc.request(http.MethodGet, target)
	route, params, err := doc.router.FindRoute(req)
	if err != nil {
		t.Fatal(err)
	}
	good := decode(t, rec.Body.Bytes()).(map[string]any)
	if err := doc.validate(req, route, params, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
		t.Fatalf("valid state refused: %v", err)
	}
	for name, mutate := range map[string]func(m map[string]any){
		"extra field":   func(m map[string]any) { m["seen"] = []any{1.0} },
		"missing field": func(m map[string]any) { delete(m, "digest") },
		"wrong type":    func(m map[string]any) { m["lastSeq"] = "21" },
		"bad status":    func(m map[string]any) { m["status"] = "DONE" },
		"local time":    func(m map[string]any) { m["lastEventAt"] = "2024-05-01T11:00:00+02:00" },
		"null list":     func(m map[string]any) { m["flags"] = nil },
		"upper id":      func(m map[string]any) { m["applicantId"] = strings.ToUpper(m["applicantId"].(string)) },
	} {
		m := map[string]any{}
		for k, v := range good {
			m[k] = v
		}
		mutate(m)
		if err := doc.validate(req, route, params, rec.Code, rec.Header(), mustJSON(t, m)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := doc.validate(req, route, params, http.StatusTeapot, rec.Header(), rec.Body.Bytes()); err == nil {
		t.Errorf("an undocumented status: accepted")
	}
	h := rec.Header().Clone()
	h.Del(SeqHeader)
	if err := doc.validate(req, route, params, rec.Code, h, rec.Body.Bytes()); err == nil {
		t.Errorf("a required header missing: accepted")
	}
}
