package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kycstate/kycstate/domain"
)

// route is one route of the surface with the role it needs ("" for none).
type route struct {
	target string
	need   domain.Role
}

func authRoutes() []route {
	A := string(idA)
	return []route{
		{"/v1/applicants/" + A, domain.RoleReader},
		{"/v1/applicants/" + A + "?minSeq=1", domain.RoleReader},
		{"/v1/applicants/" + A + "?at=2024-05-01T09:10:00Z", domain.RoleAuditor},
		{"/v1/applicants/" + A + "?seq=5", domain.RoleAuditor},
		{"/v1/applicants/" + A + "/history", domain.RoleAuditor},
		{"/v1/applicants?externalUserId=user-1", domain.RoleReader},
		{"/v1/applicants?status=APPROVED", domain.RoleReader},
		{"/v1/anomalies", domain.RoleAuditor},
		{"/v1/changes", domain.RoleReader},
		{"/v1/verify", domain.RoleAuditor},
		{"/healthz", ""},
		{"/readyz", ""},
		{"/metrics", ""},
	}
}

// authCases is every route with every kind of caller, for the OpenAPI check.
func authCases() []exchange {
	var out []exchange
	for _, r := range authRoutes() {
		for _, tok := range []string{"", wrongToken, readerToken, auditorToken} {
			if r.target == "/metrics" {
				continue // not JSON
			}
			out = append(out, exchange{name: r.target, target: r.target, token: tok})
		}
	}
	return out
}

func TestAuth(t *testing.T) {
	f := newLogFixture(t, nil) // the fixture over a real log, so /v1/verify is served too
	for _, r := range authRoutes() {
		t.Run(r.target, func(t *testing.T) {
			// No token and a wrong token: 401 with a Bearer challenge, on every protected route.
			for _, tok := range []string{"", wrongToken} {
				rec := f.get(t, r.target, tok)
				if r.need == "" {
					if rec.Code != http.StatusOK {
						t.Errorf("token %q: %d, want 200 without auth", tok, rec.Code)
					}
					continue
				}
				if rec.Code != http.StatusUnauthorized {
					t.Errorf("token %q: %d, want 401", tok, rec.Code)
				}
				if ch := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer ") {
					t.Errorf("token %q: WWW-Authenticate %q", tok, ch)
				}
				checkErrorBody(t, rec, "unauthorized", "Authorization")
			}
			// A reader on an auditor route: 403.
			rec := f.get(t, r.target, readerToken)
			switch r.need {
			case domain.RoleAuditor:
				if rec.Code != http.StatusForbidden {
					t.Errorf("reader: %d, want 403", rec.Code)
				}
				checkErrorBody(t, rec, "forbidden", "auditor")
			default:
				if rec.Code != http.StatusOK {
					t.Errorf("reader: %d, want 200: %s", rec.Code, rec.Body)
				}
			}
			// An auditor may do everything.
			if rec := f.get(t, r.target, auditorToken); rec.Code != http.StatusOK {
				t.Errorf("auditor: %d, want 200: %s", rec.Code, rec.Body)
			}
		})
	}
}

func TestAuthHeaderForms(t *testing.T) {
	f := newFixture(t, nil)
	target := "/v1/applicants/" + string(idA)
	for _, tc := range []struct {
		header string
		want   int
	}{
		{"Bearer " + readerToken, http.StatusOK},
		{"bearer " + readerToken, http.StatusOK}, // the scheme is case-insensitive
		{"Bearer  " + readerToken + " ", http.StatusOK},
		{"Basic " + readerToken, http.StatusUnauthorized},
		{readerToken, http.StatusUnauthorized},
		{"Bearer", http.StatusUnauthorized},
		{"Bearer ", http.StatusUnauthorized},
		{"Bearer " + readerToken + "x", http.StatusUnauthorized},
		{"Bearer " + readerToken[:len(readerToken)-1], http.StatusUnauthorized},
		{"Bearer " + strings.ToUpper(readerToken), http.StatusUnauthorized},
	} {
		req, _ := http.NewRequest(http.MethodGet, target, nil)
		req.Header.Set("Authorization", tc.header)
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("Authorization %q: %d, want %d", tc.header, rec.Code, tc.want)
		}
	}
}

func TestAuthFindsEveryToken(t *testing.T) {
	// The constant-time loop picks the matching token wherever it sits in the list.
	tokens := []Token{
		{Name: "a", Role: domain.RoleReader, Secret: "t-a"},
		{Name: "b", Role: domain.RoleAuditor, Secret: "t-b"},
		{Name: "c", Role: domain.RoleReader, Secret: "t-c"},
		{Name: "d", Role: domain.RoleAuditor, Secret: "t-d"},
	}
	f := newFixture(t, func(c *Config) { c.Tokens = tokens })
	for _, tok := range tokens {
		want := http.StatusOK
		if tok.Role == domain.RoleReader {
			want = http.StatusForbidden
		}
		if rec := f.get(t, "/v1/anomalies", tok.Secret); rec.Code != want {
			t.Errorf("token %s (%s) on an auditor route: %d, want %d", tok.Name, tok.Role, rec.Code, want)
		}
	}
}
