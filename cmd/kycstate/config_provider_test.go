package main

import (
	"strings"
	"testing"
)

// providersYAML is DESIGN.md section 13's example, with an Allpass app beside it.
const providersYAML = `
apps:
  - name: main
    app_key: 71f2c0c6-c720-423b-8df0-7763102ad57e
    secret_key: "env:ALLPASS_SECRET_KEY"
    hmac_key: "env:ALLPASS_HMAC_KEY"
  - { name: ss, provider: sumsub,  webhook_secret: "env:SUMSUB_WEBHOOK_SECRET" }
  - { name: pa, provider: persona, webhook_secret: "env:PERSONA_WEBHOOK_SECRET", previous_webhook_secrets: ["wbhsec_old"] }
  - { name: ve, provider: veriff,  api_key: "env:VERIFF_API_KEY", webhook_secret: "env:VERIFF_SECRET" }
  - { name: on, provider: onfido,  webhook_secret: "env:ONFIDO_WEBHOOK_TOKEN" }
`

// Section 13's config: apps[].provider (allpass by default) and each provider's keys,
// secrets as env:/file:, every key overridable by KYCSTATE_*.
func TestConfigProviders(t *testing.T) {
	path := writeFile(t, "c.yaml", providersYAML)
	getenv, environ := envFunc("ALLPASS_SECRET_KEY", testSecret, "ALLPASS_HMAC_KEY", testHMAC,
		"SUMSUB_WEBHOOK_SECRET", "ss-secret", "PERSONA_WEBHOOK_SECRET", "wbhsec_new", "VERIFF_API_KEY", "ve-key",
		"VERIFF_SECRET", "ve-secret", "ONFIDO_WEBHOOK_TOKEN", "on-token",
		// Overrides: a rotation of Onfido's token, and Sumsub's secret from elsewhere.
		"KYCSTATE_APPS_4_WEBHOOK_SECRET", "env:ONFIDO_NEW_TOKEN", "ONFIDO_NEW_TOKEN", "on-token-2",
		"KYCSTATE_APPS_4_PREVIOUS_WEBHOOK_SECRETS", "env:ONFIDO_WEBHOOK_TOKEN",
		"KYCSTATE_APPS_1_WEBHOOK_SECRET", "ss-secret-from-env")
	cfg, err := loadConfig(path, getenv, environ)
	if err != nil {
		t.Fatal(err)
	}
	r, err := resolveConfig(cfg, getenv, true, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Apps) != 1 || r.Apps[0].Name != "main" {
		t.Fatalf("Allpass apps %v", r.Apps)
	}
	var got []string
	for _, a := range r.Providers {
		got = append(got, string(a.Provider())+"/"+a.Name())
	}
	if strings.Join(got, " ") != "sumsub/ss persona/pa veriff/ve onfido/on" {
		t.Fatalf("provider apps %v", got)
	}
	if cfg.Apps[4].WebhookSecret != "env:ONFIDO_NEW_TOKEN" || len(cfg.Apps[4].PreviousWebhookSecrets) != 1 ||
		cfg.Apps[1].WebhookSecret != "ss-secret-from-env" {
		t.Fatalf("overrides not applied: %+v", cfg.Apps)
	}

	// Providers only: no Allpass app is needed to serve webhooks.
	only := writeFile(t, "only.yaml", "apps:\n  - { name: ss, provider: sumsub, webhook_secret: s3cret }\n")
	cfg, err = loadConfig(only, getenv, environ[:0])
	if err != nil {
		t.Fatal(err)
	}
	if r, err = resolveConfig(cfg, getenv, true, false); err != nil || len(r.Providers) != 1 || len(r.Apps) != 0 {
		t.Fatalf("providers only: %v", err)
	}
	if !definesApp(cfg) {
		t.Fatal("an app of another provider is the config's own, not the development app")
	}
}

// Each provider's entry refuses what is not its key, names the key, never a value.
func TestConfigProviderErrors(t *testing.T) {
	const leaked = "a-secret-value-SHOULD-NOT-APPEAR"
	for _, c := range []struct{ name, app, wantKey string }{
		{"unknown provider", "{name: x, provider: acme, webhook_secret: " + leaked + "}", "apps[0] (x).provider"},
		{"no secret", "{name: x, provider: sumsub}", "apps[0] (x).webhook_secret"},
		{"empty previous", "{name: x, provider: persona, webhook_secret: " + leaked + ", previous_webhook_secrets: ['']}", "previous_webhook_secrets[0]"},
		{"veriff without api_key", "{name: x, provider: veriff, webhook_secret: " + leaked + "}", "apps[0] (x).api_key"},
		{"api_key on onfido", "{name: x, provider: onfido, webhook_secret: " + leaked + ", api_key: " + leaked + "}", "apps[0] (x).api_key"},
		{"allpass key on sumsub", "{name: x, provider: sumsub, webhook_secret: " + leaked + ", secret_key: " + leaked + "}", "apps[0] (x).secret_key"},
		{"webhook_secret on allpass", "{name: x, app_key: 71f2c0c6-c720-423b-8df0-7763102ad57e, secret_key: " + testSecret + ", hmac_key: " + testHMAC + ", webhook_secret: " + leaked + "}", "apps[0] (x).webhook_secret"},
		{"name not a subject token", "{name: a.b, provider: sumsub, webhook_secret: " + leaked + "}", "apps[0] (a.b).name"},
		{"missing env", "{name: x, provider: sumsub, webhook_secret: env:NOPE}", "NOPE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			getenv, environ := envFunc()
			cfg, err := loadConfig(writeFile(t, "c.yaml", "apps: ["+c.app+"]\n"), getenv, environ)
			if err == nil {
				_, err = resolveConfig(cfg, getenv, true, false)
			}
			if err == nil || !strings.Contains(err.Error(), c.wantKey) || strings.Contains(err.Error(), leaked) {
				t.Fatalf("error %v; want one naming %s and no secret", err, c.wantKey)
			}
		})
	}
	// Two apps of any providers may not share a name.
	getenv, environ := envFunc()
	cfg, err := loadConfig(writeFile(t, "c.yaml", "apps:\n  - {name: x, provider: sumsub, webhook_secret: a}\n  - {name: x, provider: onfido, webhook_secret: b}\n"), getenv, environ)
	if err == nil {
		_, err = resolveConfig(cfg, getenv, true, false)
	}
	if err == nil || !strings.Contains(err.Error(), "apps[1] (x)") {
		t.Fatalf("a name used twice: %v", err)
	}
}

// apps[].api enables reconciliation of a Sumsub, Persona or Veriff app's applicants
// through the provider's status API; Veriff's uses its api_key and webhook secrets.
func TestConfigProviderAPI(t *testing.T) {
	const yaml = `
apps:
  - name: ss
    provider: sumsub
    webhook_secret: ss-hook
    api: { base_url: "https://sumsub.example", app_token: "env:SS_TOKEN", secret_key: "env:SS_KEY", timeout: 3s }
  - { name: pa, provider: persona, webhook_secret: pa-hook, api: { base_url: "https://persona.example", api_key: "env:PA_KEY" } }
  - { name: ve, provider: veriff, api_key: ve-key, webhook_secret: ve-new, previous_webhook_secrets: [ve-old], api: { base_url: "https://veriff.example" } }
  - { name: on, provider: onfido, webhook_secret: on-token }
`
	getenv, environ := envFunc("SS_TOKEN", "sbx:tok", "SS_KEY", "ss-api-key", "PA_KEY", "persona_key",
		"KYCSTATE_APPS_1_API_BASE_URL", "https://persona-eu.example")
	cfg, err := loadConfig(writeFile(t, "c.yaml", yaml), getenv, environ)
	if err != nil {
		t.Fatal(err)
	}
	r, err := resolveConfig(cfg, getenv, true, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.ProviderAPIs) != 3 {
		t.Fatalf("%d provider APIs: %+v", len(r.ProviderAPIs), r.ProviderAPIs)
	}
	ss, pa, ve := r.ProviderAPIs[0], r.ProviderAPIs[1], r.ProviderAPIs[2]
	if ss.Provider != "sumsub" || ss.Name != "ss" || ss.API.AppToken != "sbx:tok" || string(ss.API.SecretKey) != "ss-api-key" ||
		ss.API.Timeout.String() != "3s" || ss.API.BaseURL != "https://sumsub.example" {
		t.Errorf("sumsub %+v", ss)
	}
	if pa.Provider != "persona" || pa.API.APIKey != "persona_key" || pa.API.BaseURL != "https://persona-eu.example" || pa.API.Timeout.String() != "10s" {
		t.Errorf("persona %+v", pa)
	}
	if ve.Provider != "veriff" || ve.Veriff == nil || ve.Veriff.APIKey != "ve-key" || len(ve.Veriff.Secrets) != 2 ||
		string(ve.Veriff.Secrets[0]) != "ve-new" || string(ve.Veriff.Secrets[1]) != "ve-old" {
		t.Errorf("veriff %+v %+v", ve, ve.Veriff)
	}

	const leaked = "a-secret-value-SHOULD-NOT-APPEAR"
	for _, c := range []struct{ name, app, wantKey string }{
		{"api on onfido", "{name: x, provider: onfido, webhook_secret: w, api: {base_url: 'https://o.example'}}", "apps[0] (x).api"},
		{"api on allpass", "{name: x, app_key: 71f2c0c6-c720-423b-8df0-7763102ad57e, secret_key: " + testSecret + ", hmac_key: " + testHMAC + ", api: {base_url: 'https://o.example'}}", "apps[0] (x).api"},
		{"sumsub without secret_key", "{name: x, provider: sumsub, webhook_secret: w, api: {base_url: 'https://s.example', app_token: " + leaked + "}}", "apps[0] (x).api.secret_key"},
		{"persona without api_key", "{name: x, provider: persona, webhook_secret: w, api: {base_url: 'https://p.example'}}", "apps[0] (x).api.api_key"},
		{"sumsub key on persona", "{name: x, provider: persona, webhook_secret: w, api: {base_url: 'https://p.example', api_key: k, app_token: " + leaked + "}}", "apps[0] (x).api.app_token"},
		{"credentials without base_url", "{name: x, provider: persona, webhook_secret: w, api: {api_key: " + leaked + "}}", "apps[0] (x).api.base_url"},
		{"base_url not http", "{name: x, provider: persona, webhook_secret: w, api: {base_url: 'ftp://p.example', api_key: " + leaked + "}}", "apps[0] (x).api.base_url"},
		{"unknown key", "{name: x, provider: persona, webhook_secret: w, api: {base_url: 'https://p.example', api_kee: k}}", "api_kee"},
	} {
		t.Run(c.name, func(t *testing.T) {
			getenv, environ := envFunc()
			cfg, err := loadConfig(writeFile(t, "c.yaml", "apps: ["+c.app+"]\n"), getenv, environ)
			if err == nil {
				_, err = resolveConfig(cfg, getenv, true, false)
			}
			if err == nil || !strings.Contains(err.Error(), c.wantKey) || strings.Contains(err.Error(), leaked) {
				t.Fatalf("error %v; want one naming %s and no secret", err, c.wantKey)
			}
		})
	}
}
