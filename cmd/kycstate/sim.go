package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/sim"
)

const simHelp = `Simulates Allpass against a running kycstate and checks what it kept. It works only through
HTTP: the webhook endpoint, and the read API for the check; it never opens the data dir.

It runs --applicants applicant journeys, --concurrency at a time: created, in progress, a
few steps passed (document, selfie, liveness, ...), completed, in review, approved or
rejected; some go through on hold, some restart after the decision, a few carry annotations
(applicantDuplicateEmail, expiredDocument) or event names Allpass may add later. Every
webhook is encrypted and signed exactly as Allpass does (aes-256-cbc with HMAC-SHA256, or
aes-256-gcm), with the config's first app. One applicant's webhooks go one after the other;
applicants run in parallel. Mixed in, as shares of the deliveries:
  --resend         the identical body sent again: must be answered 200 duplicate:true
  --late           a status event delivered after a newer one: the fold marks it stale
  --bad-signature  a forged copy sent first: must be answered 401 and stored nowhere
  --give-up        never sent at all, as if Allpass's ten attempts had all failed
--provider sumsub|persona|veriff|onfido simulates that provider instead, with the config's
first app of it: each webhook in the provider's shape, signed with its webhook_secret as the
provider signs (Veriff with its api_key), the same --resend, --late (dated events only) and
--bad-signature (signed with a secret the service does not hold); the check always runs.
Answers 5xx, 408, 429 or none are retried with a backoff from 20 ms doubling up to 5 s, up to
10 attempts (about 10 s in all: a restart of the service loses nothing).

With --open-api ADDR it also serves Allpass's Open API there (GET
/api/public/applicant/{id}, sealed with the app's keys like Allpass) for the applicants it
drives: each one's status as far as its journey got, given-up webhooks included. Point the
service's apps[].open_api.base_url at it (the development config uses 127.0.0.1:8082). With
the check on, once every webhook is applied it asks the service to reconcile every
applicant (POST /v1/applicants/{id}/reconcile, the config's first auditor token; the service
paces the Open API calls to reconcile.rate) and checks that every status is its journey's:
the given-up webhooks recovered.

With --check (default) it then waits until the read API has applied every acknowledged
webhook, folds each applicant's acknowledged events with the service's own fold, and
compares status, stepsPassed, flags, warnings, anomalies, events and lastSeq with
GET /v1/applicants/{id}.

It prints webhooks sent, the achieved rate, latency percentiles of the 200 answers, the
answers by kind, the expected outcomes and every mismatch. Exit status 1 on any mismatch,
lost webhook or contract violation (a resend stored twice, a forgery accepted).

Keys and token come from --config (the first app, the first reader token). Without
--config it uses <data_dir>/dev.yaml, written by "kycstate serve" in development mode, so
"kycstate serve" in one terminal and "kycstate sim" in another just work.`

func cmdSim(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "sim", simHelp)
	cfgPath := fs.String("config", "", "YAML config file (default: <data_dir>/"+devConfigName+" of a development-mode serve)")
	ingestURL := fs.String("ingest", "", "webhook endpoint base URL (default: from the config's ingest.listen, http://127.0.0.1:8080 for the default config)")
	apiURL := fs.String("api", "", "read API base URL (default: from the config's api.listen, http://127.0.0.1:8081 for the default config)")
	applicants := fs.Int("applicants", 100, "applicant journeys to run")
	concurrency := fs.Int("concurrency", 16, "journeys in flight at once")
	rate := fs.Float64("rate", 0, "webhooks per second overall, retries included; 0: as fast as answered")
	resend := fs.Float64("resend", 0.05, "share of deliveries resent with the identical body (0 to 1)")
	late := fs.Float64("late", 0.05, "share of deliveries sent after a newer status event (0 to 1)")
	badSig := fs.Float64("bad-signature", 0.02, "share of deliveries preceded by a forged copy (0 to 1)")
	seed := fs.Uint64("seed", 0, "seed of the journeys' shapes, to repeat a run (default: a random one, printed; applicant ids are always fresh)")
	check := fs.Bool("check", true, "compare every applicant's state in the read API with the expected one")
	method := fs.String("method", "", "encrypt with aes-256-cbc or aes-256-gcm instead of the app's method")
	giveUp := fs.Float64("give-up", 0, "share of deliveries never sent, as if every attempt failed (0 to 1); only the Open API knows them")
	provider := fs.String("provider", "allpass", "the provider whose webhooks to simulate: allpass, sumsub, persona, veriff or onfido (the config's first app of it)")
	openAPIAddr := fs.String("open-api", "", "serve Allpass's Open API for the simulated applicants on this address, e.g. 127.0.0.1:8082, and reconcile at the end (default: off)")
	if err := parse(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	cfg, err := loadSimConfig(e, *cfgPath)
	if err != nil {
		return err
	}
	r, err := resolveConfig(cfg, e.getenv, true, *check)
	if err != nil {
		return err
	}
	if p := domain.Provider(*provider); p != domain.ProviderAllpass {
		return simProvider(ctx, e, r, p, simProviderFlags{ingest: *ingestURL, api: *apiURL, applicants: *applicants,
			concurrency: *concurrency, resend: *resend, late: *late, badSig: *badSig, seed: *seed, seedSet: set["seed"], check: *check})
	}
	if len(r.Apps) == 0 {
		return cfgErr("apps", "sim drives an Allpass app, and the config has none")
	}
	app := *r.Apps[0]
	switch m := allpass.Method(*method); m {
	case "":
	case allpass.MethodCBC, allpass.MethodGCM:
		app.Method = m
	default:
		return fmt.Errorf("%w: --method must be %s or %s", errUsage, allpass.MethodCBC, allpass.MethodGCM)
	}
	if *ingestURL == "" {
		*ingestURL = listenURL(r.Ingest.Listen, "http://127.0.0.1:8080")
	}
	if *apiURL == "" {
		*apiURL = listenURL(r.API.Listen, "http://127.0.0.1:8081")
	}
	if !set["seed"] {
		var b [8]byte
		rand.Read(b[:])
		*seed = binary.LittleEndian.Uint64(b[:])
	}
	var token string
	if *check {
		token = r.Tokens[0].Secret
		for _, t := range r.Tokens {
			if t.Role == domain.RoleReader {
				token = t.Secret
				break
			}
		}
	}

	var (
		openAPI        net.Listener
		openAPIKey     string
		reconcileToken string
	)
	if *openAPIAddr != "" {
		for _, oa := range r.OpenAPIs {
			if oa.App.AppKey == app.AppKey {
				openAPIKey = oa.OpenAPI.PrivateKey
			}
		}
		if *check {
			for _, t := range r.Tokens {
				if t.Role == domain.RoleAuditor {
					reconcileToken = t.Secret
					break
				}
			}
			if reconcileToken == "" {
				return fmt.Errorf("%w: reconciling through the API needs an auditor token in the config's api.tokens (or --check=false)", errUsage)
			}
		}
		ln, err := net.Listen("tcp", *openAPIAddr)
		if err != nil {
			return fmt.Errorf("--open-api %s: %w", *openAPIAddr, err)
		}
		defer ln.Close()
		openAPI = ln
		fmt.Fprintf(e.stderr, "sim: Open API on http://%s\n", ln.Addr())
	} else if *giveUp > 0 && *check {
		fmt.Fprintln(e.stderr, "sim: --give-up without --open-api: applicants that missed a webhook are checked against what was delivered")
	}

	var progress io.Writer
	if p := newProgress(e, "sim"); p.on {
		progress = e.stderr
	}
	fmt.Fprintf(e.stderr, "sim: app %s (%s), webhooks to %s, seed %d\n", app.Name, app.Method, *ingestURL, *seed)
	rep, err := sim.Run(ctx, sim.Config{
		IngestURL: *ingestURL, APIURL: *apiURL, App: app, Token: token,
		Applicants: *applicants, Concurrency: *concurrency, Rate: *rate,
		ResendShare: *resend, LateShare: *late, BadSigShare: *badSig,
		Seed: *seed, Check: *check,
		GiveUpShare: *giveUp, OpenAPI: openAPI, OpenAPIKey: openAPIKey, ReconcileToken: reconcileToken,
	}, progress)
	if rep.Webhooks > 0 {
		rep.Print(e.stdout)
	}
	if err != nil {
		return err
	}
	if !rep.OK() {
		return &exitErr{code: 1, err: fmt.Errorf("sim: %d mismatches, %d applicants with a lost webhook, %d problems",
			len(rep.Mismatches), rep.Lost, len(rep.Problems))}
	}
	return nil
}

// loadSimConfig loads --config, or without one the development config a serve wrote.
func loadSimConfig(e *env, path string) (Config, error) {
	cfg, err := loadConfig(path, e.getenv, e.environ)
	if err != nil || path != "" || definesApp(cfg) {
		return cfg, err
	}
	dev := filepath.Join(cfg.DataDir, devConfigName)
	if _, err := os.Stat(dev); err != nil {
		return cfg, fmt.Errorf("no --config and no development config at %s: start \"kycstate serve\" (development mode) first, or give --config", dev)
	}
	return loadConfig(dev, e.getenv, e.environ)
}

// listenURL turns a listen address (":8080", "0.0.0.0:8080", "127.0.0.1:8081") into the
// URL a local client uses, or returns def when it is not a host:port.
func listenURL(listen, def string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port == "" {
		return def
	}
	switch host {
	case "", "0.0.0.0", "::":
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

type simProviderFlags struct {
	ingest, api             string
	applicants, concurrency int
	resend, late, badSig    float64
	seed                    uint64
	seedSet, check          bool
}

// simProvider is sim --provider P for a provider other than Allpass: the config's first
// app of P, its webhook secret and (Veriff) api_key, journeys then the check.
func simProvider(ctx context.Context, e *env, r *Resolved, p domain.Provider, f simProviderFlags) error {
	if !p.Valid() {
		return fmt.Errorf("%w: --provider must be allpass, sumsub, persona, veriff or onfido", errUsage)
	}
	if !f.check {
		return fmt.Errorf("%w: sim --provider always checks every state; drop --check=false", errUsage)
	}
	var app *AppConfig
	idx := 0
	for i := range r.Config.Apps {
		if domain.Provider(r.Config.Apps[i].Provider) == p {
			app, idx = &r.Config.Apps[i], i
			break
		}
	}
	if app == nil {
		return cfgErr("apps", "sim --provider %s drives an app of that provider, and the config has none", p)
	}
	key := fmt.Sprintf("apps[%d] (%s)", idx, app.Name)
	secret, err := app.WebhookSecret.resolve(key+".webhook_secret", e.getenv)
	if err != nil {
		return err
	}
	var apiKey string
	if p == domain.ProviderVeriff {
		if apiKey, err = app.APIKey.resolve(key+".api_key", e.getenv); err != nil {
			return err
		}
	}
	if f.ingest == "" {
		f.ingest = listenURL(r.Ingest.Listen, "http://127.0.0.1:8080")
	}
	if f.api == "" {
		f.api = listenURL(r.API.Listen, "http://127.0.0.1:8081")
	}
	if !f.seedSet {
		var b [8]byte
		rand.Read(b[:])
		f.seed = binary.LittleEndian.Uint64(b[:])
	}
	token := r.Tokens[0].Secret
	for _, t := range r.Tokens {
		if t.Role == domain.RoleReader {
			token = t.Secret
			break
		}
	}
	var progress io.Writer
	if pr := newProgress(e, "sim"); pr.on {
		progress = e.stderr
	}
	fmt.Fprintf(e.stderr, "sim: %s app %s, webhooks to %s, seed %d\n", p, app.Name, f.ingest, f.seed)
	rep, err := sim.RunProvider(ctx, sim.ProviderConfig{Provider: p, AppName: app.Name, Secret: []byte(secret), APIKey: apiKey,
		IngestURL: f.ingest, APIURL: f.api, Token: token, Applicants: f.applicants, Concurrency: f.concurrency,
		ResendShare: f.resend, LateShare: f.late, BadSigShare: f.badSig, Seed: f.seed}, progress)
	if rep.Webhooks > 0 {
		rep.Print(e.stdout)
	}
	if err != nil {
		return err
	}
	if !rep.OK() {
		return &exitErr{code: 1, err: fmt.Errorf("sim: %d mismatches, %d applicants with a lost webhook, %d problems",
			len(rep.Mismatches), rep.Lost, len(rep.Problems))}
	}
	return nil
}
