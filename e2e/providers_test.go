package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/ingest/persona"
	"github.com/kycstate/kycstate/ingest/providertest"
)

// provApp is one app of a provider other than Allpass in the binary's config (DESIGN.md
// section 13), with the secrets the test signs with.
type provApp struct {
	p        domain.Provider
	name     string
	secret   []byte // webhook_secret
	previous []byte // previous_webhook_secrets[0]
	apiKey   string // Veriff's api_key
}

// withProviders adds an app of each provider to s's config, after its Allpass app: the
// secrets given as env:, file: and literally, each app with a previous secret.
func withProviders(t *testing.T, s *binService) map[domain.Provider]provApp {
	t.Helper()
	apps := map[domain.Provider]provApp{}
	for _, p := range providertest.Providers() {
		a := provApp{p: p, name: string(p)[:2], secret: []byte(string(p) + "-" + randomHex(16)),
			previous: []byte(string(p) + "-old-" + randomHex(8))}
		if p == domain.ProviderVeriff {
			a.apiKey = newID()
		}
		apps[p] = a
	}
	secretFile := filepath.Join(s.dir, "persona-webhook-secret")
	if err := os.WriteFile(secretFile, append(apps[domain.ProviderPersona].secret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	s.env = append(s.env, "E2E_SUMSUB_SECRET="+string(apps[domain.ProviderSumsub].secret),
		"E2E_VERIFF_API_KEY="+apps[domain.ProviderVeriff].apiKey)
	ss, pa, ve, on := apps[domain.ProviderSumsub], apps[domain.ProviderPersona], apps[domain.ProviderVeriff], apps[domain.ProviderOnfido]
	s.extra = fmt.Sprintf(`  - { name: %s, provider: sumsub, webhook_secret: "env:E2E_SUMSUB_SECRET", previous_webhook_secrets: [%q] }
  - { name: %s, provider: persona, webhook_secret: "file:%s", previous_webhook_secrets: [%q] }
  - { name: %s, provider: veriff, api_key: "env:E2E_VERIFF_API_KEY", webhook_secret: %q, previous_webhook_secrets: [%q] }
  - { name: %s, provider: onfido, webhook_secret: %q, previous_webhook_secrets: [%q] }
`, ss.name, ss.previous, pa.name, secretFile, pa.previous, ve.name, ve.secret, ve.previous, on.name, on.secret, on.previous)
	s.setKeys(t, testKeys{s.secretHex, s.hmacHex})
	return apps
}

// provID is a fresh id of provider p's applicants, of the form the provider gives.
func provID(p domain.Provider) string {
	switch p {
	case domain.ProviderSumsub:
		return randomHex(12)
	case domain.ProviderPersona:
		return "inq_" + randomHex(12)
	}
	return newID()
}

// sign signs body for a as its provider does, now.
func (a provApp) sign(secret, body []byte) http.Header {
	return providertest.Sign(a.p, secret, a.apiKey, body, time.Now())
}

// postProv posts body with headers h to POST /webhooks/{provider}/{app}. An error
// wrapping errBadAnswer is a 200 whose body breaks the contract; any other error means
// no answer arrived.
func postProv(c *http.Client, base string, a provApp, body []byte, h http.Header) (answer, error) {
	return postWebhook(c, base+"/webhooks/"+string(a.p)+"/"+a.name, body, h)
}

func mustPostProv(t *testing.T, base string, a provApp, body []byte, h http.Header) answer {
	t.Helper()
	ans, err := postProv(http.DefaultClient, base, a, body, h)
	if err != nil {
		t.Fatalf("POST %s webhook: %v", a.p, err)
	}
	return ans
}

// provReplayed is one line of `kycstate replay --format jsonl`: an event and its outcome as
// the fold decides it.
type provReplayed struct {
	Seq            uint64 `json:"seq"`
	ApplicantID    string `json:"applicantId"`
	AppKey         string `json:"appKey"`
	Provider       string `json:"provider"`
	ProviderStatus string `json:"providerStatus"`
	Type           string `json:"type"`
	Outcome        string `json:"outcome"`
	To             string `json:"to"`
}

func replayLog(t *testing.T, s *binService) []provReplayed {
	t.Helper()
	out := s.mustOps(t, "replay", "--format", "jsonl")
	var recs []provReplayed
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue // progress on stderr
		}
		var r provReplayed
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("replay line %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// Every provider through the binary (DESIGN.md section 13): its journey under the
// current and the previous secret, resends and new deliveries of one event, an
// out-of-order pair, an unknown event name, and every kind of bad delivery, each with
// its 4xx, kept in KYC_REJECTS (but for the body over the limit). Then replay shows the
// fold's outcomes, the projection lists each applicant, and verify passes.
func TestProviderWebhooksBinary(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	apps := withProviders(t, s)
	const maxBody = 64 << 10
	s.env = append(s.env, "KYCSTATE_INGEST_MAX_BODY="+strconv.Itoa(maxBody))
	p := s.start(t)

	type want struct {
		id       string
		outcomes []string
		status   domain.Status
		events   int
	}
	var wants []want
	type rejected struct {
		p            domain.Provider
		reason, body string
		status       int
	}
	var rejects []rejected
	for _, pr := range providertest.Providers() {
		a := apps[pr]
		start := time.Now().UTC().Truncate(time.Second)

		// The journey, its last event under the previous secret; each resent, and the
		// last delivered anew (signed again: Persona with a new t).
		id := provID(pr)
		evs, statuses := providertest.Journey(pr, id, "user-"+id[:6], start)
		var outcomes []string
		var bodies [][]byte
		var last answer
		for i, ev := range evs {
			body := providertest.Body(pr, ev)
			secret := a.secret
			if i == len(evs)-1 {
				secret = a.previous
			}
			h := a.sign(secret, body)
			if last = mustPostProv(t, s.ingestURL, a, body, h); last.code != 200 || last.dup {
				t.Fatalf("%s event %d: %d %s", pr, i, last.code, last.body)
			}
			if again := mustPostProv(t, s.ingestURL, a, body, h); again.code != 200 || !again.dup || again.seq != last.seq {
				t.Fatalf("%s event %d resent: %+v", pr, i, again)
			}
			cls, _ := pr.Classify(domain.EventType(ev.Type), ev.Status)
			outcomes = append(outcomes, map[domain.Class]string{domain.ClassStatus: "applied", domain.ClassAnnotation: "annotated"}[cls])
			bodies = append(bodies, body)
		}
		time.Sleep(1100 * time.Millisecond) // Persona's t is in whole seconds
		lastBody := bodies[len(bodies)-1]
		if again := mustPostProv(t, s.ingestURL, a, lastBody, a.sign(a.secret, lastBody)); again.code != 200 || !again.dup || again.seq != last.seq {
			t.Fatalf("%s: a new delivery of the last event: %+v", pr, again)
		}
		// An event name the fold does not know: kept, as unknown.
		unknown := evs[0]
		unknown.Type, unknown.EventID = "brandNew.event", "evt_unknown_"+id
		ub := providertest.Body(pr, unknown)
		if ans := mustPostProv(t, s.ingestURL, a, ub, a.sign(a.secret, ub)); ans.code != 200 || ans.dup {
			t.Fatalf("%s unknown event: %d %s", pr, ans.code, ans.body)
		}
		wants = append(wants, want{id: id, outcomes: append(outcomes, "unknown"), status: statuses[len(statuses)-1], events: len(evs) + 1})

		// An out-of-order pair: the later status first, the earlier one is then stale.
		id2 := provID(pr)
		evs2, statuses2 := providertest.Journey(pr, id2, "", start)
		for _, ev := range []providertest.Event{evs2[len(evs2)-1], evs2[0]} {
			body := providertest.Body(pr, ev)
			if ans := mustPostProv(t, s.ingestURL, a, body, a.sign(a.secret, body)); ans.code != 200 || ans.dup {
				t.Fatalf("%s out of order: %d %s", pr, ans.code, ans.body)
			}
		}
		first := "applied"
		if pr == domain.ProviderPersona || pr == domain.ProviderSumsub {
			first = "irregular" // their journeys begin with a creation, and this one did not
		}
		wants = append(wants, want{id: id2, outcomes: []string{first, "stale"}, status: statuses2[len(statuses2)-1], events: 2})

		// Bad deliveries.
		body := bodies[0]
		badID := bytes.ReplaceAll(body, []byte(id), []byte(id[:4]+"."+id[5:]))
		bad := []struct {
			name   string
			body   []byte
			h      http.Header
			status int
			reason string
		}{
			{"forged", bytes.ReplaceAll(body, []byte(id), []byte(provID(pr))), a.sign(a.secret, body), 401, "bad_signature"},
			{"wrong secret", body, a.sign([]byte("wrong-"+string(a.secret)), body), 401, "bad_signature"},
			{"truncated", body[:len(body)/2], a.sign(a.secret, body), 401, "bad_signature"},
			{"malformed", []byte(`{"oops":`), a.sign(a.secret, []byte(`{"oops":`)), 400, "malformed_payload"},
			{"id not subject-safe", badID, a.sign(a.secret, badID), 422, "invalid_payload"},
			{"oversized", bytes.Repeat([]byte(" "), maxBody+1), a.sign(a.secret, body), 413, "body_too_large"},
		}
		if pr == domain.ProviderVeriff {
			h := a.sign(a.secret, body)
			h.Set("X-AUTH-CLIENT", newID())
			bad = append(bad, struct {
				name   string
				body   []byte
				h      http.Header
				status int
				reason string
			}{"wrong X-AUTH-CLIENT", body, h, 401, "bad_signature"})
		}
		for _, c := range bad {
			ans := mustPostProv(t, s.ingestURL, a, c.body, c.h)
			if ans.code != c.status || !strings.Contains(ans.body, `"code":"`+c.reason+`"`) {
				t.Fatalf("%s %s: %d %s, want %d %s", pr, c.name, ans.code, ans.body, c.status, c.reason)
			}
			if strings.Contains(ans.body, string(a.secret)) {
				t.Fatalf("%s %s: the answer holds the secret", pr, c.name)
			}
			if c.status != 413 {
				rejects = append(rejects, rejected{pr, c.reason, string(c.body), c.status})
			}
		}
	}
	// Persona during a rotation: two t/v1 pairs, the second valid.
	pa := apps[domain.ProviderPersona]
	id := provID(domain.ProviderPersona)
	evs, _ := providertest.Journey(domain.ProviderPersona, id, "", time.Now())
	body := providertest.Body(domain.ProviderPersona, evs[0])
	h := http.Header{}
	h.Set(persona.SignatureHeader, persona.Sign([]byte("retired"), body, time.Now())[persona.SignatureHeader]+" "+
		persona.Sign(pa.previous, body, time.Now())[persona.SignatureHeader])
	if ans := mustPostProv(t, s.ingestURL, pa, body, h); ans.code != 200 || ans.dup {
		t.Fatalf("persona, two pairs: %d %s", ans.code, ans.body)
	}
	wants = append(wants, want{id: id, outcomes: []string{"applied"}, status: domain.StatusInit, events: 1})

	// The projection of the running service lists every applicant in its status.
	lastSeq := waitSeq(t, s)
	states := listStates(t, s)
	for _, w := range wants {
		st, ok := states[w.id]
		if !ok || st.Status == nil || *st.Status != string(w.status) || st.Events != w.events || st.LastSeq > lastSeq {
			t.Errorf("applicant %s in the projection: %+v (found %v); want %s with %d events", w.id, st, ok, w.status, w.events)
		}
	}
	p.mustTerm(t)

	// The fold's outcomes, provReplayed from the log.
	byID := map[string][]provReplayed{}
	for _, r := range replayLog(t, s) {
		byID[r.ApplicantID] = append(byID[r.ApplicantID], r)
	}
	for _, w := range wants {
		recs := byID[w.id]
		var got []string
		for _, r := range recs {
			got = append(got, r.Outcome)
			if r.Provider == "" || r.Provider == "allpass" {
				t.Errorf("applicant %s: provReplayed as provider %q", w.id, r.Provider)
			}
		}
		if strings.Join(got, " ") != strings.Join(w.outcomes, " ") {
			t.Errorf("applicant %s: outcomes %v, want %v", w.id, got, w.outcomes)
		}
	}

	// Every refused delivery read is in KYC_REJECTS, under its provider.
	out := s.mustOps(t, "rejects", "list", "--format", "jsonl")
	var kept []domain.Reject
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r domain.Reject
		if strings.HasPrefix(line, "{") {
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("rejects line %q: %v", line, err)
			}
			kept = append(kept, r)
		}
	}
	if len(kept) != len(rejects) {
		t.Errorf("%d rejects kept, want %d", len(kept), len(rejects))
	}
	for i := range min(len(kept), len(rejects)) {
		k, w := kept[i], rejects[i]
		kept := domain.KeptSample // what no secret verifies is a sample (DESIGN.md section 15)
		if w.status == 400 || w.status == 422 {
			kept = domain.KeptAuthenticated // past the signature: kept whole
		}
		if k.Kept != kept {
			t.Errorf("reject %d (%s %s): kept as %q, want %q", i, w.p, w.reason, k.Kept, kept)
		}
		if k.Provider != string(w.p) || k.App != apps[w.p].name || k.Reason != w.reason || k.Status != w.status || k.Body != w.body {
			t.Errorf("reject %d: %s/%s %s %d; want %s/%s %s %d, the body as sent", i, k.Provider, k.App, k.Reason, k.Status,
				w.p, apps[w.p].name, w.reason, w.status)
		}
	}
	mustVerify(t, s, 0)
}

// waitSeq waits until the running service's projection has applied the log's last
// sequence (X-Kycstate-Seq against the stream's end, as /readyz sees it) and returns it.
func waitSeq(t *testing.T, s *binService) uint64 {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var prev uint64
	for {
		req, _ := http.NewRequest(http.MethodGet, s.apiURL+"/v1/applicants?status=INIT&limit=1", nil)
		req.Header.Set("Authorization", "Bearer "+s.reader)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		seq, _ := strconv.ParseUint(resp.Header.Get("X-Kycstate-Seq"), 10, 64)
		if seq > 0 && seq == prev {
			return seq // two reads a moment apart agree: caught up with what was sent
		}
		prev = seq
		if time.Now().After(deadline) {
			t.Fatalf("projection not caught up: X-Kycstate-Seq %d", seq)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// listStates reads every applicant of the running service's projection, of every
// provider, through GET /v1/applicants?status=S for each status, by applicant id.
func listStates(t *testing.T, s *binService) map[string]client.State {
	t.Helper()
	out := map[string]client.State{}
	for _, st := range domain.Statuses() {
		cursor := ""
		for {
			u := fmt.Sprintf("%s/v1/applicants?status=%s&limit=1000", s.apiURL, st)
			if cursor != "" {
				u += "&cursor=" + url.QueryEscape(cursor)
			}
			var page client.Applicants
			if code, body := getJSON(t, u, s.reader, &page); code != http.StatusOK {
				t.Fatalf("GET %s: %d %s", u, code, body)
			}
			for _, a := range page.Applicants {
				if _, dup := out[string(a.ApplicantID)]; dup {
					t.Fatalf("applicant %s listed twice", a.ApplicantID)
				}
				out[string(a.ApplicantID)] = a
			}
			if page.Next == nil || *page.Next == "" {
				break
			}
			cursor = *page.Next
		}
	}
	return out
}

// provAck is a provider webhook answered 200.
type provAck struct {
	p    domain.Provider
	id   string
	body string
	seq  uint64
}

// provLoad sends the providers' journeys from several senders until stopped, each
// webhook resent (signed anew) until it is answered 200, as the providers retry.
type provLoad struct {
	t      *testing.T
	s      *binService
	apps   map[domain.Provider]provApp
	client *http.Client
	stop   chan struct{}
	wg     sync.WaitGroup

	mu   sync.Mutex
	acks map[string]provAck // by body
}

func (g *provLoad) run(perProvider int) {
	for _, p := range providertest.Providers() {
		for range perProvider {
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				g.sender(g.apps[p])
			}()
		}
	}
}

func (g *provLoad) sender(a provApp) {
	for {
		id := provID(a.p)
		evs, _ := providertest.Journey(a.p, id, "user-"+id[:6], time.Now())
		for _, ev := range evs {
			select {
			case <-g.stop:
				return
			default:
			}
			if !g.deliver(a, id, providertest.Body(a.p, ev)) {
				return
			}
		}
	}
}

func (g *provLoad) deliver(a provApp, id string, body []byte) bool {
	deadline := time.Now().Add(90 * time.Second)
	backoff := 10 * time.Millisecond
	for {
		ans, err := postProv(g.client, g.s.ingestURL, a, body, a.sign(a.secret, body))
		switch {
		case err == nil && ans.code == http.StatusOK:
			g.mu.Lock()
			if prev, ok := g.acks[string(body)]; ok && prev.seq != ans.seq {
				g.t.Errorf("%s webhook answered 200 twice with sequences %d and %d", a.p, prev.seq, ans.seq)
			}
			g.acks[string(body)] = provAck{p: a.p, id: id, body: string(body), seq: ans.seq}
			g.mu.Unlock()
			return true
		case errors.Is(err, errBadAnswer):
			g.t.Errorf("%s webhook: %v", a.p, err)
			return false
		case err != nil, ans.code == http.StatusServiceUnavailable:
			// No answer (the process was killed) or the log could not confirm: resend.
		default:
			g.t.Errorf("%s webhook: answered %d %s", a.p, ans.code, ans.body)
			return false
		}
		if time.Now().After(deadline) {
			g.t.Errorf("%s webhook: no 200 after 90 s of retries", a.p)
			return false
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

func (g *provLoad) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.acks)
}

func (g *provLoad) stopAndWait() {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	g.wg.Wait()
}

// TestProviderCrashKill9MixedLoad: Allpass's and every other provider's webhooks are
// sent at once while serve is killed with SIGKILL three times and restarted. Every
// webhook answered 200 is in the log once, at the sequence it was answered with, and in
// the projection (each applicant's events and last sequence); verify, rebuild and
// verify again pass.
func TestProviderCrashKill9MixedLoad(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	apps := withProviders(t, s)
	p := s.start(t)
	allpassLoad := newLoadGen(t, s, 4, true)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	g := &provLoad{t: t, s: s, apps: apps, client: &http.Client{Transport: tr, Timeout: 20 * time.Second},
		stop: make(chan struct{}), acks: map[string]provAck{}}
	allpassLoad.run()
	g.run(2)
	defer allpassLoad.stopAndWait()
	defer g.stopAndWait()

	waitFor := func(n int) {
		want := g.count() + n
		deadline := time.Now().Add(60 * time.Second)
		for g.count() < want {
			if time.Now().After(deadline) {
				t.Fatalf("provider load made no progress: %d of %d answered 200", g.count(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for k := range 3 {
		waitFor(30)
		allpassLoad.waitAcks(t, 10, 60*time.Second)
		time.Sleep(time.Duration(k*200) * time.Millisecond)
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-p.done
		t.Logf("kill %d: SIGKILL after %d provider and %d Allpass webhooks answered 200", k+1, g.count(), allpassLoad.count())
		p = s.start(t)
	}
	waitFor(30)
	g.stopAndWait()
	allpassLoad.stopAndWait()
	if t.Failed() {
		t.FailNow()
	}
	g.mu.Lock()
	acks := g.acks
	g.mu.Unlock()
	aacks := allpassLoad.snapshot()

	// In the projection: every applicant with exactly its acknowledged events.
	checkAcksInProjection(t, s, aacks)
	waitSeq(t, s)
	states := listStates(t, s)
	per := map[string][]uint64{}
	for _, a := range acks {
		per[a.id] = append(per[a.id], a.seq)
	}
	for id, seqs := range per {
		st, ok := states[id]
		if !ok || st.Events != len(seqs) || st.LastSeq != maxOf(seqs) {
			t.Errorf("applicant %s: %d events, last seq %d (found %v); want %d, %d", id, st.Events, st.LastSeq, ok, len(seqs), maxOf(seqs))
		}
	}
	p.mustTerm(t)

	// In the log: each acknowledged webhook once, at its sequence.
	events := s.exportLog(t)
	checkAcksInLog(t, aacks, events)
	byBody := map[string][]exported{}
	for _, e := range events {
		if e.Raw != nil {
			byBody[e.Raw.Body] = append(byBody[e.Raw.Body], e)
		}
	}
	for body, a := range acks {
		got := byBody[body]
		switch {
		case len(got) != 1:
			t.Errorf("%s webhook of %s answered 200 seq %d is in the log %d times", a.p, a.id, a.seq, len(got))
		case got[0].Seq != a.seq || got[0].ApplicantID != a.id:
			t.Errorf("%s webhook answered seq %d for %s is at seq %d for %s", a.p, a.seq, a.id, got[0].Seq, got[0].ApplicantID)
		}
	}
	if total := len(acks) + len(aacks); len(events) != total {
		t.Errorf("the log holds %d events, %d webhooks were acknowledged", len(events), total)
	}
	t.Logf("%d provider and %d Allpass webhooks acknowledged, %d events in the log", len(acks), len(aacks), len(events))
	mustVerify(t, s, len(events))
	s.mustOps(t, "rebuild")
	mustVerify(t, s, len(events))
}

func maxOf(s []uint64) uint64 {
	var m uint64
	for _, v := range s {
		m = max(m, v)
	}
	return m
}
