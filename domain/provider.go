package domain

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
