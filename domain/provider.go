package domain

import "strings"

// Provider names the KYC provider an event came from (DESIGN.md section 13). It is the
// second token of every event subject, kyc.events.<provider>.<app>.<applicantId>, and the
// `provider` of every stored event, state, history event and change.
type Provider string

// The providers kycstate reads. Allpass is the default: an event stored before other
// providers existed says "allpass".
const (
	ProviderAllpass Provider = "allpass"
	ProviderSumsub  Provider = "sumsub"
	ProviderPersona Provider = "persona"
	ProviderVeriff  Provider = "veriff"
	ProviderOnfido  Provider = "onfido"
)

// Providers lists every provider, Allpass first.
func Providers() []Provider {
	return []Provider{ProviderAllpass, ProviderSumsub, ProviderPersona, ProviderVeriff, ProviderOnfido}
}

// Valid reports whether p is one of the providers.
func (p Provider) Valid() bool {
	switch p {
	case ProviderAllpass, ProviderSumsub, ProviderPersona, ProviderVeriff, ProviderOnfido:
		return true
	}
	return false
}

// ProviderOf reads an event's provider field: the empty string, which no event written
// by kycstate carries but a hand-made one may, is Allpass, the default.
func ProviderOf(s string) Provider {
	if s == "" {
		return ProviderAllpass
	}
	return Provider(s)
}

// ApplicantKey names one applicant across providers (DESIGN.md section 13: an applicant
// is (provider, app, the provider's id)). An Allpass applicant's key is its id, a
// lower-case UUID, as it has always been; any other provider's is
// "<provider>.<app>.<id>". A UUID holds no '.', and a provider's app and id are subject
// tokens, which hold none either, so no key of one form equals a key of the other, and
// two applicants of different providers that share an id have different keys.
type ApplicantKey string

// KeyOf returns the key of applicant id of app of provider p ("" is Allpass).
func KeyOf(p Provider, app AppKey, id ApplicantID) ApplicantKey {
	if p == ProviderAllpass || p == "" {
		return ApplicantKey(id)
	}
	return ApplicantKey(string(p) + "." + string(app) + "." + string(id))
}

// Key returns the applicant's key.
func (s State) Key() ApplicantKey { return KeyOf(s.Provider, s.AppKey, s.ApplicantID) }

// Key returns the key of the applicant the event belongs to.
func (e *Event) Key() ApplicantKey { return KeyOf(ProviderOf(e.Provider), e.AppKey, e.ApplicantID) }

// ParseApplicantKey reads an applicant key as KeyOf writes it: a UUID (an Allpass
// applicant's, any case, returned canonical) or <provider>.<app>.<id> of a provider other
// than Allpass with app and id subject tokens (IsSubjectToken). Errors: KindInvalid.
func ParseApplicantKey(s string) (ApplicantKey, error) {
	const op = "domain.ParseApplicantKey"
	if u, ok := ParseUUID(s); ok {
		return ApplicantKey(u), nil
	}
	p, rest, ok1 := strings.Cut(s, ".")
	app, id, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || Provider(p) == ProviderAllpass || !Provider(p).Valid() || !IsSubjectToken(app) || !IsSubjectToken(id) {
		return "", E(op, KindInvalid, "not an applicant key: an Allpass applicant id (a UUID) or provider.app.id")
	}
	return ApplicantKey(s), nil
}
