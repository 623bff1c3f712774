package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestFaultNATSUnavailable runs `kycstate ingest` and `kycstate query` against an external
// nats-server that is down when they start and is killed (SIGKILL) while webhooks flow.
//
// At start: each node waits for NATS up to the connect timeout (eventlog.DefaultConnectTimeout,
// 10 s), so one started a moment before NATS comes up simply starts; one whose NATS stays
// away exits non-zero saying no NATS server was reachable, for its supervisor to restart.
//
// During the run: with NATS dead, no webhook is answered 200, each is refused with 503
// and Retry-After; the query node's /readyz answers 503. With NATS back: webhooks are
// answered 200 again, every webhook ever answered 200 is in the log exactly once at the
// sequence its 200 named, the query node catches up with the whole log, and verify passes.
func TestFaultNATSUnavailable(t *testing.T) {
	needBins(t)
	began := time.Now()
	n := fNewNATS(t)
	s := newBinService(t)
	n.fExternal(s)
	// Shorter than the default 5 s, so a write NATS cannot confirm is refused sooner and
	// the sender's attempts fall inside the outage.
	s.env = append(s.env, "KYCSTATE_INGEST_APPEND_TIMEOUT=1s")

	t.Run("ingest gives up when NATS stays away", func(t *testing.T) {
		t0 := time.Now()
		p := start(t, s.dir, s.env, bins.kycstate, "ingest", "--config", s.cfgPath)
		err := p.wait(t, 60*time.Second)
		out := p.Output()
		if code := exitStatus(err); code <= 0 || !strings.Contains(strings.ToLower(out), "nats") {
			t.Errorf("ingest with no NATS: exit %d after %s; want non-zero with a message about NATS:\n%s",
				code, time.Since(t0).Round(time.Millisecond), tail(out, 2000))
		}
		fNoPanic(t, "ingest with no NATS", out)
		t.Logf("exited %d after %s: %s", exitStatus(err), time.Since(t0).Round(100*time.Millisecond), fLastLine(out))
	})
	if t.Failed() {
		t.FailNow()
	}

	// Both nodes start before NATS does, and come up once it is there.
	ing := start(t, s.dir, s.env, bins.kycstate, "ingest", "--config", s.cfgPath)
	qry := start(t, s.dir, s.env, bins.kycstate, "query", "--config", s.cfgPath)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- ingest output (tail):\n%s", tail(ing.Output(), 4000))
			t.Logf("--- query output (tail):\n%s", tail(qry.Output(), 4000))
		}
	})
	time.Sleep(2 * time.Second)
	fAlive(t, ing, "ingest waiting for NATS")
	fAlive(t, qry, "query waiting for NATS")
	n.start()
	waitHTTP(t, s.ingestURL+"/healthz", readyWait, ing)
	waitHTTP(t, s.apiURL+"/healthz", readyWait, qry)
	fWaitStatus(t, s.apiURL+"/readyz", http.StatusOK, 30*time.Second, qry)
	t.Logf("ingest and query started 2 s before NATS and came up once it did")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	snd := clNewSender(t, s.ingestURL, clApp{appKey: string(s.app.AppKey), secretHex: s.secretHex, hmacHx: s.hmacHex})
	snd.start(ctx)
	t.Cleanup(func() { cancel(); snd.halt() })
	snd.waitDelivered(t, 100, 60*time.Second, "webhooks answered 200 before NATS was killed")

	n.proc.kill()
	deadAt := time.Now()
	t.Logf("killed nats-server (kill -9) after %d webhooks answered 200", snd.delivered.Load())
	// The read side notices: /readyz goes 503 while NATS is away.
	body := fWaitStatus(t, s.apiURL+"/readyz", http.StatusServiceUnavailable, 15*time.Second, qry)
	t.Logf("query /readyz %s after the kill: 503 %s", time.Since(deadAt).Round(time.Millisecond), strings.TrimSpace(body))
	time.Sleep(time.Until(deadAt.Add(10 * time.Second)))
	fAlive(t, ing, "NATS down")
	fAlive(t, qry, "NATS down")
	restartAt := time.Now()
	n.start()
	t.Logf("nats-server restarted on the same store after %s", restartAt.Sub(deadAt).Round(time.Millisecond))

	snd.waitDelivered(t, 100, 60*time.Second, "webhooks answered 200 after NATS returned")
	snd.halt()
	ds := snd.snapshot()
	t.Log(clSummary(ds))
	t.Logf("first 200 to a webhook sent after the restart: %s after it", clFirstOKAfter(ds, restartAt))

	// Attempts made wholly inside the outage.
	var inside, refused int
	for _, d := range ds {
		for _, a := range d.attempts {
			if a.start.Before(deadAt) || a.end.After(restartAt) {
				continue
			}
			inside++
			switch {
			case a.status == http.StatusOK:
				t.Errorf("webhook %s/%s answered 200 (seq %d) while NATS was down", d.key.applicant, d.key.typ, a.seq)
			case a.status == http.StatusServiceUnavailable && a.retryAfter != "":
				refused++
			default:
				t.Errorf("webhook %s/%s answered %d (Retry-After %q) %s while NATS was down; want 503 with Retry-After",
					d.key.applicant, d.key.typ, a.status, a.retryAfter, a.err)
			}
		}
	}
	t.Logf("%d attempts made during the outage, %d refused with 503 and Retry-After", inside, refused)
	if inside == 0 {
		t.Errorf("no attempt was made wholly inside the outage")
	}
	// A 503 means the log did not confirm the write in time, not that nothing reached it:
	// a write NATS stored but did not acknowledge before it died (or one the client sent
	// once it had reconnected) is in the log although ingest answered 503. The resend is
	// then recognised (200 duplicate:true, the original sequence): nothing is lost or
	// doubled. What the 503 tells the sender must allow for that (ingest/handler.go's
	// errAppend says "nothing was stored").
	t.Run("a 503 does not claim nothing was stored", func(t *testing.T) {
		landed := 0
		for _, d := range ds {
			var refusal string
			for _, a := range d.attempts {
				if a.status == http.StatusServiceUnavailable && refusal == "" {
					refusal = a.err
				}
				if a.status == http.StatusOK && a.duplicate && refusal != "" {
					if landed++; landed == 1 {
						t.Logf("webhook %s/%s was refused with 503 %s, and its resend answered 200 duplicate:true seq %d",
							d.key.applicant, d.key.typ, strings.TrimSpace(refusal), a.seq)
					}
					if strings.Contains(refusal, "nothing was stored") {
						t.Errorf("webhook %s/%s: the 503 said %q, yet the write had reached the log (its resend was a duplicate, seq %d)",
							d.key.applicant, d.key.typ, strings.TrimSpace(refusal), a.seq)
					}
				}
			}
		}
		t.Logf("%d webhooks refused with 503 during the outage had reached the log anyway", landed)
	})
	for _, d := range ds {
		if !d.delivered {
			t.Errorf("webhook %s/%s never answered 200 (%d attempts, gave up %v)", d.key.applicant, d.key.typ, len(d.attempts), d.gaveUp)
		}
	}

	// The query node folds everything the log has, including what was appended around
	// the outage, and its /readyz recovers.
	fWaitStatus(t, s.apiURL+"/readyz", http.StatusOK, 60*time.Second, qry)
	events := s.exportLog(t)
	fCheckDelivered(t, ds, events)
	per := map[string][]uint64{}
	var last uint64
	for _, e := range events {
		per[e.ApplicantID] = append(per[e.ApplicantID], e.Seq)
		last = max(last, e.Seq)
	}
	waitHistories(t, s, per, last, 60*time.Second)
	fNoPanic(t, "ingest", ing.Output())
	fNoPanic(t, "query", qry.Output())
	ing.mustTerm(t)
	qry.mustTerm(t)
	mustVerify(t, s, len(events))
	t.Logf("%d events in the log; done in %s", len(events), time.Since(began).Round(time.Millisecond))
}

// fCheckDelivered checks that every delivery answered 200 is in the log exactly once, at
// the sequence its 200 named, and that the log holds nothing else.
func fCheckDelivered(t *testing.T, ds []clDelivery, events []exported) {
	t.Helper()
	byKey := map[clKey][]uint64{}
	for _, e := range events {
		k := clKey{e.ApplicantID, e.Type}
		byKey[k] = append(byKey[k], e.Seq)
	}
	sent := map[clKey]bool{}
	for _, d := range ds {
		sent[d.key] = true
		got := byKey[d.key]
		switch {
		case !d.delivered:
		case len(got) == 0:
			t.Errorf("webhook %s/%s answered 200 seq %d is not in the log", d.key.applicant, d.key.typ, d.seq)
		case len(got) > 1:
			t.Errorf("webhook %s/%s is in the log %d times: %v", d.key.applicant, d.key.typ, len(got), got)
		case got[0] != d.seq:
			t.Errorf("webhook %s/%s answered 200 seq %d, is at seq %d", d.key.applicant, d.key.typ, d.seq, got[0])
		}
		for _, a := range d.attempts {
			if a.status == http.StatusOK && a.seq != d.seq {
				t.Errorf("webhook %s/%s answered 200 with seq %d and with seq %d", d.key.applicant, d.key.typ, a.seq, d.seq)
			}
		}
	}
	for k := range byKey {
		if !sent[k] {
			t.Errorf("the log holds %s/%s, which the sender never sent", k.applicant, k.typ)
		}
	}
}
