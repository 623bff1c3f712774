package api

import (
	"fmt"
	"strings"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
)

// Which applicant a /v1/applicants/{id} path names (DESIGN.md section 13). An applicant is
// (provider, app, the provider's id); {id} is the provider's id, and ?provider= says
// whose. Without it, Allpass stays the default, as sections 2-12 promise its callers: an
// Allpass applicant with the id answers; failing one, the one applicant of another
// provider holding it; when several do, a 409 ambiguous_applicant names them, so a caller
// is never answered with another person's state.

// parseProvider reads ?provider=: "" when absent.
func parseProvider(q query) (domain.Provider, error) {
	if !q.has("provider") {
		return "", nil
	}
	p := domain.Provider(q.get("provider"))
	if !p.Valid() {
		return "", errParam("provider", domain.KindInvalid, fmt.Sprintf("must be one of %s, got %s", providerList(), quote(string(p))))
	}
	return p, nil
}

func providerList() string {
	var names []string
	for _, p := range domain.Providers() {
		names = append(names, string(p))
	}
	return strings.Join(names, ", ")
}

// applicantRef is a parsed /v1/applicants/{id} with its ?provider=.
type applicantRef struct {
	provider domain.Provider // "" when not named
	raw      string          // {id} as given
}

// parseApplicantRef checks {id} against what provider's ids may be, before any lookup:
// Allpass's are UUIDs, every other provider's 1 to 64 of [A-Za-z0-9_-].
func parseApplicantRef(q query, raw string) (applicantRef, error) {
	p, err := parseProvider(q)
	if err != nil {
		return applicantRef{}, err
	}
	_, isUUID := domain.ParseUUID(raw)
	switch {
	case p == domain.ProviderAllpass && !isUUID:
		return applicantRef{}, errParam("id", domain.KindInvalid, fmt.Sprintf("an Allpass applicant id must be a UUID, got %s", quote(raw)))
	case p != "" && p != domain.ProviderAllpass && !domain.IsSubjectToken(raw):
		return applicantRef{}, errParam("id", domain.KindInvalid, fmt.Sprintf("a %s applicant id is 1 to 64 of A-Z, a-z, 0-9, '_' and '-', got %s", p, quote(raw)))
	case p == "" && !isUUID && !domain.IsSubjectToken(raw):
		return applicantRef{}, errParam("id", domain.KindInvalid, fmt.Sprintf(
			"must be an Allpass applicant id (a UUID) or another provider's (1 to 64 of A-Z, a-z, 0-9, '_' and '-'), got %s", quote(raw)))
	}
	return applicantRef{provider: p, raw: raw}, nil
}

// find returns the applicant ref names. Errors: KindNotFound (a public message naming
// the id), KindConflict ambiguous_applicant, the projection's.
func (s *server) find(ref applicantRef) (domain.State, error) {
	st, found, err := s.lookup(ref)
	switch {
	case err != nil:
		return domain.State{}, err
	case !found && ref.provider != "":
		return domain.State{}, errParam("id", domain.KindNotFound, fmt.Sprintf("no %s applicant %s", ref.provider, ref.raw))
	case !found:
		return domain.State{}, errParam("id", domain.KindNotFound, "no applicant "+ref.raw)
	}
	return st, nil
}

func (s *server) lookup(ref applicantRef) (domain.State, bool, error) {
	if u, ok := domain.ParseUUID(ref.raw); ok && (ref.provider == "" || ref.provider == domain.ProviderAllpass) {
		st, found, err := s.proj.StateOf(domain.ApplicantKey(u))
		if err != nil || found || ref.provider == domain.ProviderAllpass {
			return st, found, err
		}
	}
	if !domain.IsSubjectToken(ref.raw) {
		return domain.State{}, false, nil
	}
	all, err := s.proj.ApplicantsByID(domain.ApplicantID(ref.raw))
	if err != nil {
		return domain.State{}, false, err
	}
	var held []domain.State
	for _, st := range all {
		p := providerOf(st.Provider)
		if p != domain.ProviderAllpass && (ref.provider == "" || p == ref.provider) {
			held = append(held, st)
		}
	}
	switch len(held) {
	case 0:
		return domain.State{}, false, nil
	case 1:
		return held[0], true, nil
	}
	names := make([]string, len(held))
	for i, st := range held {
		names[i] = fmt.Sprintf("%s (app %s)", providerOf(st.Provider), st.AppKey)
	}
	hint := "name one with ?provider="
	if ref.provider != "" {
		hint = "two apps of one provider hold it; the API cannot tell them apart yet"
	}
	return domain.State{}, false, errCode("id", domain.KindConflict, client.CodeAmbiguousApplicant,
		fmt.Sprintf("applicant id %s is held by %s: %s", quote(ref.raw), strings.Join(names, ", "), hint))
}
