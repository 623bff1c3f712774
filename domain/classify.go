package domain

// Classify maps an event of provider p (its type and, for providers other than Allpass,
// the provider's own status, DESIGN.md section 13) to its class and, for a status event,
// the common status it leads to. An Allpass event's type is its status. A provider whose
// table is not here yet classifies everything as unknown: stored and shown, no effect.
//
// It is the one door to the per-provider tables (classify<Provider> in
// journey_<provider>.go), for the fold and for the adapters that read a provider's status
// API (reconciliation), so a status means the same wherever it is read.
func (p Provider) Classify(t EventType, providerStatus string) (Class, Status) {
	switch p {
	case ProviderAllpass:
		s, _ := t.Target()
		return t.Class(), s
	case ProviderSumsub:
		return classifySumsub(t, providerStatus)
	case ProviderPersona:
		return classifyPersona(t, providerStatus)
	case ProviderVeriff:
		return classifyVeriff(t, providerStatus)
	case ProviderOnfido:
		return classifyOnfido(t, providerStatus)
	}
	return ClassUnknown, StatusNone
}
