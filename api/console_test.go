package api

import (
	"encoding/json"
	"html"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"testing"

	"github.com/kycstate/kycstate/domain"
)

// The console's history is the API's: each timeline row's raw view is the event exactly
// as GET /v1/applicants/{id}/history answers it, field for field, and nothing the API
// does not give (the projection's digests or sealed ids).
func TestConsoleHistoryIsTheAPIs(t *testing.T) {
	f := newFixture(t, nil)
	s := consoleSignIn(t, f, auditorToken)
	pre := regexp.MustCompile(`(?s)<pre>(.*?)</pre>`)
	for _, id := range []domain.ApplicantID{idA, idB, idC, idD, idE} {
		req := httptest.NewRequest("GET", "/console/applicants/"+string(id), nil)
		req.AddCookie(s)
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: console %d", id, rec.Code)
		}
		var shown []any
		for _, m := range pre.FindAllStringSubmatch(rec.Body.String(), -1) {
			var v any
			if err := json.Unmarshal([]byte(html.UnescapeString(m[1])), &v); err != nil {
				t.Fatalf("%s: raw view is not JSON: %v\n%s", id, err, m[1])
			}
			shown = append(shown, v)
		}
		api := f.get(t, "/v1/applicants/"+string(id)+"/history", auditorToken)
		var page struct {
			Events []any `json:"events"`
		}
		if err := json.Unmarshal(api.Body.Bytes(), &page); err != nil || api.Code != http.StatusOK {
			t.Fatalf("%s: history %d %v", id, api.Code, err)
		}
		if len(page.Events) == 0 || !reflect.DeepEqual(shown, page.Events) {
			t.Errorf("%s: console shows\n%v\nthe API answers\n%v", id, shown, page.Events)
		}
	}
}
