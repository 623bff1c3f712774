package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// TestSecurityServeListener: serve with nats.listen (README's recipe for running the
// tools on a live serve) admits no client without the credentials it made under
// data_dir: an anonymous client, the one of issue 21 that wrote a forged event into the
// log, is refused, and so is another nkey. The tools, run with the same config and
// KYCSTATE_NATS_URL, find the credentials themselves; without them they are refused too.
func TestSecurityServeListener(t *testing.T) {
	needBins(t)
	s := newBinService(t)
	natsAdr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s.extra = fmt.Sprintf("nats: { listen: %q }\n", natsAdr)
	s.setKeys(t, testKeys{s.secretHex, s.hmacHex})
	s.start(t)

	k := s.app.Keys[0]
	applicant := newID()
	at := time.Now().Add(-time.Minute).UTC()
	for i, typ := range []string{"applicantCreated", "applicantInProgress", "applicantCompleted"} {
		mustPost(t, s.ingestURL, s.app.Name, sealHook(t, s.app, k, applicant, typ, "", at.Add(time.Duration(i)*time.Second), fmt.Sprintf("lsn-%d", i)))
	}
	wrong := sealHook(t, s.app, newKeys().keys(t), newID(), "applicantCreated", "", at, "lsn-wrong")
	if a, err := postHook(http.DefaultClient, s.ingestURL, s.app.Name, wrong); err != nil || a.code != http.StatusUnauthorized {
		t.Fatalf("webhook sealed with other keys: %+v %v, want 401", a, err)
	}

	seed := filepath.Join(s.dataDir, "nats-client.nk")
	st, err := os.Stat(seed)
	if err != nil {
		t.Fatalf("serve with nats.listen made no credentials file: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", seed, st.Mode().Perm())
	}

	url := "nats://" + natsAdr
	if nc, err := nats.Connect(url, nats.MaxReconnects(0)); err == nil {
		// What the attacker of issue 21 did next: a plaintext event on an applicant's subject.
		nc.Publish("kyc.events.allpass."+string(s.app.AppKey)+"."+applicant, []byte(`{"v":1,"type":"applicantApproved"}`))
		nc.Close()
		t.Fatal("an anonymous client connected to serve's NATS listener")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		t.Fatalf("anonymous client: %v, want an authorization violation", err)
	}
	other, _ := nkeys.CreateUser()
	otherPub, _ := other.PublicKey()
	if nc, err := nats.Connect(url, nats.MaxReconnects(0), nats.Nkey(otherPub, other.Sign)); err == nil {
		nc.Close()
		t.Fatal("a client with an nkey serve did not make connected")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		t.Fatalf("client with another nkey: %v, want an authorization violation", err)
	}
	auth, err := nats.NkeyOptionFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, auth, nats.MaxReconnects(0))
	if err != nil {
		t.Fatalf("with serve's credentials: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if str, err := js.Stream(ctx, "KYC_EVENTS"); err != nil || str.CachedInfo().State.Msgs != 3 {
		t.Fatalf("KYC_EVENTS through the listener: %v", err)
	}

	// The tools with serve's config and the listener's URL: no credentials configured,
	// they present the ones under data_dir.
	s.env = append(s.env, "KYCSTATE_NATS_URL="+url)
	rs := parseReplay(t, s.mustOps(t, "replay", "--format", "jsonl"))
	if len(rs) != 3 || rs[0].ApplicantID != applicant {
		t.Errorf("replay through the listener: %+v, want the 3 events", rs)
	}
	if out := s.mustOps(t, "export"); strings.Count(strings.TrimSpace(out), "\n")+1 != 3 {
		t.Errorf("export through the listener printed:\n%s", out)
	}
	if out := s.mustOps(t, "rejects", "list"); !strings.Contains(out, "bad_signature") {
		t.Errorf("rejects list through the listener does not show the refused webhook:\n%s", out)
	}
	// The same tool where data_dir holds no credentials: refused, and it says why.
	s.env = append(s.env, "KYCSTATE_DATA_DIR="+t.TempDir())
	t0 := time.Now()
	out, err := s.ops(t, "replay")
	if exitStatus(err) <= 0 {
		t.Fatalf("replay without credentials: exit %d, want non-zero\n%s", exitStatus(err), out)
	}
	if !strings.Contains(strings.ToLower(out), "authorization violation") {
		t.Errorf("replay without credentials does not say it was refused:\n%s", out)
	}
	t.Logf("replay without credentials refused after %s", time.Since(t0).Round(time.Millisecond))
}
