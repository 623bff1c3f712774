package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go/jetstream"
)

// TestClusterLeaderKilled runs the cluster topology of docker-compose.yml on loopback:
// three nats-servers with deploy/nats/nats-cluster.conf, an R3 KYC_EVENTS, one ingest node
// and two query nodes. While a sender delivers webhooks the way Allpass does (resending
// anything but 200), the stream leader is killed with SIGKILL; writes must resume on the
// two survivors, and afterwards every webhook answered 200 must be in the stream exactly
// once, at the sequence its 200 named, and both query nodes must fold the same states.
func TestClusterLeaderKilled(t *testing.T) {
	needBins(t)
	began := time.Now()
	c, svc, s := clSetup(t)

	s.waitDelivered(t, 200, 60*time.Second, "webhooks answered 200 before the kill")
	leader := c.waitLeader(10 * time.Second)
	c.node(leader).proc.kill()
	killedAt := time.Now()
	t.Logf("killed stream leader %s (kill -9) after %d webhooks answered 200", leader, s.delivered.Load())

	next := c.waitLeader(30*time.Second, leader)
	t.Logf("new stream leader %s after %s", next, time.Since(killedAt).Round(time.Millisecond))
	s.waitDelivered(t, 200, 60*time.Second, "webhooks answered 200 with the old leader dead")

	c.restart(c.node(leader))
	s.waitDelivered(t, 100, 60*time.Second, "webhooks answered 200 after the old leader returned")
	s.halt()
	ds := s.snapshot()
	t.Log(clSummary(ds))
	t.Logf("first 200 to a webhook sent after the kill: %s after it", clFirstOKAfter(ds, killedAt))

	clVerify(t, c, svc, ds)
	clConsoleAcrossNodes(t, svc)
	// The node that was killed catches up from its own fsynced store and the leader.
	clEventually(t, 60*time.Second, "every replica current", func() error { return c.replicasCurrent() })
	t.Logf("done in %s", time.Since(began).Round(time.Millisecond))
}

// TestClusterNoQuorum kills the stream leader and a second node, leaving one server of
// three: there is no quorum, so the cluster cannot confirm any write and ingest must
// refuse every webhook with 503 (Allpass resends it later) rather than answer 200 for a
// write that might be lost. When the two return, the resent webhooks are accepted, and
// every webhook ever answered 200 is in the stream exactly once.
func TestClusterNoQuorum(t *testing.T) {
	needBins(t)
	began := time.Now()
	c, svc, s := clSetup(t)

	s.waitDelivered(t, 200, 60*time.Second, "webhooks answered 200 before the kills")
	leader := c.waitLeader(10 * time.Second)
	second := c.nodes[0].name
	if second == leader {
		second = c.nodes[1].name
	}
	c.node(leader).proc.kill()
	c.node(second).proc.kill()
	deadAt := time.Now()
	t.Logf("killed stream leader %s and %s (kill -9) after %d webhooks answered 200",
		leader, second, s.delivered.Load())

	// The sender keeps resending through the outage; nothing it sends now may get a 200.
	time.Sleep(8 * time.Second)
	restartAt := time.Now()
	c.restart(c.node(leader))
	c.restart(c.node(second))
	next := c.waitLeader(60 * time.Second)
	t.Logf("stream leader %s elected %s after the restart", next, time.Since(restartAt).Round(time.Millisecond))
	s.waitDelivered(t, 100, 60*time.Second, "webhooks answered 200 after quorum returned")
	s.halt()
	ds := s.snapshot()
	t.Log(clSummary(ds))
	t.Logf("first 200 to a webhook sent after the restart: %s after it", clFirstOKAfter(ds, restartAt))

	// Attempts made wholly inside the outage: sent to a cluster with one server of three.
	var inside, refused int
	var bad []string
	for _, d := range ds {
		for _, a := range d.attempts {
			if a.start.Before(deadAt) || a.end.After(restartAt) {
				continue
			}
			inside++
			switch a.status {
			case http.StatusOK:
				bad = append(bad, fmt.Sprintf("webhook %s/%s answered 200 (seq %d) while the cluster had no quorum",
					d.key.applicant, d.key.typ, a.seq))
			case http.StatusServiceUnavailable:
				refused++
			}
		}
	}
	t.Logf("%d attempts made during the outage, %d refused with 503", inside, refused)
	clReport(t, "outage", bad)
	if refused == 0 {
		t.Errorf("no attempt made during the outage was refused with 503 (%d attempts)", inside)
	}

	clVerify(t, c, svc, ds)
	t.Logf("done in %s", time.Since(began).Round(time.Millisecond))
}

// clSetup starts the cluster, the kycstate nodes and a running sender, which the test's
// cleanup stops.
func clSetup(t *testing.T) (*clCluster, *clServices, *clSender) {
	t.Helper()
	c := clStartCluster(t)
	app := clApp{appKey: domain.NewUUID(), secretHex: clRandHex(t, 32), hmacHx: clRandHex(t, 32)}
	svc := clStartServices(t, c, app)
	info, err := c.streamInfo()
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("%s has %d replicas (leader %s, followers %d); the cluster config asks for 3",
			clStream, info.Config.Replicas, info.Cluster.Leader, len(info.Cluster.Replicas))
	}
	// Bounds everything the sender does, so a test that fails half-way still ends.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	s := clNewSender(t, svc.ingestURL, app)
	s.start(ctx)
	t.Cleanup(func() {
		cancel()
		s.halt()
	})
	return c, svc, s
}

// clFirstOKAfter returns how long after t0 the first webhook posted after t0 was
// answered 200.
func clFirstOKAfter(ds []clDelivery, t0 time.Time) time.Duration {
	var first time.Time
	for _, d := range ds {
		for _, a := range d.attempts {
			if a.status == http.StatusOK && a.start.After(t0) && (first.IsZero() || a.end.Before(first)) {
				first = a.end
			}
		}
	}
	if first.IsZero() {
		return -1
	}
	return first.Sub(t0).Round(time.Millisecond)
}

// replicasCurrent reports an error unless the stream leader sees both followers online
// and current.
func (c *clCluster) replicasCurrent() error {
	info, err := c.streamInfo()
	if err != nil {
		return err
	}
	if len(info.Cluster.Replicas) != 2 {
		return fmt.Errorf("leader %s sees %d replicas", info.Cluster.Leader, len(info.Cluster.Replicas))
	}
	for _, r := range info.Cluster.Replicas {
		if r.Offline || !r.Current {
			return fmt.Errorf("replica %s offline=%v current=%v lag=%d", r.Name, r.Offline, r.Current, r.Lag)
		}
	}
	return nil
}

// clStored is what the test reads of each stored event.
type clStored struct {
	ApplicantID string `json:"applicantId"`
	Type        string `json:"type"`
}

// clVerify checks, once the cluster has a leader again:
//   - the sender only ever saw 200 or 503 with Retry-After, and gave nothing up;
//   - the stream holds sequences 1..last without a gap, each a webhook the sender sent,
//     no webhook twice, and every webhook answered 200 at the sequence its 200 named;
//   - both query nodes, once they have applied last, give the same state (status, digest,
//     every field) for every applicant, with the applicant's event count and last
//     sequence as the stream has them, and APPROVED where the whole lifecycle arrived;
//   - no server logged a permission violation: the ingest and query identities of
//     deploy/nats/nats-cluster.conf allow everything the nodes do, failover included.
func clVerify(t *testing.T, c *clCluster, svc *clServices, ds []clDelivery) {
	t.Helper()
	sent := map[clKey]*clDelivery{}
	delivered := 0
	var bad []string
	for i := range ds {
		d := &ds[i]
		sent[d.key] = d
		if d.delivered {
			delivered++
		}
		if d.gaveUp {
			bad = append(bad, fmt.Sprintf("%s/%s given up after %d attempts", d.key.applicant, d.key.typ, len(d.attempts)))
		}
		for _, a := range d.attempts {
			switch {
			case a.status == http.StatusOK && a.err == "":
			case a.status == http.StatusServiceUnavailable && a.retryAfter != "":
			default:
				bad = append(bad, fmt.Sprintf("%s/%s: status %d, Retry-After %q: %s",
					d.key.applicant, d.key.typ, a.status, a.retryAfter, a.err))
			}
		}
	}
	clReport(t, "sender", bad)
	if delivered == 0 {
		t.Fatal("no webhook was answered 200")
	}

	c.waitLeader(60 * time.Second)
	var info *jetstream.StreamInfo
	clEventually(t, 30*time.Second, "stream info", func() (err error) {
		info, err = c.streamInfo()
		return err
	})
	last := info.State.LastSeq
	if info.State.FirstSeq != 1 || info.State.Msgs != last {
		t.Errorf("stream holds %d messages from %d to %d; want 1..%d with no gap",
			info.State.Msgs, info.State.FirstSeq, last, last)
	}

	bySeq, count := clReadStream(t, c, last)
	bad = nil
	perApplicant := map[string]int{}
	lastSeqOf := map[string]uint64{}
	for seq := uint64(1); seq <= last; seq++ {
		k, ok := bySeq[seq]
		if !ok {
			bad = append(bad, fmt.Sprintf("seq %d not read back", seq))
			continue
		}
		perApplicant[k.applicant]++
		lastSeqOf[k.applicant] = seq
	}
	for k, n := range count {
		if sent[k] == nil {
			bad = append(bad, fmt.Sprintf("%s/%s stored %d times but never sent", k.applicant, k.typ, n))
		} else if n != 1 {
			bad = append(bad, fmt.Sprintf("%s/%s stored %d times", k.applicant, k.typ, n))
		}
	}
	for k, d := range sent {
		if !d.delivered {
			continue
		}
		if count[k] != 1 {
			bad = append(bad, fmt.Sprintf("%s/%s answered 200 (seq %d) but stored %d times", k.applicant, k.typ, d.seq, count[k]))
		} else if bySeq[d.seq] != k {
			bad = append(bad, fmt.Sprintf("%s/%s answered 200 with seq %d, which holds %s/%s",
				k.applicant, k.typ, d.seq, bySeq[d.seq].applicant, bySeq[d.seq].typ))
		}
	}
	clReport(t, "stream", bad)
	t.Logf("stream: %d events, %d applicants; %d of %d webhooks answered 200, all stored once",
		last, len(perApplicant), delivered, len(ds))

	clCompareQueryNodes(t, svc, last, perApplicant, lastSeqOf, count)
	// Through failover too, the nodes needed nothing their identities lack.
	clCheckViolations(t, c, nil)
}

// clReadStream reads KYC_EVENTS 1..last with an ordered consumer and returns each
// sequence's webhook and how often each webhook is stored.
func clReadStream(t *testing.T, c *clCluster, last uint64) (map[uint64]clKey, map[clKey]int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Right after nodes return, JetStream may still answer "temporarily unavailable", or
	// not answer a request at all (sent to a node still rejoining): the check reads the
	// stream when the cluster can serve it, within the minute, asking again every 5 s at
	// most.
	var cons jetstream.Consumer
	for {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		cons, err = c.js.OrderedConsumer(actx, clStream, jetstream.OrderedConsumerConfig{})
		acancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("ordered consumer: %v", err)
		}
		t.Logf("ordered consumer: %v (retrying)", err)
		time.Sleep(500 * time.Millisecond)
	}
	bySeq := map[uint64]clKey{}
	count := map[clKey]int{}
	var seen uint64
	for seen < last {
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d events within 60 s", seen, last)
		}
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Logf("fetch: %v (retrying)", err)
			continue
		}
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				t.Fatalf("message metadata: %v", err)
			}
			var ev clStored
			if err := json.Unmarshal(m.Data(), &ev); err != nil {
				t.Fatalf("seq %d: stored event is not JSON: %v", meta.Sequence.Stream, err)
			}
			k := clKey{ev.ApplicantID, ev.Type}
			bySeq[meta.Sequence.Stream] = k
			count[k]++
			seen = max(seen, meta.Sequence.Stream)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) &&
			!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoHeartbeat) {
			t.Logf("fetch batch: %v (retrying)", err)
		}
	}
	return bySeq, count
}

// clCompareQueryNodes waits until each query node has applied last, then compares
// every applicant's state across the two nodes and with the stream.
func clCompareQueryNodes(t *testing.T, svc *clServices, last uint64, perApplicant map[string]int,
	lastSeqOf map[string]uint64, count map[clKey]int) {
	t.Helper()
	var probe string
	for a := range perApplicant {
		probe = a
		break
	}
	for _, q := range svc.queryURLs {
		clEventually(t, 60*time.Second, q+" applied the whole stream", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := clGet(ctx, fmt.Sprintf("%s/v1/applicants/%s?minSeq=%d", q, probe, last), svc.reader)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			got, _ := strconv.ParseUint(resp.Header.Get("X-Kycstate-Seq"), 10, 64)
			if got < last {
				return fmt.Errorf("X-Kycstate-Seq %d, want %d", got, last)
			}
			return nil
		})
	}

	began := time.Now()
	var bad []string
	for a, n := range perApplicant {
		var views [2]map[string]any
		for i, q := range svc.queryURLs {
			v, err := clState(q, a, svc.reader, last)
			if err != nil {
				bad = append(bad, fmt.Sprintf("%s on %s: %v", a, q, err))
				continue
			}
			views[i] = v
		}
		if views[0] == nil || views[1] == nil {
			continue
		}
		if !reflect.DeepEqual(views[0], views[1]) {
			bad = append(bad, fmt.Sprintf("%s: query nodes differ: status %v/%v digest %v/%v events %v/%v",
				a, views[0]["status"], views[1]["status"], views[0]["digest"], views[1]["digest"],
				views[0]["events"], views[1]["events"]))
			continue
		}
		v := views[0]
		if v["digest"] == "" || v["digest"] == nil {
			bad = append(bad, fmt.Sprintf("%s: no digest", a))
		}
		if ev, _ := v["events"].(float64); int(ev) != n {
			bad = append(bad, fmt.Sprintf("%s: %v events, the stream holds %d", a, v["events"], n))
		}
		if ls, _ := v["lastSeq"].(float64); uint64(ls) != lastSeqOf[a] {
			bad = append(bad, fmt.Sprintf("%s: lastSeq %v, the stream's last is %d", a, v["lastSeq"], lastSeqOf[a]))
		}
		whole := true
		for _, typ := range clLifecycle {
			whole = whole && count[clKey{a, typ}] == 1
		}
		if whole && v["status"] != clFinalStatus {
			bad = append(bad, fmt.Sprintf("%s: status %v after its whole lifecycle, want %s", a, v["status"], clFinalStatus))
		}
	}
	clReport(t, "query nodes", bad)
	t.Logf("query nodes agree on all %d applicants (compared in %s)", len(perApplicant),
		time.Since(began).Round(time.Millisecond))
}

// clState reads one applicant's state from a query node, after it applied minSeq.
func clState(base, applicant, token string, minSeq uint64) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := clGet(ctx, fmt.Sprintf("%s/v1/applicants/%s?minSeq=%d", base, applicant, minSeq), token)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("not JSON: %v", err)
	}
	return v, nil
}

// clReport fails the test with the first few problems and how many there were.
func clReport(t *testing.T, what string, bad []string) {
	t.Helper()
	if len(bad) == 0 {
		return
	}
	const show = 10
	for i, b := range bad {
		if i == show {
			break
		}
		t.Errorf("%s: %s", what, b)
	}
	t.Fatalf("%s: %d problems", what, len(bad))
}

// clConsoleAcrossNodes: a console sign-in started on one query node and finished on the
// other is accepted, and the session works on both: the nodes share keys.master, and the
// console's keys derive from it, so a load balancer may send an officer to either.
func clConsoleAcrossNodes(t *testing.T, svc *clServices) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	a, b := svc.queryURLs[0], svc.queryURLs[1]
	resp, err := client.Get(a + "/console/signin")
	if err != nil {
		t.Fatal(err)
	}
	pre, csrf := signinForm(t, resp)
	req, _ := http.NewRequest("POST", b+"/console/signin",
		strings.NewReader(url.Values{"token": {svc.auditor}, "csrf": {csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(pre)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "kycstate_console" {
			session = c
		}
	}
	if resp.StatusCode != http.StatusSeeOther || session == nil {
		t.Fatalf("sign-in on %s with %s's form: %d, session cookie %v", b, a, resp.StatusCode, session != nil)
	}
	for _, node := range []string{a, b} {
		if resp, _ := consoleGet(t, client, node+"/console/anomalies", session); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s/console/anomalies with the session from %s: %d (%s)", node, b, resp.StatusCode, resp.Header.Get("Location"))
		}
	}

	// Signed out on one node, the session (a copy of the cookie) is refused by the other:
	// the nodes share sign-outs through KYC_SIGNOUTS.
	resp, page := consoleGet(t, client, a+"/console/ops", session)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("%s/console/ops: %d, no CSRF token", a, resp.StatusCode)
	}
	req, _ = http.NewRequest("POST", a+"/console/signout", strings.NewReader(url.Values{"csrf": {string(m[1])}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(session)
	if resp, err = client.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out on %s: %d", a, resp.StatusCode)
	}
	if resp, _ = consoleGet(t, client, b+"/console/anomalies", session); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/console/signin") {
		t.Fatalf("%s after sign-out on %s: %d (%s), want 303 to sign-in", b, a, resp.StatusCode, resp.Header.Get("Location"))
	}
}
