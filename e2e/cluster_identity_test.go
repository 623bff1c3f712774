package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestClusterIdentities runs the cluster of docker-compose.yml with the identities of
// deploy/nats/nats-cluster.conf (DESIGN.md section 15) and checks who may do what:
//   - a client without credentials is refused by every node;
//   - the ingest and query nodes do all their work (webhooks, refusals kept in
//     KYC_REJECTS, an erasure, console sign-in and sign-out across nodes, leases) without
//     one permission violation in any server's log;
//   - neither identity can delete or purge a stream, loosen KYC_EVENTS's limits, or delete
//     a KYC_EVENTS message; ingest cannot delete a KYC_KEYS message, nor publish a
//     forged plaintext event where only query (or nobody) may; query can securely
//     delete one (the erasure does it, and the test does it once more itself).
func TestClusterIdentities(t *testing.T) {
	needBins(t)
	c := clStartCluster(t)
	app := clApp{appKey: domain.NewUUID(), secretHex: clRandHex(t, 32), hmacHx: clRandHex(t, 32)}
	svc := clStartServices(t, c, app)

	// Nobody gets in without an identity, on any node.
	for _, u := range c.urls {
		nc, err := nats.Connect(u, nats.MaxReconnects(0), nats.Timeout(5*time.Second))
		if err == nil {
			nc.Close()
			t.Fatalf("anonymous client connected to %s", u)
		}
		if !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
			t.Fatalf("anonymous client at %s: %v, want an authorization violation", u, err)
		}
	}

	// Nor on a route port, which would bypass every client permission: only a node that
	// knows the routes' password is taken for a route.
	for _, creds := range [][2]string{{"", ""}, {"kycstate-route", "not-the-password"}} {
		if got := clRouteConnect(t, c.routeAddrs[0], creds[0], creds[1]); !strings.Contains(got, "Authorization Violation") {
			t.Errorf("route connection as %q with a wrong password: answered %q, want an authorization violation", creds[0], got)
		}
	}
	if got := clRouteConnect(t, c.routeAddrs[0], "kycstate-route", c.routePassword); !strings.HasPrefix(got, "PONG") && !strings.HasPrefix(got, "INFO") && !strings.HasPrefix(got, "PING") {
		t.Errorf("route connection with the password: answered %q", got)
	}

	// The nodes at work: a few applicants through their lifecycle, refusals, an erasure,
	// console sessions.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := clNewSender(t, svc.ingestURL, app)
	s.maxApps = 3
	s.start(ctx)
	s.waitDelivered(t, int64(s.maxApps)*int64(len(clLifecycle)), 60*time.Second, "every webhook answered 200")
	s.halt()
	ds := s.snapshot()
	// Allpass resends a delivery it got no answer to: ingest answers it from the original.
	if a := s.post(ctx, &ds[1]); a.status != http.StatusOK || !a.duplicate || a.seq != ds[1].seq {
		t.Fatalf("resent delivery: %d duplicate %v seq %d (%s), want 200 duplicate seq %d", a.status, a.duplicate, a.seq, a.err, ds[1].seq)
	}
	// Refused webhooks, kept in KYC_REJECTS by ingest: one sealed with keys the config
	// does not have (401), one sealed right for another app's appKey (422).
	wrong := clNewSender(t, svc.ingestURL, clApp{appKey: app.appKey, secretHex: clRandHex(t, 32), hmacHx: clRandHex(t, 32)})
	foreign := clNewSender(t, svc.ingestURL, clApp{appKey: domain.NewUUID(), secretHex: app.secretHex, hmacHx: app.hmacHx})
	for _, r := range []struct {
		s    *clSender
		want int
	}{{wrong, http.StatusUnauthorized}, {foreign, http.StatusUnprocessableEntity}} {
		d, err := r.s.seal(domain.NewUUID(), "applicantCreated", "ext-refused", time.Now().UTC())
		if err != nil {
			t.Fatal(err)
		}
		if a := r.s.post(ctx, d); a.status != r.want {
			t.Fatalf("refused webhook: %d %s, want %d", a.status, a.err, r.want)
		}
	}
	victim := ds[0].key.applicant
	admin, err := client.New(svc.queryURLs[0], svc.admin)
	if err != nil {
		t.Fatal(err)
	}
	er, _, err := admin.Erase(ctx, domain.ApplicantID(victim), "retention test, ticket 1")
	if err != nil || !er.Erased || !er.KeyDestroyed {
		t.Fatalf("erase through query node 1: %+v, %v", er, err)
	}
	clConsoleAcrossNodes(t, svc)

	// The operator's view (admin): the refusals are in KYC_REJECTS, the erased applicant's
	// data key is gone from KYC_KEYS, another applicant's is there.
	rejects := clStreamState(t, c.js, "KYC_REJECTS")
	if rejects.Msgs < 2 {
		t.Errorf("KYC_REJECTS holds %d messages after two refused webhooks", rejects.Msgs)
	}
	keys, err := c.js.Stream(ctx, "KYC_KEYS")
	if err != nil {
		t.Fatal(err)
	}
	if kind := clKeyKind(ctx, t, keys, clKeySubject(app, victim)); kind != "erased" {
		t.Errorf("the erased applicant's key subject ends in a %q message, want its tombstone", kind)
	}
	var other string
	for _, d := range ds {
		if d.key.applicant != victim {
			other = d.key.applicant
			break
		}
	}
	otherKey, err := keys.GetLastMsgForSubject(ctx, clKeySubject(app, other))
	if err != nil {
		t.Fatalf("data key of %s: %v", other, err)
	}
	if kind := clKeyKind(ctx, t, keys, clKeySubject(app, other)); kind != "data" {
		t.Fatalf("%s's key subject ends in a %q message, want its data key", other, kind)
	}
	events := clStreamState(t, c.js, clStream)

	// Each node identity, tried at what it must not do: each try is refused by the
	// server's permissions (an asynchronous error naming the subject; the request itself
	// goes unanswered until its deadline).
	type attempt struct {
		what, subject string
		do            func(ctx context.Context, js jetstream.JetStream) error
	}
	forbidden := []attempt{
		{"delete stream KYC_EVENTS", "$JS.API.STREAM.DELETE.KYC_EVENTS", func(ctx context.Context, js jetstream.JetStream) error {
			return js.DeleteStream(ctx, clStream)
		}},
		{"delete stream KYC_KEYS", "$JS.API.STREAM.DELETE.KYC_KEYS", func(ctx context.Context, js jetstream.JetStream) error {
			return js.DeleteStream(ctx, "KYC_KEYS")
		}},
		{"purge KYC_EVENTS", "$JS.API.STREAM.PURGE.KYC_EVENTS", func(ctx context.Context, js jetstream.JetStream) error {
			return clStreamOf(ctx, js, clStream, func(st jetstream.Stream) error { return st.Purge(ctx) })
		}},
		{"purge KYC_REJECTS", "$JS.API.STREAM.PURGE.KYC_REJECTS", func(ctx context.Context, js jetstream.JetStream) error {
			return clStreamOf(ctx, js, "KYC_REJECTS", func(st jetstream.Stream) error { return st.Purge(ctx) })
		}},
		{"delete KYC_EVENTS message 1", "$JS.API.STREAM.MSG.DELETE.KYC_EVENTS", func(ctx context.Context, js jetstream.JetStream) error {
			return clStreamOf(ctx, js, clStream, func(st jetstream.Stream) error { return st.DeleteMsg(ctx, 1) })
		}},
		{"securely delete KYC_EVENTS message 2", "$JS.API.STREAM.MSG.DELETE.KYC_EVENTS", func(ctx context.Context, js jetstream.JetStream) error {
			return clStreamOf(ctx, js, clStream, func(st jetstream.Stream) error { return st.SecureDeleteMsg(ctx, 2) })
		}},
		{"let KYC_EVENTS drop old events", "$JS.API.STREAM.UPDATE.KYC_EVENTS", func(ctx context.Context, js jetstream.JetStream) error {
			return clStreamOf(ctx, js, clStream, func(st jetstream.Stream) error {
				cfg := st.CachedInfo().Config
				cfg.MaxMsgs, cfg.Discard = 1, jetstream.DiscardOld
				_, err := js.UpdateStream(ctx, cfg)
				return err
			})
		}},
	}
	ingestOnly := []attempt{
		{"delete a KYC_KEYS message", "$JS.API.STREAM.MSG.DELETE.KYC_KEYS", func(ctx context.Context, js jetstream.JetStream) error {
			return clStreamOf(ctx, js, "KYC_KEYS", func(st jetstream.Stream) error { return st.SecureDeleteMsg(ctx, otherKey.Sequence) })
		}},
	}
	// What the client of issue 21 published, a plaintext version-1 event approving an
	// applicant, sent with the ingest identity to subjects only the query identity (or
	// nobody) may publish on: a sign-out (it would end an officer's session on every
	// node), the retention lease (it would stop the sweep), and a reply inbox (a forged
	// answer to a node's JetStream request, a PubAck included).
	forged := clForgedEvent(app, other)
	forgedOn := []struct{ stream, subject string }{
		{"KYC_SIGNOUTS", "kyc.signouts.forged" + clRandHex(t, 4)},
		{"KV_KYC_LEASES", "$KV.KYC_LEASES.retention"},
		{"", "_INBOX.forged" + clRandHex(t, 4)},
	}
	for _, f := range forgedOn {
		ingestOnly = append(ingestOnly, attempt{"publish a plaintext event on " + f.subject, f.subject, func(ctx context.Context, js jetstream.JetStream) error {
			_, err := js.Publish(ctx, f.subject, forged)
			return err
		}})
	}
	var provoked []string
	for _, who := range []string{"ingest", "query"} {
		nc, asyncErrs := c.connectAs(who)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		tries := forbidden
		if who == "ingest" {
			tries = slices.Concat(forbidden, ingestOnly)
		}
		for _, a := range tries {
			actx, acancel := context.WithTimeout(ctx, 2*time.Second)
			err := a.do(actx, js)
			acancel()
			async := clDrain(asyncErrs)
			if err == nil {
				t.Errorf("%s could %s", who, a.what)
				continue
			}
			if want := fmt.Sprintf("Permissions Violation for Publish to %q", a.subject); !strings.Contains(async, want) {
				t.Errorf("%s: %s: refused (%v), but not by its permissions: %s", who, a.what, err, async)
				continue
			}
			provoked = append(provoked, a.subject)
		}
	}
	// Nothing of it happened.
	if after := clStreamState(t, c.js, clStream); after.Msgs != events.Msgs || after.FirstSeq != 1 || after.LastSeq != events.LastSeq {
		t.Errorf("KYC_EVENTS changed: %d messages %d..%d, before %d messages %d..%d",
			after.Msgs, after.FirstSeq, after.LastSeq, events.Msgs, events.FirstSeq, events.LastSeq)
	}
	if after := clStreamState(t, c.js, "KYC_REJECTS"); after.Msgs != rejects.Msgs {
		t.Errorf("KYC_REJECTS holds %d messages, before %d", after.Msgs, rejects.Msgs)
	}
	if st, err := c.js.Stream(ctx, clStream); err != nil {
		t.Fatal(err)
	} else if cfg := st.CachedInfo().Config; cfg.MaxMsgs != -1 || cfg.Discard != jetstream.DiscardNew {
		t.Errorf("KYC_EVENTS limits changed: max_msgs %d discard %v", cfg.MaxMsgs, cfg.Discard)
	}
	if _, err := keys.GetMsg(ctx, otherKey.Sequence); err != nil {
		t.Fatalf("ingest's attempt removed a data key: %v", err)
	}
	for _, f := range forgedOn {
		if f.stream != "" {
			clNoForgedMsg(ctx, t, c.js, f.stream, f.subject, forged)
		}
	}

	// The query identity securely deletes a data key, as an erasure does.
	qnc, _ := c.connectAs("query")
	qjs, err := jetstream.New(qnc)
	if err != nil {
		t.Fatal(err)
	}
	if err := clStreamOf(ctx, qjs, "KYC_KEYS", func(st jetstream.Stream) error { return st.SecureDeleteMsg(ctx, otherKey.Sequence) }); err != nil {
		t.Fatalf("query: securely delete a KYC_KEYS message: %v", err)
	}
	if _, err := keys.GetMsg(ctx, otherKey.Sequence); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("the data key securely deleted by query: %v, want gone", err)
	}

	// Every violation the servers logged is one the test provoked: the nodes' own work
	// needed nothing their identities lack.
	clCheckViolations(t, c, provoked)
}

// clRouteConnect connects to a route port as a node would, with user and password, and
// returns the server's first answer after the CONNECT.
func clRouteConnect(t *testing.T, addr, user, pass string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	if info, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(info, "INFO ") {
		t.Fatalf("route port %s: %q %v, want INFO", addr, info, err)
	}
	connect, _ := json.Marshal(map[string]any{"user": user, "pass": pass, "name": "intruder-" + clRandHex(t, 4),
		"cluster": "kycstate", "verbose": false, "pedantic": false, "tls_required": false})
	fmt.Fprintf(conn, "CONNECT %s\r\nPING\r\n", connect)
	line, err := r.ReadString('\n')
	if err != nil && line == "" {
		return "closed: " + err.Error()
	}
	return strings.TrimSpace(line)
}

// clStreamOf looks stream name up and runs f on it; a refused look-up is f's failure too.
func clStreamOf(ctx context.Context, js jetstream.JetStream, name string, f func(jetstream.Stream) error) error {
	st, err := js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("stream info: %w", err)
	}
	return f(st)
}

func clStreamState(t *testing.T, js jetstream.JetStream, name string) jetstream.StreamState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return st.CachedInfo().State
}

// clKeyKind returns the kind of the last KYC_KEYS message on subject: data (a wrapped
// key), erased (the tombstone an erasure leaves), or "" when there is none.
func clKeyKind(ctx context.Context, t *testing.T, keys jetstream.Stream, subject string) string {
	t.Helper()
	m, err := keys.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return ""
	}
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	var km struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(m.Data, &km); err != nil {
		t.Fatalf("%s seq %d: not JSON: %v", subject, m.Sequence, err)
	}
	return km.Kind
}

// clForgedEvent is a stored event as version 1 wrote it, in clear and without a MAC:
// applicant approved, now.
func clForgedEvent(app clApp, applicant string) []byte {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	return fmt.Appendf(nil, `{"v":1,"provider":"allpass","appKey":%q,"applicantId":%q,"externalUserId":"forged","type":"applicantApproved","eventAt":%q,"eventAtSource":"payload","receivedAt":%q,"payload":{"type":"applicantApproved","applicantId":%q}}`,
		app.appKey, applicant, now, now, applicant)
}

// clNoForgedMsg fails the test when stream, if it exists, holds forged on subject.
func clNoForgedMsg(ctx context.Context, t *testing.T, js jetstream.JetStream, stream, subject string, forged []byte) {
	t.Helper()
	st, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return
	}
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	m, err := st.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return
	}
	if err != nil {
		t.Fatalf("%s %s: %v", stream, subject, err)
	}
	if bytes.Equal(m.Data, forged) {
		t.Errorf("the ingest identity's forged event is in %s on %s (seq %d)", stream, subject, m.Sequence)
	}
}

// clKeySubject is where KYC_KEYS keeps an applicant's data key.
func clKeySubject(app clApp, applicant string) string {
	return "kyc.keys.app." + app.appKey + "." + applicant
}

// clDrain returns the asynchronous errors received so far, joined.
func clDrain(errs <-chan error) string {
	var out []string
	for {
		select {
		case err := <-errs:
			out = append(out, err.Error())
		default:
			if len(out) == 0 {
				return "no asynchronous error"
			}
			return strings.Join(out, "; ")
		}
	}
}

// clViolationRe is a permission violation as nats-server logs it: the connection (address,
// cid, "version:lang:name", "account/user"), then what it was refused.
var clViolationRe = regexp.MustCompile(`- "[^"]*:([^":]+)" - .*(?:Publish|Subscription) Violation - (?:Subject|Reply) "([^"]+)"`)

// clCheckViolations fails the test for every permission violation in the servers' logs
// whose subject is not in expected, and for any expected one that no server logged (the
// refusal then came from somewhere else than the permissions under test).
func clCheckViolations(t *testing.T, c *clCluster, expected []string) {
	t.Helper()
	seen := map[string]bool{}
	var unexpected []string
	for _, n := range c.nodes {
		for _, line := range strings.Split(n.proc.Output(), "\n") {
			if !strings.Contains(line, "[ERR]") || !strings.Contains(line, "Violation") {
				continue
			}
			m := clViolationRe.FindStringSubmatch(line)
			if m == nil {
				unexpected = append(unexpected, n.name+": "+line)
				continue
			}
			if slices.Contains(expected, m[2]) && strings.Contains(m[1], "cluster-test-") {
				seen[m[2]] = true
				continue
			}
			unexpected = append(unexpected, fmt.Sprintf("%s: client %s: %s", n.name, m[1], m[2]))
		}
	}
	slices.Sort(unexpected)
	unexpected = slices.Compact(unexpected)
	for _, u := range unexpected {
		t.Errorf("permission violation the nodes' work ran into: %s", u)
	}
	for _, e := range expected {
		if !seen[e] {
			t.Errorf("no server logged a permission violation for %s, which the test tried", e)
		}
	}
}
