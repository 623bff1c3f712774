package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest"
	"github.com/kycstate/kycstate/ingest/allpass"
	"github.com/kycstate/kycstate/ingest/providertest"
	"github.com/prometheus/client_golang/prometheus"
)

// phaseIngestProviders measures webhooks/s through the real handler when the four other
// providers' webhooks (DESIGN.md section 13) are mixed with Allpass's, one in five
// Allpass's, against the same handler's Allpass-only rate in the same run: 16 senders,
// rounds alternating the two mixes so that drift of the machine falls on both. ratio is
// the median of the rounds' mixed rate over their Allpass-only rate (issue 23 asks at
// least 0.9).
func phaseIngestProviders(ctx context.Context, o options, r *result) error {
	n, rounds := 24_000, 24
	if o.Quick {
		n, rounds = 8_000, 8
	}
	senders := ingestSenders
	warm := 2 * senders * 4
	app := benchApp(o.Seed)
	w := newWorkload(o.Seed, app, 2_000)
	ds := make([]delivery, 2*n+warm)
	for i := range ds {
		ds[i] = w.next()
	}
	allpassHooks, err := seal(app, ds)
	if err != nil {
		return err
	}
	dir, err := phaseDir(o, "ingest_providers")
	if err != nil {
		return err
	}
	log := newLogger()
	c, events, err := openLog(ctx, dir, false, log)
	if err != nil {
		return err
	}
	defer c.Close()

	provs := providertest.Providers()
	papps := make([]*ingest.ProviderApp, len(provs))
	secrets := make([][]byte, len(provs))
	for i, p := range provs {
		secrets[i] = []byte("bench-" + string(p) + "-secret")
		pc := ingest.ProviderAppConfig{Provider: p, Name: "bench", Secrets: [][]byte{secrets[i]}}
		if p == domain.ProviderVeriff {
			pc.APIKey = "bench-veriff-key"
		}
		if papps[i], err = ingest.NewProviderApp(pc); err != nil {
			return err
		}
	}
	reg := prometheus.NewRegistry()
	h, err := ingest.NewHandler(ingest.HandlerConfig{Apps: []*allpass.App{app}, Providers: papps, Events: events,
		Logger: log, Metrics: reg, KeepRaw: true})
	if err != nil {
		return err
	}
	base, stop, err := serve(ingest.NewHTTPServer("127.0.0.1:0", h), "handler")
	if err != nil {
		return err
	}
	defer stop()
	url := base + "/webhooks/allpass/" + app.Name
	client := keepAliveClient(senders)
	defer client.CloseIdleConnections()

	// The mix: one in five Allpass's (the second half of its deliveries), the rest the
	// four providers' journeys in turn, every webhook a new event.
	var provHooks []webhook
	now := time.Now().Add(-24 * time.Hour)
	for k := 0; len(provHooks) < n; k++ {
		i := k % len(provs)
		p := provs[i]
		evs, _ := providertest.Journey(p, benchProviderID(p), fmt.Sprintf("bench-%d", k), now.Add(time.Duration(k)*time.Millisecond))
		for _, e := range evs {
			body := providertest.Body(p, e)
			provHooks = append(provHooks, webhook{body: body, url: base + "/webhooks/" + string(p) + "/bench",
				header: providertest.Sign(p, secrets[i], "bench-veriff-key", body, time.Now())})
		}
	}
	mixed := make([]webhook, 0, n)
	ai, pi := warm+n, 0
	for len(mixed) < n {
		if len(mixed)%5 == 0 {
			mixed = append(mixed, allpassHooks[ai])
			ai++
		} else {
			mixed = append(mixed, provHooks[pi])
			pi++
		}
	}
	if _, _, _, err := postAll(ctx, client, url, allpassHooks[:warm], senders); err != nil {
		return err
	}
	only := allpassHooks[warm : warm+n]

	var allTook, mixTook time.Duration
	var allLat, mixLat []time.Duration
	var pairs []float64
	for k := range rounds {
		a, lat, _, err := postAll(ctx, client, url, only[k*n/rounds:(k+1)*n/rounds], senders)
		if err != nil {
			return fmt.Errorf("allpass only: %w", err)
		}
		allTook, allLat = allTook+a, append(allLat, lat...)
		m, lat, _, err := postAll(ctx, client, url, mixed[k*n/rounds:(k+1)*n/rounds], senders)
		if err != nil {
			return fmt.Errorf("mixed providers: %w", err)
		}
		mixTook, mixLat = mixTook+m, append(mixLat, lat...)
		pairs = append(pairs, a.Seconds()/m.Seconds())
		part := float64((k+1)*n/rounds - k*n/rounds)
		progress("round %d/%d: allpass only %.0f/s, providers mixed %.0f/s", k+1, rounds, part/a.Seconds(), part/m.Seconds())
	}
	r.set("senders", float64(senders))
	r.set("webhooks", float64(n))
	r.set("rate", float64(n)/mixTook.Seconds())
	r.set("allpass_rate", float64(n)/allTook.Seconds())
	r.set("ratio", median(pairs))
	r.set("ratio_min", slices.Min(pairs))
	r.set("ratio_max", slices.Max(pairs))
	r.set("ratio_totals", allTook.Seconds()/mixTook.Seconds())
	r.set("rounds", float64(rounds))
	r.set("p50_ms", ms(percentile(mixLat, 0.5)))
	r.set("p99_ms", ms(percentile(mixLat, 0.99)))
	r.set("allpass_p50_ms", ms(percentile(allLat, 0.5)))
	r.set("allpass_p99_ms", ms(percentile(allLat, 0.99)))
	return nil
}

// benchProviderID is a fresh applicant id in p's own form.
func benchProviderID(p domain.Provider) string {
	b := make([]byte, 12)
	rand.Read(b)
	switch p {
	case domain.ProviderSumsub:
		return hex.EncodeToString(b)
	case domain.ProviderPersona:
		return "inq_" + hex.EncodeToString(b)
	}
	return domain.NewUUID()
}
