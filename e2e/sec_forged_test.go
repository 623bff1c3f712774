package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Messages published straight onto KYC_EVENTS by a privileged client of serve's NATS
// listener (issue 21 item 5, DESIGN.md section 15): a clear version 1 approval written after the
// log key, and a genuine stored event copied onto another applicant's subject. Each is
// folded unauthenticated and changes no status, the projector counts them in
// kycstate_events_unauthenticated_total, and kycstate verify exits 1 naming them.
func TestSecurityForgedEventChangesNothing(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	natsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s.extra = fmt.Sprintf("nats: { listen: %q }\n", natsAddr)
	s.setKeys(t, testKeys{s.secretHex, s.hmacHex})
	p := s.start(t)
	victim, other := newID(), newID()
	at := time.Now().Add(-time.Hour).UTC()
	mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], victim, "applicantCreated", "", at, "zqf1"))
	rejected := mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], victim, "applicantRejected", "", at.Add(time.Minute), "zqf2"))
	last := mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, s.app.Keys[0], other, "applicantCreated", "", at, "zqf3")).seq
	reader, _ := client.New(s.apiURL, s.reader)
	ctx := context.Background()
	if _, _, err := reader.State(ctx, domain.ApplicantID(other), client.StateQuery{MinSeq: last}); err != nil {
		t.Fatal(err)
	}

	// A privileged client: serve's own credentials, as a stolen copy would be (an
	// outsider is refused by the listener: security_nats_test.go).
	auth, err := nats.NkeyOptionFromSeed(filepath.Join(s.dataDir, "nats-client.nk"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect("nats://"+natsAddr, auth, nats.MaxReconnects(0))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, "KYC_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	subject := func(id string) string { return "kyc.events.allpass." + string(s.app.AppKey) + "." + id }
	clearApproval := fmt.Sprintf(`{"v":1,"provider":"allpass","appKey":%q,"applicantId":%q,"externalUserId":"user-evil","type":"applicantApproved","eventAt":%q,"eventAtSource":"payloadUpdatedAt","receivedAt":%q,"payload":{}}`,
		s.app.AppKey, victim, time.Now().UTC().Format(time.RFC3339Nano), time.Now().UTC().Format(time.RFC3339Nano))
	if _, err := js.Publish(ctx, subject(victim), []byte(clearApproval)); err != nil {
		t.Fatal(err)
	}
	genuine, err := stream.GetMsg(ctx, rejected.seq)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, subject(other), genuine.Data) // the victim's rejection, on the other's subject
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		id, status string
	}{{victim, "REJECTED"}, {other, "INIT"}} {
		st, _, err := reader.State(ctx, domain.ApplicantID(c.id), client.StateQuery{MinSeq: ack.Sequence})
		if err != nil || st.Status == nil || *st.Status != c.status {
			t.Fatalf("state of %s after the forgeries: %+v, %v; want %s", c.id, st, err, c.status)
		}
		var hist client.History
		if code, body := getJSON(t, s.apiURL+"/v1/applicants/"+c.id+"/history", s.auditor, &hist); code != http.StatusOK || !strings.Contains(body, `"outcome":"unauthenticated"`) {
			t.Fatalf("history of %s: %d %s", c.id, code, body)
		}
	}
	found, _, err := reader.ApplicantsByExternalUserID(ctx, "user-evil", "", 0)
	if err != nil || len(found.Applicants) != 0 {
		t.Fatalf("the forged externalUserId finds %+v, %v", found, err)
	}
	_, metrics := getJSON(t, s.apiURL+"/metrics", "", nil)
	if !strings.Contains(metrics, "kycstate_events_unauthenticated_total 2") {
		t.Fatalf("metrics:\n%s", grepLines(metrics, "unauthenticated"))
	}
	p.mustTerm(t)

	out, err := s.ops(t, "verify")
	if err == nil || !strings.Contains(out, "unauthenticated") {
		t.Fatalf("kycstate verify with two forged events: %v\n%s", err, out)
	}
}
