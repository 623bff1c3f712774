// Validation: resolveConfig checks every value, reads the secrets and parses the keys,
// so that serve and the tools start only on a config they can run with.

package main

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/ingest/veriff"
	"github.com/kycstate/kycstate/internal/source"
	"github.com/kycstate/kycstate/reconcile"
	"github.com/kycstate/kycstate/store/eventlog"
)

// Resolved is the configuration with secrets read and keys parsed.
type Resolved struct {
	Config
	Apps []*allpass.App
	// Providers are the apps of the other providers (DESIGN.md section 13).
	Providers []*ingest.ProviderApp
	Tokens    []resolvedToken
	// OpenAPIs are the apps with open_api configured, for reconciliation.
	OpenAPIs []reconcile.App
	// ProviderAPIs are the provider apps with api configured, for reconciliation.
	ProviderAPIs []reconcile.ProviderApp
	URLs         []string
	Sync         time.Duration // 0: fsync every write
	// NATSPassword is nats.password read.
	NATSPassword string
	// Keys are keys.master and keys.previous, nil when keys.master is not set.
	Keys *eventlog.MasterKeys
	// TrustedProxies is api.trusted_proxies parsed.
	TrustedProxies []netip.Prefix
	// ConsoleSessionKey is api.console.session_key, nil when it is not set.
	ConsoleSessionKey []byte
}

type resolvedToken struct {
	Name   string
	Role   domain.Role
	Secret string
}

// resolve validates cfg and reads its secrets. needApps / needTokens say what the mode uses.
func resolveConfig(cfg Config, getenv func(string) string, needApps, needTokens bool) (*Resolved, error) {
	r := &Resolved{Config: cfg}
	if cfg.DataDir == "" {
		return nil, cfgErr("data_dir", "must not be empty")
	}
	for _, u := range strings.Split(cfg.NATS.URL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			r.URLs = append(r.URLs, u)
		}
	}
	if cfg.NATS.Password != "" {
		pw, err := cfg.NATS.Password.resolve("nats.password", getenv)
		if err != nil {
			return nil, err
		}
		r.NATSPassword = pw
	}
	if cfg.NATS.Replicas < 1 || cfg.NATS.Replicas > 5 {
		return nil, cfgErr("nats.replicas", "must be 1 to 5, got %d", cfg.NATS.Replicas)
	}
	switch s := cfg.NATS.SyncInterval; s {
	case "", "always":
	default:
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, cfgErr("nats.sync_interval", "must be \"always\" or a positive duration")
		}
		r.Sync = d
	}
	if cfg.NATS.RejectsMaxBytes < 1<<20 {
		return nil, cfgErr("nats.rejects_max_bytes", "must be at least 1048576 (1 MiB)")
	}
	if time.Duration(cfg.NATS.RejectsMaxAge) < time.Minute {
		return nil, cfgErr("nats.rejects_max_age", "must be at least 1m; 168h (7 days) is the default")
	}
	if cfg.Retention.EraseAfter < 0 {
		return nil, cfgErr("retention.erase_after", "must not be negative; 0 switches retention off")
	}
	if cfg.Retention.EraseAfter > 0 && cfg.Retention.EraseAfter < Duration(time.Second) {
		return nil, cfgErr("retention.erase_after", "must be 0 (off) or at least 1s; AML's retention is years (43800h)")
	}
	if cfg.Retention.Every <= 0 {
		return nil, cfgErr("retention.every", "must be positive")
	}
	if e := time.Duration(cfg.Projection.SnapshotEvery); e != 0 && e < time.Second {
		return nil, cfgErr("projection.snapshot_every", "must be 0 (off) or at least 1s; 6h is the default")
	}
	if k := cfg.Projection.SnapshotsKeep; k < 1 || k > 1000 {
		return nil, cfgErr("projection.snapshots_keep", "must be 1 to 1000, got %d", k)
	}
	if err := resolveKeys(r, cfg.Keys, getenv); err != nil {
		return nil, err
	}
	// The window only spares the log the copies it recognises: a resend past it is stored
	// and folded a duplicate by its content id (DESIGN.md section 15), so a short window
	// costs space, never a decision.
	if time.Duration(cfg.NATS.DuplicateWindow) < time.Second {
		return nil, cfgErr("nats.duplicate_window", "must be at least 1s; Allpass retries for hours, 24h is the default")
	}
	if cfg.Ingest.MaxBody <= 0 {
		return nil, cfgErr("ingest.max_body", "must be positive")
	}
	if cfg.Ingest.MaxInFlight <= 0 {
		return nil, cfgErr("ingest.max_in_flight", "must be positive")
	}
	if qw := time.Duration(cfg.Ingest.QueueWait); qw <= 0 || qw > shutdownTimeout/2 {
		// Shutdown waits for queued requests too; a wait past half its bound could
		// leave a queued request unanswered when the log closes.
		return nil, cfgErr("ingest.queue_wait", "must be positive and at most %s", shutdownTimeout/2)
	}
	if at := time.Duration(cfg.Ingest.AppendTimeout); at <= 0 || at+time.Duration(cfg.Ingest.QueueWait) > ingest.MaxHold {
		return nil, cfgErr("ingest.append_timeout", "must be positive, and with ingest.queue_wait at most %s, so a held webhook is answered before the connection's write timeout", ingest.MaxHold)
	}
	if rt := time.Duration(cfg.Ingest.ReadTimeout); rt <= 0 || rt > ingest.MaxReadTimeout {
		return nil, cfgErr("ingest.read_timeout", "must be positive and at most %s, so a webhook read, queued and appended is answered before the connection's write timeout", ingest.MaxReadTimeout)
	}
	if cfg.Ingest.MaxConnsPerSource < 0 {
		return nil, cfgErr("ingest.max_conns_per_source", "must be 0 (no cap) or positive")
	}
	if cfg.Ingest.MaxClockSkew <= 0 {
		return nil, cfgErr("ingest.max_clock_skew", "must be positive; 5m is the default")
	}
	if cfg.Ingest.MaxEventAge <= 0 {
		return nil, cfgErr("ingest.max_event_age", "must be positive; 168h (past Allpass's retries) is the default")
	}
	switch cfg.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return nil, cfgErr("log.level", "must be debug, info, warn or error")
	}
	switch cfg.Log.Format {
	case "json", "console":
	default:
		return nil, cfgErr("log.format", "must be json or console")
	}

	seen := map[string]string{}
	for i, a := range cfg.Apps {
		key := fmt.Sprintf("apps[%d]", i)
		if a.Name != "" {
			key = fmt.Sprintf("apps[%d] (%s)", i, a.Name)
		}
		if p := domain.Provider(a.Provider); p != "" && p != domain.ProviderAllpass {
			papp, err := resolveProviderApp(key, p, a, getenv)
			if err != nil {
				return nil, err
			}
			if prev, dup := seen[papp.Name()]; dup {
				return nil, cfgErr(key, "name %q already used by %s", papp.Name(), prev)
			}
			seen[papp.Name()] = key
			r.Providers = append(r.Providers, papp)
			pa, err := resolveProviderAPI(key, p, a, getenv)
			if err != nil {
				return nil, err
			}
			if pa != nil {
				r.ProviderAPIs = append(r.ProviderAPIs, *pa)
			}
			continue
		}
		if err := onlyKeysOf(key, domain.ProviderAllpass, a); err != nil {
			return nil, err
		}
		app, err := resolveApp(key, a, getenv)
		if err != nil {
			return nil, err
		}
		for _, id := range []string{app.Name, string(app.AppKey)} {
			if prev, dup := seen[id]; dup {
				return nil, cfgErr(key, "name or app_key %q already used by %s", id, prev)
			}
			seen[id] = key
		}
		r.Apps = append(r.Apps, app)
		oa, err := resolveOpenAPI(key+".open_api", a.OpenAPI, getenv)
		if err != nil {
			return nil, err
		}
		if oa.BaseURL != "" {
			r.OpenAPIs = append(r.OpenAPIs, reconcile.App{App: app, OpenAPI: oa})
		}
	}
	rc := cfg.Reconcile
	switch {
	case rc.Every < 0:
		return nil, cfgErr("reconcile.every", "must not be negative (0 switches the sweep off)")
	case rc.StaleAfter <= 0:
		return nil, cfgErr("reconcile.stale_after", "must be positive")
	case rc.FullEvery <= 0:
		return nil, cfgErr("reconcile.full_every", "must be positive")
	case !(rc.Rate > 0) || rc.Rate > 1000:
		return nil, cfgErr("reconcile.rate", "must be more than 0 and at most 1000 calls per second")
	}
	if needApps && len(r.Apps) == 0 && len(r.Providers) == 0 {
		return nil, cfgErr("apps", "at least one app is needed to accept webhooks")
	}

	names := map[string]bool{}
	for i, t := range cfg.API.Tokens {
		key := fmt.Sprintf("api.tokens[%d]", i)
		if t.Name == "" {
			return nil, cfgErr(key+".name", "must not be empty")
		}
		if names[t.Name] {
			return nil, cfgErr(key+".name", "%q used twice", t.Name)
		}
		names[t.Name] = true
		role, err := domain.ParseRole(t.Role)
		if err != nil {
			return nil, cfgErr(key+".role", "must be reader, auditor or admin")
		}
		sec, err := t.Token.resolve(key+".token", getenv)
		if err != nil {
			return nil, err
		}
		if len(sec) < 16 {
			return nil, cfgErr(key+".token", "must be at least 16 characters")
		}
		r.Tokens = append(r.Tokens, resolvedToken{Name: t.Name, Role: role, Secret: sec})
	}
	if needTokens && len(r.Tokens) == 0 {
		return nil, cfgErr("api.tokens", "at least one token is needed to serve the read API")
	}
	for i, c := range cfg.API.TrustedProxies {
		p, err := source.ParseCIDR(c)
		if err != nil {
			return nil, cfgErr(fmt.Sprintf("api.trusted_proxies[%d]", i), "%v", err)
		}
		r.TrustedProxies = append(r.TrustedProxies, p)
	}
	if cfg.API.Console.SessionKey != "" {
		const key = "api.console.session_key"
		v, err := cfg.API.Console.SessionKey.resolve(key, getenv)
		if err != nil {
			return nil, err
		}
		if r.ConsoleSessionKey, err = parseKey32(v); err != nil {
			return nil, cfgErr(key, "%v", err)
		}
	}
	return r, nil
}

// parseKey32 reads a 32-byte key given as 64 hex characters or base64 (standard or
// URL alphabet, padded or not). Its error holds no part of s.
func parseKey32(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, errors.New("must be 32 bytes as 64 hex characters or base64 (kycstate keygen prints one)")
}

// resolveKeys parses keys.master and keys.previous. Errors name the key, never the value.
func resolveKeys(r *Resolved, kc KeysConfig, getenv func(string) string) error {
	if kc.Master == "" {
		if len(kc.Previous) > 0 {
			return cfgErr("keys.master", "must be set when keys.previous is")
		}
		return nil
	}
	parse := func(key string, s Secret) (eventlog.MasterKey, error) {
		v, err := s.resolve(key, getenv)
		if err != nil {
			return eventlog.MasterKey{}, err
		}
		m, err := eventlog.ParseMasterKey(v)
		if err != nil {
			return eventlog.MasterKey{}, cfgErr(key, "%v", err)
		}
		return m, nil
	}
	cur, err := parse("keys.master", kc.Master)
	if err != nil {
		return err
	}
	keys := &eventlog.MasterKeys{Current: cur}
	for i, p := range kc.Previous {
		m, err := parse(fmt.Sprintf("keys.previous[%d]", i), p)
		if err != nil {
			return err
		}
		keys.Previous = append(keys.Previous, m)
	}
	r.Keys = keys
	return nil
}

// resolveOpenAPI checks an app's open_api and reads its private key; an empty base_url
// leaves reconciliation off for the app (and then nothing else may be set).
func resolveOpenAPI(key string, c OpenAPIConfig, getenv func(string) string) (reconcile.OpenAPI, error) {
	if c.BaseURL == "" {
		if c.PrivateKey != "" {
			return reconcile.OpenAPI{}, cfgErr(key+".base_url", "must be set with private_key")
		}
		return reconcile.OpenAPI{}, nil
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return reconcile.OpenAPI{}, cfgErr(key+".base_url", "must be an http or https URL with a host, without credentials or query")
	}
	if c.PrivateKey == "" {
		return reconcile.OpenAPI{}, cfgErr(key+".private_key", "must be set with base_url")
	}
	pk, err := c.PrivateKey.resolve(key+".private_key", getenv)
	if err != nil {
		return reconcile.OpenAPI{}, err
	}
	if c.Timeout < 0 {
		return reconcile.OpenAPI{}, cfgErr(key+".timeout", "must not be negative")
	}
	t := time.Duration(c.Timeout)
	if t == 0 {
		t = reconcile.DefaultTimeout
	}
	return reconcile.OpenAPI{BaseURL: c.BaseURL, PrivateKey: pk, Timeout: t}, nil
}

func resolveApp(key string, a AppConfig, getenv func(string) string) (*allpass.App, error) {
	if a.Name == "" {
		return nil, cfgErr(key+".name", "must not be empty")
	}
	appKey, err := domain.ParseAppKey(a.AppKey)
	if err != nil {
		return nil, cfgErr(key+".app_key", "must be a UUID")
	}
	app := &allpass.App{Name: a.Name, AppKey: appKey, Method: allpass.Method(a.Method)}
	switch app.Method {
	case allpass.MethodCBC, allpass.MethodGCM:
	case "":
		app.Method = allpass.MethodCBC
	default:
		return nil, cfgErr(key+".method", "must be aes-256-cbc or aes-256-gcm")
	}
	gens := append([]KeyConfig{{SecretKey: a.SecretKey, HMACKey: a.HMACKey}}, a.PreviousKeys...)
	for g, kc := range gens {
		field := ".secret_key"
		hfield := ".hmac_key"
		if g > 0 {
			field = fmt.Sprintf(".previous_keys[%d].secret_key", g-1)
			hfield = fmt.Sprintf(".previous_keys[%d].hmac_key", g-1)
		}
		sec, err := kc.SecretKey.resolve(key+field, getenv)
		if err != nil {
			return nil, err
		}
		if sec == "" {
			return nil, cfgErr(key+field, "must be set")
		}
		k, err := allpass.ParseKey(a.Name, field[1:], sec)
		if err != nil {
			return nil, cfgErr(key+field, "must be 64 hex characters or base64 of 32 bytes")
		}
		keys := allpass.Keys{Secret: k}
		if app.Method == allpass.MethodCBC {
			h, err := kc.HMACKey.resolve(key+hfield, getenv)
			if err != nil {
				return nil, err
			}
			if h == "" {
				return nil, cfgErr(key+hfield, "must be set for aes-256-cbc")
			}
			hk, err := allpass.ParseKey(a.Name, hfield[1:], h)
			if err != nil {
				return nil, cfgErr(key+hfield, "must be 64 hex characters or base64 of 32 bytes")
			}
			keys.HMAC = hk[:]
		}
		app.Keys = append(app.Keys, keys)
	}
	return app, nil
}

// resolveProviderApp checks an app of provider p (not Allpass) and reads its secrets:
// webhook_secret, then previous_webhook_secrets, and Veriff's api_key. Errors name the key,
// never a value.
func resolveProviderApp(key string, p domain.Provider, a AppConfig, getenv func(string) string) (*ingest.ProviderApp, error) {
	if !p.Valid() {
		return nil, cfgErr(key+".provider", "must be allpass, sumsub, persona, veriff or onfido")
	}
	if err := onlyKeysOf(key, p, a); err != nil {
		return nil, err
	}
	if !domain.IsSubjectToken(a.Name) {
		return nil, cfgErr(key+".name", "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-' (it names the app in /webhooks/%s/{app} and in subjects)", p)
	}
	c := ingest.ProviderAppConfig{Provider: p, Name: a.Name}
	secrets := append([]Secret{a.WebhookSecret}, a.PreviousWebhookSecrets...)
	for i, sec := range secrets {
		field := ".webhook_secret"
		if i > 0 {
			field = fmt.Sprintf(".previous_webhook_secrets[%d]", i-1)
		}
		if sec == "" {
			return nil, cfgErr(key+field, "must be set")
		}
		v, err := sec.resolve(key+field, getenv)
		if err != nil {
			return nil, err
		}
		c.Secrets = append(c.Secrets, []byte(v))
	}
	if p == domain.ProviderVeriff {
		if a.APIKey == "" {
			return nil, cfgErr(key+".api_key", "must be set for veriff: a webhook's X-AUTH-CLIENT must equal it")
		}
		v, err := a.APIKey.resolve(key+".api_key", getenv)
		if err != nil {
			return nil, err
		}
		c.APIKey = v
	}
	app, err := ingest.NewProviderApp(c)
	if err != nil {
		return nil, cfgErr(key, "%s", domain.MessageOf(err))
	}
	return app, nil
}

// onlyKeysOf refuses a key of a's entry that provider p's apps do not have: an Allpass
// app's keys on another provider's entry, or the reverse, are a mistake, not ignored.
func onlyKeysOf(key string, p domain.Provider, a AppConfig) error {
	set := map[string]bool{
		"webhook_secret": a.WebhookSecret != "", "previous_webhook_secrets": len(a.PreviousWebhookSecrets) > 0,
		"api_key": a.APIKey != "",
		"app_key": a.AppKey != "", "method": a.Method != "", "secret_key": a.SecretKey != "",
		"hmac_key": a.HMACKey != "", "previous_keys": len(a.PreviousKeys) > 0, "open_api": a.OpenAPI != (OpenAPIConfig{}),
		"api": a.API != (ProviderAPIConfig{}),
	}
	var allowed []string
	switch p {
	case domain.ProviderAllpass:
		allowed = []string{"app_key", "method", "secret_key", "hmac_key", "previous_keys", "open_api"}
	case domain.ProviderVeriff:
		allowed = []string{"webhook_secret", "previous_webhook_secrets", "api_key", "api"}
	case domain.ProviderSumsub, domain.ProviderPersona:
		allowed = []string{"webhook_secret", "previous_webhook_secrets", "api"}
	default:
		allowed = []string{"webhook_secret", "previous_webhook_secrets"}
	}
	for _, k := range []string{"webhook_secret", "previous_webhook_secrets", "api_key", "app_key", "method",
		"secret_key", "hmac_key", "previous_keys", "open_api", "api"} {
		if set[k] && !slices.Contains(allowed, k) {
			return cfgErr(key+"."+k, "is not a key of a %s app (it has %s)", p, strings.Join(allowed, ", "))
		}
	}
	return nil
}

// resolveProviderAPI reads apps[].api of a Sumsub, Persona or Veriff app: nil when it has
// no base_url. Each provider's credentials must be set, and no other's.
func resolveProviderAPI(key string, p domain.Provider, a AppConfig, getenv func(string) string) (*reconcile.ProviderApp, error) {
	c := a.API
	if c.BaseURL == "" {
		if c != (ProviderAPIConfig{}) {
			return nil, cfgErr(key+".api.base_url", "must be set with the other keys of api")
		}
		return nil, nil
	}
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" {
		return nil, cfgErr(key+".api.base_url", "must be an http or https URL with a host, without credentials or query")
	}
	if c.Timeout < 0 {
		return nil, cfgErr(key+".api.timeout", "must not be negative")
	}
	out := &reconcile.ProviderApp{Provider: p, Name: a.Name,
		API: reconcile.ProviderAPI{BaseURL: c.BaseURL, Timeout: time.Duration(c.Timeout)}}
	if out.API.Timeout == 0 {
		out.API.Timeout = reconcile.DefaultTimeout
	}
	need := map[domain.Provider][]string{domain.ProviderSumsub: {"app_token", "secret_key"}, domain.ProviderPersona: {"api_key"}}[p]
	vals := map[string]Secret{"app_token": c.AppToken, "secret_key": c.SecretKey, "api_key": c.APIKey}
	got := map[string]string{}
	for _, k := range []string{"app_token", "secret_key", "api_key"} {
		sec := vals[k]
		if !slices.Contains(need, k) {
			if sec != "" {
				return nil, cfgErr(key+".api."+k, "is not a key of a %s app's api", p)
			}
			continue
		}
		if sec == "" {
			return nil, cfgErr(key+".api."+k, "must be set for %s's status API", p)
		}
		v, err := sec.resolve(key+".api."+k, getenv)
		if err != nil {
			return nil, err
		}
		got[k] = v
	}
	switch p {
	case domain.ProviderSumsub:
		out.API.AppToken, out.API.SecretKey = got["app_token"], []byte(got["secret_key"])
	case domain.ProviderPersona:
		out.API.APIKey = got["api_key"]
	case domain.ProviderVeriff:
		// Its api_key and webhook secrets, read again: the adapter's app keeps them unexported.
		v := &veriff.App{Name: a.Name}
		secrets := append([]Secret{a.WebhookSecret}, a.PreviousWebhookSecrets...)
		for i, sec := range secrets {
			field := ".webhook_secret"
			if i > 0 {
				field = fmt.Sprintf(".previous_webhook_secrets[%d]", i-1)
			}
			s, err := sec.resolve(key+field, getenv)
			if err != nil {
				return nil, err
			}
			v.Secrets = append(v.Secrets, []byte(s))
		}
		k, err := a.APIKey.resolve(key+".api_key", getenv)
		if err != nil {
			return nil, err
		}
		v.APIKey = k
		out.Veriff = v
	default:
		return nil, cfgErr(key+".api", "%s has no status API kycstate reconciles with", p)
	}
	return out, nil
}
