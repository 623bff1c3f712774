package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzQuery sends arbitrary paths and query strings through the whole handler, as a
// reader and as an auditor: no panic, no 500, and every answer but the metrics and the
// mux's path-cleaning redirects is a JSON body (an error body for every 4xx).
func FuzzQuery(f *testing.F) {
	A := string(idA)
	for _, seed := range []string{
		"/v1/applicants/" + A, "/v1/applicants/" + A + "?minSeq=30", "/v1/applicants/" + A + "?at=2024-05-01T09:10:00Z",
		"/v1/applicants/" + A + "?seq=7", "/v1/applicants/" + A + "?at=2024-05-01T09:10:00Z&seq=3",
		"/v1/applicants/" + A + "/history?after=3&limit=2", "/v1/applicants?externalUserId=user-1&appKey=" + string(app2),
		"/v1/applicants?status=APPROVED&cursor=" + A + "&limit=1", "/v1/anomalies?cursor=4&limit=1",
		"/v1/changes?after=0&limit=5&wait=1", "/v1/changes?wait=61", "/v1/applicants/%zz", "/v1/../v1/changes",
		"/v1/applicants?status=&externalUserId=", "/healthz", "/readyz", "/v1/changes?after=18446744073709551615",
		"/v1/applicants/" + A + "?seq=18446744073709551615", "/v1/changes?limit=99999999999999999999",
		"/v1/applicants/" + A + "?at=9999-12-31T23:59:59.999999999Z", "/v1/applicants/" + A + "?at=0000-01-01T00:00:00Z",
	} {
		path, query, _ := strings.Cut(seed, "?")
		f.Add(path, query, true)
		f.Add(path, query, false)
	}
	fx := newFixture(f, func(c *Config) {
		c.MaxWait = time.Millisecond
		c.MaxChangesWait = time.Millisecond
	})
	f.Fuzz(func(t *testing.T, path, rawQuery string, auditor bool) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		u := &url.URL{Path: path, RawQuery: rawQuery}
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL, req.RequestURI = u, u.RequestURI()
		tok := readerToken
		if auditor {
			tok = auditorToken
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		fx.h.ServeHTTP(rec, req)

		if rec.Code >= 500 && !(rec.Code == http.StatusServiceUnavailable && strings.HasPrefix(path, "/readyz")) {
			t.Fatalf("%s?%s: %d %s", path, rawQuery, rec.Code, rec.Body)
		}
		if rec.Header().Get(SeqHeader) == "" {
			t.Fatalf("%s?%s: no %s", path, rawQuery, SeqHeader)
		}
		if rec.Code >= 300 && rec.Code < 400 || strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
			return
		}
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s?%s: %d, body not JSON: %v %q", path, rawQuery, rec.Code, err, rec.Body)
		}
		if rec.Code >= 400 {
			e, _ := body["error"].(map[string]any)
			if e["code"] == nil || e["message"] == nil {
				t.Fatalf("%s?%s: %d without an error body: %s", path, rawQuery, rec.Code, rec.Body)
			}
		}
	})
}
