package ingest

import (
	"net/http"
	"strings"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/onfido"
	"github.com/kycstate/kycstate/ingest/persona"
	"github.com/kycstate/kycstate/ingest/sumsub"
	"github.com/kycstate/kycstate/ingest/veriff"
)

// ProviderAppConfig is one configured app of a provider other than Allpass (DESIGN.md
// section 13): an entry of `apps` with its provider, its name and its webhook keys.
type ProviderAppConfig struct {
	Provider domain.Provider
	// Name is the entry's name: the {app} of POST /webhooks/{provider}/{app} and the
	// <app> of kyc.events.<provider>.<app>.<id>.
	Name string
	// Secrets are webhook_secret first, then previous_webhook_secrets, tried in order.
	Secrets [][]byte
	// APIKey is Veriff's api_key, which a webhook's X-AUTH-CLIENT must equal; the other
	// providers have none.
	APIKey string
}

// ProviderApp is a configured app of a provider other than Allpass, as the webhook
// handler and Reprocess open its deliveries: through the provider's own adapter
// (ingest/<provider>, pure), which verifies the signature over the raw body before it
// parses anything.
type ProviderApp struct {
	provider domain.Provider
	name     string
	// headers are the request headers the provider signs with: kept with a reject, so
	// that it can be verified again by Reprocess.
	headers []string
	open    func(body []byte, h http.Header, receivedAt time.Time, keepRaw bool) (domain.Event, string, error)
}

// Provider returns the app's provider.
func (a *ProviderApp) Provider() domain.Provider { return a.provider }

// Name returns the app's name.
func (a *ProviderApp) Name() string { return a.name }

// NewProviderApp returns the app c configures, opened by its provider's adapter. This is
// the registry of providers: adding one is adding its package and a case here. Errors
// are KindInvalid and name the app, never a secret: an unknown provider, or an app its
// adapter refuses (App.Validate: a name that is not a subject token, no secret, an
// empty one, Veriff without an API key).
func NewProviderApp(c ProviderAppConfig) (*ProviderApp, error) {
	const op = "ingest.NewProviderApp"
	pa := &ProviderApp{provider: c.Provider, name: c.Name}
	var validate func() error
	switch c.Provider {
	case domain.ProviderSumsub:
		a := &sumsub.App{Name: c.Name, Secrets: c.Secrets}
		validate, pa.headers = a.Validate, []string{sumsub.DigestHeader, sumsub.DigestAlgHeader}
		pa.open = func(body []byte, h http.Header, at time.Time, keepRaw bool) (domain.Event, string, error) {
			return a.Open(body, h, at, sumsub.Options{KeepRaw: keepRaw})
		}
	case domain.ProviderPersona:
		a := &persona.App{Name: c.Name, Secrets: c.Secrets}
		validate, pa.headers = a.Validate, []string{persona.SignatureHeader}
		pa.open = func(body []byte, h http.Header, at time.Time, keepRaw bool) (domain.Event, string, error) {
			return a.Open(body, h, at, persona.Options{KeepRaw: keepRaw})
		}
	case domain.ProviderVeriff:
		a := &veriff.App{Name: c.Name, APIKey: c.APIKey, Secrets: c.Secrets}
		validate, pa.headers = a.Validate, []string{veriff.HeaderAuthClient, veriff.HeaderSignature}
		pa.open = func(body []byte, h http.Header, at time.Time, keepRaw bool) (domain.Event, string, error) {
			return a.Open(body, h, at, veriff.Options{KeepRaw: keepRaw})
		}
	case domain.ProviderOnfido:
		a := &onfido.App{Name: c.Name, Secrets: c.Secrets}
		validate, pa.headers = a.Validate, []string{onfido.HeaderSignature}
		pa.open = func(body []byte, h http.Header, at time.Time, keepRaw bool) (domain.Event, string, error) {
			return a.Open(body, h, at, onfido.Options{KeepRaw: keepRaw})
		}
	default:
		return nil, domain.E(op, domain.KindInvalid, "provider "+string(c.Provider)+" has no adapter")
	}
	if c.APIKey != "" && c.Provider != domain.ProviderVeriff {
		return nil, domain.E(op, domain.KindInvalid, "app "+c.Name+": api_key is Veriff's; "+string(c.Provider)+" has none")
	}
	if err := validate(); err != nil {
		return nil, domain.E(op, domain.KindInvalid, err)
	}
	for i := range pa.headers {
		pa.headers[i] = strings.ToLower(pa.headers[i])
	}
	return pa, nil
}

// Open opens one delivery with the app's adapter; header is the request's (an
// http.Header, whose Get ignores case).
func (a *ProviderApp) Open(body []byte, header http.Header, receivedAt time.Time, keepRaw bool) (domain.Event, string, error) {
	return a.open(body, header, receivedAt, keepRaw)
}

// providerIndex finds configured provider apps by provider and name.
type providerIndex map[domain.Provider]map[string]*ProviderApp

// newProviderIndex indexes apps. A name is unique within its provider: it is the {app}
// of the provider's path.
func newProviderIndex(apps []*ProviderApp) (providerIndex, error) {
	x := providerIndex{}
	for _, a := range apps {
		if a == nil || a.open == nil {
			return nil, domain.E("ingest.providerIndex", domain.KindInvalid, "a provider app not made by NewProviderApp")
		}
		if x[a.provider] == nil {
			x[a.provider] = map[string]*ProviderApp{}
		}
		if _, dup := x[a.provider][a.name]; dup {
			return nil, domain.E("ingest.providerIndex", domain.KindInvalid, "app name "+a.name+" is configured twice for "+string(a.provider))
		}
		x[a.provider][a.name] = a
	}
	return x, nil
}

// lookup returns the app of provider p named name.
func (x providerIndex) lookup(p domain.Provider, name string) (*ProviderApp, bool) {
	a, ok := x[p][name]
	return a, ok
}

// providerWebhook serves POST /webhooks/{provider}/{app}: a webhook of a configured app
// of another provider than Allpass, with everything the Allpass path does around its
// adapter (admission, the in-flight bound, the group commit, rejects, the trusted time
// window). An unknown provider or app is 404 and not kept, as the Allpass path's unknown
// app is.
func (h *handler) providerWebhook() http.Handler {
	serve := h.serve(appUnknown, h.admitProvider)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			h.refuse(w, r, &exchange{label: appUnknown, start: time.Now()}, errMethod)
			return
		}
		serve.ServeHTTP(w, r)
	})
}

// admitProvider finds the provider app the request is for and reads its body, as admit
// does for Allpass.
func (h *handler) admitProvider(w http.ResponseWriter, r *http.Request, x *exchange) error {
	p := domain.Provider(r.PathValue("provider"))
	if !p.Valid() || p == domain.ProviderAllpass {
		return errNoProvider
	}
	name := r.PathValue("app")
	a, ok := h.providers.lookup(p, name)
	if !ok {
		return errNoApp
	}
	x.papp, x.pathApp, x.label = a, name, a.name
	return h.readInto(w, r, x)
}
