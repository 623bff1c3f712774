package console

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestEraseIsAnAdminPostWithCSRF: DESIGN.md section 12, "Erasure (admin) is a POST with a
// CSRF token": only an admin's page offers the form, the POST needs the session's CSRF
// token and a reason, and it erases on behalf of the signed-in token's name.
func TestEraseIsAnAdminPostWithCSRF(t *testing.T) {
	h := newHarness(t)
	target := "/console/applicants/" + string(idOne)
	admin := h.signIn(t, adminTok)
	page := h.do("GET", target, nil, admin).Body.String()
	if !strings.Contains(page, `data-test="erase-submit"`) || !strings.Contains(page, `action="`+target+`/erase"`) {
		t.Fatalf("an admin's applicant page has no erase form:\n%s", page)
	}
	for _, tok := range []string{readerTok, auditorTok} {
		s := h.signIn(t, tok)
		if p := h.do("GET", target, nil, s).Body.String(); strings.Contains(p, "erase-submit") {
			t.Errorf("%s's page offers erasure", tok)
		}
		rec := h.do("POST", target+"/erase", url.Values{"csrf": {h.csrfOf(t, s)}, "reason": {"x"}}, s)
		if rec.Code != http.StatusForbidden {
			t.Errorf("%s erasing: %d, want 403", tok, rec.Code)
		}
	}
	if rec := h.do("POST", target+"/erase", url.Values{"csrf": {"forged"}, "reason": {"x"}}, admin); rec.Code != http.StatusForbidden {
		t.Errorf("erase with a forged CSRF token: %d, want 403", rec.Code)
	}
	if rec := h.do("POST", target+"/erase", url.Values{"csrf": {h.csrfOf(t, admin)}, "reason": {"  "}}, admin); rec.Code != http.StatusBadRequest {
		t.Errorf("erase without a reason: %d, want 400", rec.Code)
	}
	if len(h.b.erased) != 0 {
		t.Fatalf("refused requests erased: %+v", h.b.erased)
	}
	rec := h.do("POST", target+"/erase", url.Values{"csrf": {h.csrfOf(t, admin)}, "reason": {" GDPR request 42 "}}, admin)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != target {
		t.Fatalf("erase: %d to %q, want 303 to the applicant", rec.Code, rec.Header().Get("Location"))
	}
	if len(h.b.erased) != 1 || h.b.erased[0] != (erasure{id: idOne, by: "dpo", reason: "GDPR request 42"}) {
		t.Fatalf("erased %+v", h.b.erased)
	}
}
