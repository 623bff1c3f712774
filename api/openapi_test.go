package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"go.yaml.in/yaml/v3"
)

// TestOpenAPI replays every request of the test tables and checks each real response
// against openapi.yaml: the status is documented for the operation, the headers it calls
// required are there, every JSON field is declared in the schema with the declared type,
// and every required field is present. So the document cannot drift from the code.
func TestOpenAPI(t *testing.T) {
	doc := loadSpec(t)
	f := newFixture(t, nil)

	var cases []exchange
	cases = append(cases, goldenCases()...)
	cases = append(cases, authCases()...)
	for _, c := range badCases() {
		cases = append(cases, exchange{name: c.target, target: c.target, token: auditorToken})
	}
	cases = append(cases,
		exchange{target: "/v1/applicants/" + string(idA) + "?minSeq=5", token: readerToken},
		exchange{target: "/v1/changes?after=3&limit=2000&wait=0", token: readerToken},
		exchange{target: "/v1/applicants?status=COMPLETED", token: readerToken},
		exchange{target: "/v1/applicants?externalUserId=user-2&appKey=" + string(app1), token: readerToken},
		exchange{target: "/metrics", token: ""},
	)

	exercised := map[string]bool{}
	for _, c := range cases {
		rec := f.get(t, c.target, c.token)
		tmpl := doc.check(t, c.target, rec)
		exercised[tmpl] = true
	}

	// /v1/verify over a real log: agreeing, finding every kind of difference but count,
	// busy and past its bound. (authCases above meet its 404 on the fixture without a log.)
	lf := newLogFixture(t, nil)
	exercised[doc.check(t, "/v1/verify", lf.get(t, "/v1/verify", auditorToken))] = true
	var other []domain.Event
	for _, e := range lf.events {
		if e.ApplicantID != idD {
			other = append(other, e)
		}
	}
	other[len(other)-1].Stored = append(slices.Clip(other[len(other)-1].Stored), ' ')
	other = append(other, fixtureEvents(t, uint64(len(lf.events))+1, []spec{{id: idNone, app: app1, typ: domain.EventCreated}})...)
	differ := buildFixture(t, other, verifyAgainst(lf.eventLog, nil))
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
	for path, item := range doc.paths() {
		op, ok := item["get"].(map[string]any)
		if !ok {
			continue // the webhooks: POST on the ingest listener
		}
		if !exercised[path] {
			t.Errorf("openapi.yaml documents GET %s but no test exercised it", path)
		}
		role, _ := op["x-kycstate-role"].(string)
		for _, r := range authRoutes() {
			p, q, _ := strings.Cut(r.target, "?")
			if doc.match(p) == path && (q == "" || strings.HasPrefix(q, "minSeq")) && string(r.need) != role {
				t.Errorf("GET %s: x-kycstate-role %q, route needs %q", path, role, r.need)
			}
		}
	}
	for _, p := range []string{"/webhooks/allpass/{app}", "/webhooks/allpass"} {
		if _, ok := doc.paths()[p]["post"]; !ok {
			t.Errorf("openapi.yaml lacks POST %s", p)
		}
	}
}

type spec3 struct {
	root map[string]any
}

func loadSpec(tb testing.TB) *spec3 {
	tb.Helper()
	b, err := os.ReadFile("openapi.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	var root map[string]any
	if err := yaml.Unmarshal(b, &root); err != nil {
		tb.Fatalf("openapi.yaml: %v", err)
	}
	if v, _ := root["openapi"].(string); !strings.HasPrefix(v, "3.1") {
		tb.Fatalf("openapi.yaml: version %q, want 3.1 (null types are written as type lists)", v)
	}
	return &spec3{root: root}
}

func (d *spec3) paths() map[string]map[string]any {
	out := map[string]map[string]any{}
	for k, v := range d.root["paths"].(map[string]any) {
		out[k] = v.(map[string]any)
	}
	return out
}

// match returns the document's path template for a request path, preferring literal
// segments over parameters, or "".
func (d *spec3) match(path string) string {
	segs := strings.Split(path, "/")
	best, bestScore := "", -1
	for tmpl := range d.paths() {
		ts := strings.Split(tmpl, "/")
		if len(ts) != len(segs) {
			continue
		}
		score := 0
		for i := range ts {
			switch {
			case strings.HasPrefix(ts[i], "{"):
				if segs[i] == "" {
					score = -1
				}
			case ts[i] == segs[i]:
				score++
			default:
				score = -1
			}
			if score < 0 {
				break
			}
		}
		if score > bestScore {
			best, bestScore = tmpl, score
		}
	}
	return best
}

// ref follows a local $ref.
func (d *spec3) ref(node map[string]any) map[string]any {
	for i := 0; i < 10; i++ {
		r, ok := node["$ref"].(string)
		if !ok {
			return node
		}
		var cur any = d.root
		for _, part := range strings.Split(strings.TrimPrefix(r, "#/"), "/") {
			cur = cur.(map[string]any)[part]
		}
		node = cur.(map[string]any)
	}
	panic("$ref loop")
}

// check validates one response; it returns the path template it matched.
func (d *spec3) check(t *testing.T, target string, rec *httptest.ResponseRecorder) string {
	t.Helper()
	return d.checkOp(t, http.MethodGet, target, rec)
}

// checkOp validates one response to method on target.
func (d *spec3) checkOp(t *testing.T, method, target string, rec *httptest.ResponseRecorder) string {
	t.Helper()
	path, _, _ := strings.Cut(target, "?")
	tmpl := d.match(path)
	if tmpl == "" {
		if rec.Code != http.StatusNotFound {
			t.Errorf("%s: %d from a path openapi.yaml does not document", target, rec.Code)
		}
		return ""
	}
	op, ok := d.paths()[tmpl][strings.ToLower(method)].(map[string]any)
	if !ok {
		t.Errorf("%s: no %s in openapi.yaml for %s", target, method, tmpl)
		return tmpl
	}
	resp, ok := op["responses"].(map[string]any)[strconv.Itoa(rec.Code)].(map[string]any)
	if !ok {
		t.Errorf("%s %s: status %d is not documented for %s", method, target, rec.Code, tmpl)
		return tmpl
	}
	resp = d.ref(resp)
	headers, _ := resp["headers"].(map[string]any)
	for name, h := range headers {
		if req, _ := d.ref(h.(map[string]any))["required"].(bool); req && rec.Header().Get(name) == "" {
			t.Errorf("%s %s %d: required header %s missing", method, target, rec.Code, name)
		}
	}
	if rec.Header().Get(SeqHeader) != "" && headers[SeqHeader] == nil {
		t.Errorf("%s %s %d: %s sent but not documented", method, target, rec.Code, SeqHeader)
	}
	content, _ := resp["content"].(map[string]any)
	ct, _, _ := strings.Cut(rec.Header().Get("Content-Type"), ";")
	media, ok := content[ct].(map[string]any)
	if !ok {
		t.Errorf("%s %s %d: content type %q not documented", method, target, rec.Code, ct)
		return tmpl
	}
	if ct != "application/json" {
		return tmpl
	}
	var body any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Errorf("%s %s: %v", method, target, err)
		return tmpl
	}
	for _, e := range d.validate(media["schema"].(map[string]any), body, "$") {
		t.Errorf("%s %s %d: %s", method, target, rec.Code, e)
	}
	return tmpl
}

// validate checks v against the subset of JSON Schema the document uses.
func (d *spec3) validate(schema map[string]any, v any, at string) []string {
	schema = d.ref(schema)
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, at+": "+fmt.Sprintf(format, args...)) }

	var types []string
	switch ty := schema["type"].(type) {
	case string:
		types = []string{ty}
	case []any:
		for _, x := range ty {
			types = append(types, x.(string))
		}
	}
	if len(types) > 0 && !slices.Contains(types, jsonType(v)) &&
		!(jsonType(v) == "integer" && slices.Contains(types, "number")) {
		bad("%s, want %v", jsonType(v), types)
		return errs
	}
	if enum, ok := schema["enum"].([]any); ok && !slices.ContainsFunc(enum, func(e any) bool { return fmt.Sprint(e) == fmt.Sprint(v) || (e == nil && v == nil) }) {
		bad("%v not in %v", v, enum)
	}
	switch x := v.(type) {
	case string:
		if p, ok := schema["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(x) {
			bad("%q does not match %s", x, p)
		}
		switch schema["format"] {
		case "date-time":
			if _, err := time.Parse(time.RFC3339Nano, x); err != nil || !strings.HasSuffix(x, "Z") {
				bad("%q is not an RFC 3339 UTC time", x)
			}
		case "uuid":
			if id, err := parseUUID("", x); err != nil || id != x {
				bad("%q is not a lower-case UUID", x)
			}
		}
	case float64:
		if m, ok := schema["minimum"].(int); ok && x < float64(m) {
			bad("%v below the minimum %d", x, m)
		}
		if m, ok := schema["maximum"].(int); ok && x > float64(m) {
			bad("%v above the maximum %d", x, m)
		}
	case []any:
		if items, ok := schema["items"].(map[string]any); ok {
			for i, it := range x {
				errs = append(errs, d.validate(items, it, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	case map[string]any:
		props, _ := schema["properties"].(map[string]any)
		for k, val := range x {
			p, ok := props[k].(map[string]any)
			if !ok {
				bad("field %q is not declared", k)
				continue
			}
			errs = append(errs, d.validate(p, val, at+"."+k)...)
		}
		req, _ := schema["required"].([]any)
		for _, k := range req {
			if _, ok := x[k.(string)]; !ok {
				bad("required field %q missing", k)
			}
		}
	}
	return errs
}

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case float64:
		if x == math.Trunc(x) {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// The validator itself must be able to fail, or TestOpenAPI proves nothing.
func TestOpenAPIValidatorCatchesDrift(t *testing.T) {
	doc := loadSpec(t)
	state := doc.ref(map[string]any{"$ref": "#/components/schemas/State"})
	good := decode(t, newFixture(t, nil).get(t, "/v1/applicants/"+string(idA), readerToken).Body.Bytes()).(map[string]any)
	if errs := doc.validate(state, good, "$"); len(errs) != 0 {
		t.Fatalf("valid state refused: %v", errs)
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
		if errs := doc.validate(state, m, "$"); len(errs) == 0 {
			t.Errorf("%s: accepted", name)
		}
	}
}
