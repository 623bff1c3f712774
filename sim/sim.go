// Package sim is an Allpass simulator and load generator. It drives applicant journeys
// through a running kycstate as Allpass would: every webhook encrypted and signed with
// the app's keys (allpass.Seal), each applicant's webhooks sent one after the other, many
// applicants at once, with resent deliveries, late (out-of-order) deliveries and forged
// signatures mixed in. It then folds what the service acknowledged with the same fold the
// service uses and compares the result with what the read API serves, applicant by
// applicant.
//
// The sim needs only HTTP access: the webhook endpoint, and for the check the read API
// with a reader token (with OpenAPI set, also an auditor token for the reconciliations
// it asks for, and the Open API it serves itself). It never opens the service's data dir
// or its NATS and imports no store and no ingest handler, so it drives a deployment
// exactly as Allpass and a product service would, and what it finds is what they would
// see.
package sim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/internal/clock"
)

// Config says what to simulate and against which service.
type Config struct {
	// IngestURL is the webhook endpoint's base URL (http://127.0.0.1:8080); webhooks go to
	// IngestURL/webhooks/allpass/{AppName}.
	IngestURL string
	// APIURL is the read API's base URL (http://127.0.0.1:8081); needed when Check is set.
	APIURL string
	// AppName is the {app} of the webhook path; empty: App.Name, or App.AppKey.
	AppName string
	// App holds the appKey, method and keys webhooks are sealed with (its first key
	// generation, as Allpass uses its current keys).
	App allpass.App
	// Token is a read API bearer token (reader role is enough); needed when Check is set.
	Token string
	// Applicants is how many journeys to run; Concurrency how many at once.
	Applicants, Concurrency int
	// Rate paces sends to this many webhooks per second overall, every attempt counted;
	// 0 sends as fast as the service answers.
	Rate float64
	// ResendShare is the share of deliveries sent again with the identical body (the
	// service must answer 200 duplicate:true); LateShare the share delivered after a
	// newer status event of the same applicant (the fold marks them stale); BadSigShare
	// the share preceded by a forged copy (the service must answer 401). Each from 0 to 1.
	ResendShare, LateShare, BadSigShare float64
	// Seed makes the journeys' shapes reproducible. Applicant ids are fresh on every run,
	// so runs against the same service never mix.
	Seed uint64
	// Check waits until the read API has applied every acknowledged webhook, then compares
	// every applicant's state with the expected one.
	Check bool
	// HTTPClient sends every request; nil: a client with a 30 s timeout.
	HTTPClient *http.Client
	// CatchUpTimeout bounds the wait for the projection before the check; default 2 min.
	CatchUpTimeout time.Duration
	// GiveUpShare is the share of genuine deliveries never sent, as if all ten of
	// Allpass's attempts had failed: only the Open API knows of them. From 0 to 1.
	GiveUpShare float64
	// OpenAPI, when set, serves Allpass's Open API on this listener for the applicants
	// the sim drives, until Run returns: each one's status as far as its journey got,
	// sealed with App's keys like Allpass. OpenAPIKey is the x-private-app-key it
	// demands ("": any).
	OpenAPI    net.Listener
	OpenAPIKey string
	// ReconcileToken is an auditor token. With OpenAPI and Check, once every webhook is
	// applied, the sim asks the service to reconcile every applicant
	// (POST /v1/applicants/{id}/reconcile) and checks that each one's status is its
	// journey's: what the given-up webhooks said is recovered.
	ReconcileToken string
	// MaxAttempts bounds the sends of one webhook answered 5xx, 429 or not at all;
	// default 10, as Allpass makes. The backoff between them starts at 20 ms and doubles
	// up to 5 s: about 10 s in all, so a restart of the service loses nothing.
	MaxAttempts int
}

func (c *Config) validate() error {
	if err := c.App.Validate(); err != nil {
		return domain.E("sim", domain.KindInvalid, err)
	}
	if err := c.validateCommon(); err != nil {
		return err
	}
	if c.AppName == "" {
		c.AppName = c.App.Name
	}
	if c.AppName == "" {
		c.AppName = string(c.App.AppKey)
	}
	return nil
}

// validateCommon checks and defaults what an Allpass run and a provider's share.
func (c *Config) validateCommon() error {
	const op = "sim"
	bad := func(msg string) error { return domain.E(op, domain.KindInvalid, msg) }
	if err := checkBaseURL(c.IngestURL); err != nil {
		return bad("ingest URL: " + err.Error())
	}
	if c.Check {
		if err := checkBaseURL(c.APIURL); err != nil {
			return bad("API URL: " + err.Error())
		}
		if c.Token == "" {
			return bad("checking needs a read API token")
		}
	}
	switch {
	case c.Applicants < 1:
		return bad("applicants must be at least 1")
	case c.Concurrency < 1:
		return bad("concurrency must be at least 1")
	case c.Rate < 0:
		return bad("rate must not be negative")
	}
	for _, s := range []struct {
		name string
		v    float64
	}{{"resend share", c.ResendShare}, {"late share", c.LateShare}, {"bad signature share", c.BadSigShare}, {"give-up share", c.GiveUpShare}} {
		if !(s.v >= 0 && s.v <= 1) {
			return bad(s.name + " must be between 0 and 1")
		}
	}
	if c.ReconcileToken != "" && (c.OpenAPI == nil || !c.Check) {
		return bad("reconciling needs the Open API listener and the check")
	}
	if c.CatchUpTimeout <= 0 {
		c.CatchUpTimeout = 2 * time.Minute
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 10
	}
	return nil
}

func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("must be an http(s) URL with a host, like http://127.0.0.1:8080")
	}
	return nil
}

// Run runs cfg.Applicants journeys, then (with cfg.Check) the check. It writes a line of
// progress to progress every two seconds when progress is not nil.
//
// The report is filled as far as the run got, also when Run returns an error. Errors:
// KindInvalid for a bad config; an error naming the answer when the service refuses a
// genuine webhook with a 4xx (wrong keys or app: every other one would be refused too,
// so the run stops); an error when the read API refuses the token or the projection does
// not catch up; ctx's error when ctx ends. Mismatches, lost webhooks and contract
// violations are not errors: they are in the report (Report.OK).
func Run(ctx context.Context, cfg Config, progress io.Writer) (Report, error) {
	if err := cfg.validate(); err != nil {
		return Report{}, err
	}
	r := &runner{cfg: cfg, client: cfg.HTTPClient, runID: randHex(4)}
	if r.client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = cfg.Concurrency + 4
		r.client = &http.Client{Transport: tr, Timeout: 30 * time.Second}
		defer tr.CloseIdleConnections()
	}
	r.webhookURL = strings.TrimRight(cfg.IngestURL, "/") + "/webhooks/allpass/" + url.PathEscape(cfg.AppName)
	if cfg.Rate > 0 {
		r.pace = &pacer{interval: time.Duration(float64(time.Second) / cfg.Rate)}
	}
	if cfg.OpenAPI != nil {
		r.openAPI = &openAPI{app: cfg.App, key: cfg.OpenAPIKey, byID: map[domain.ApplicantID]*truth{}}
		defer serveOpenAPI(cfg.OpenAPI, r.openAPI)()
	}

	rep := Report{Applicants: cfg.Applicants, Outcomes: map[domain.Outcome]int{}}
	results := make([]*result, cfg.Applicants)

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stopProgress := r.startProgress(progress)

	start := time.Now()
	folders := make([]*domain.Folder, min(cfg.Concurrency, cfg.Applicants))
	for w := range folders {
		folders[w] = domain.NewFolder()
	}
	if err := eachOf(runCtx, len(folders), cfg.Applicants, func(ctx context.Context, w, i int) error {
		res, err := r.runJourney(ctx, r.plan(i, start), folders[w])
		results[i] = res
		r.done.Add(1)
		return err
	}); err != nil {
		cancel(err)
	}
	rep.Elapsed = time.Since(start)
	stopProgress()

	rep.addAll(results)
	if err := context.Cause(runCtx); err != nil {
		return rep, err
	}
	if !cfg.Check {
		return rep, nil
	}
	if progress != nil {
		fmt.Fprintf(progress, "sim: checking %d applicants against the read API (waiting for seq %d)\n", countCheckable(results), rep.MaxSeq)
	}
	err := r.check(ctx, results, &rep)
	return rep, err
}

// runner is one run's shared state; each journey's own state lives in its result.
type runner struct {
	cfg        Config
	client     *http.Client
	webhookURL string
	pace       *pacer
	runID      string // keeps externalUserIds of different runs apart

	sent atomic.Int64 // webhook requests, for progress
	done atomic.Int64 // journeys finished, for progress
	// openAPI is the Open API the sim serves, nil without cfg.OpenAPI.
	openAPI *openAPI
	// lastSeen is the highest X-Kycstate-Seq the read API has answered with.
	lastSeen atomic.Uint64
	api      *client.Client // the read API, once check starts
}

// plan makes journey i. Its shape comes from the seed and i alone; its ids are fresh.
func (r *runner) plan(i int, now time.Time) *journey {
	rng := mrand.New(mrand.NewPCG(r.cfg.Seed, uint64(i)))
	// Journeys happened in the last week; none reaches into the future.
	start := now.Add(-7 * 24 * time.Hour).Add(time.Duration(rng.Int64N(int64(5 * 24 * time.Hour)))).
		UTC().Truncate(time.Millisecond)
	evs := newEvents(rng, start)
	j := &journey{
		id:        domain.ApplicantID(domain.NewUUID()),
		ext:       domain.ExternalUserID(fmt.Sprintf("sim-%s-%06d", r.runID, i)),
		createdAt: start,
		events:    evs,
		steps:     newSteps(rng, evs, shares{resend: r.cfg.ResendShare, late: r.cfg.LateShare, badSig: r.cfg.BadSigShare}),
	}
	// Give-ups are drawn apart, so a seed keeps its shapes whatever the share.
	giveUp := mrand.New(mrand.NewPCG(r.cfg.Seed^0x9e3779b97f4a7c15, uint64(i)))
	for k := range j.steps {
		if j.steps[k].kind == stepDeliver && r.cfg.GiveUpShare > 0 && giveUp.Float64() < r.cfg.GiveUpShare {
			j.steps[k].giveUp = true
		}
	}
	return j
}

// startProgress prints a line every two seconds until the returned function is called;
// that function waits for the printer to stop.
func (r *runner) startProgress(w io.Writer) func() {
	if w == nil {
		return func() {}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		start := time.Now()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				n := r.sent.Load()
				fmt.Fprintf(w, "sim: %d webhooks sent (%.0f/s), %d/%d applicants done\n",
					n, float64(n)/time.Since(start).Seconds(), r.done.Load(), r.cfg.Applicants)
			}
		}
	}()
	return func() { close(stop); wg.Wait() }
}

// pacer hands out send times interval apart, shared by all workers. A pacer that fell
// behind (the service is slower than the rate) does not burst to catch up.
type pacer struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time
}

func (p *pacer) wait(ctx context.Context) error {
	if p == nil {
		return ctx.Err()
	}
	p.mu.Lock()
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	at := p.next
	p.next = p.next.Add(p.interval)
	p.mu.Unlock()
	return clock.Sleep(ctx, time.Until(at))
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func countCheckable(results []*result) int {
	n := 0
	for _, res := range results {
		if res != nil && !res.lost && res.events > 0 {
			n++
		}
	}
	return n
}

// sortedOutcomes lists outcomes in the fold's order of checks.
func sortedOutcomes(m map[domain.Outcome]int) []domain.Outcome {
	order := []domain.Outcome{domain.OutcomeApplied, domain.OutcomeAnnotated, domain.OutcomeStale,
		domain.OutcomeIrregular, domain.OutcomeDuplicate, domain.OutcomeUnknown}
	var out []domain.Outcome
	for _, o := range order {
		if m[o] > 0 {
			out = append(out, o)
		}
	}
	var rest []domain.Outcome
	for o := range m {
		if !slices.Contains(order, o) {
			rest = append(rest, o)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}
