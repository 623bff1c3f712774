package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/api/client"
	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// sbServer is one nats-server of the standby test: its config, store and client URL.
type sbServer struct {
	name, dir, conf, url string
	proc                 *proc
}

// sbStartServer writes a config (the lines of docs/OPERATIONS.md's standby section, on
// loopback) and starts the nats-server built from go.mod.
func sbStartServer(t *testing.T, name, extra string) *sbServer {
	t.Helper()
	s := &sbServer{name: name, dir: t.TempDir()}
	port := freePort(t)
	s.url = fmt.Sprintf("nats://127.0.0.1:%d", port)
	s.conf = filepath.Join(s.dir, name+".conf")
	conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
max_payload: 8MB
jetstream { store_dir: %q, domain: %s }
%s
`, name, port, filepath.Join(s.dir, "store"), name, extra)
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s.proc = start(t, s.dir, nil, bins.natsServer, "-c", s.conf)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- nats-server %s output (tail):\n%s", name, tail(s.proc.Output(), 3000))
		}
	})
	clEventually(t, 30*time.Second, name+" JetStream up", func() error {
		nc, err := nats.Connect(s.url)
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err = js.AccountInfo(ctx)
		return err
	})
	return s
}

// sbNode runs kycstate `mode` (ingest or query) of svc against the server at natsURL.
func sbNode(t *testing.T, svc *binService, mode, natsURL string) *proc {
	t.Helper()
	p := start(t, svc.dir, []string{"KYCSTATE_NATS_URL=" + natsURL}, bins.kycstate, mode, "--config", svc.cfgPath)
	url := svc.apiURL
	if mode == "ingest" {
		url = svc.ingestURL
	}
	waitHTTP(t, url+"/healthz", readyWait, p)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- kycstate %s (%s) output (tail):\n%s", mode, svc.dir, tail(p.Output(), 3000))
		}
	})
	return p
}

// The standby on loopback: a second nats-server whose KYC_EVENTS and KYC_KEYS mirror the
// primary's over a leafnode, and a query node reading it. The mirrors follow under load;
// an erasure on the primary is erased on the standby (the key gone from its KYC_KEYS
// files, though a mirror copies no deletions); after the primary is killed and the
// standby promoted, every webhook answered 200 before the kill that the mirror had is
// readable, and ingest pointed at the standby takes webhooks again.
func TestStandbyPromotion(t *testing.T) {
	needBins(t)
	leafPort := freePort(t)
	primary := sbStartServer(t, "primary", fmt.Sprintf("leafnodes { listen: 127.0.0.1:%d }", leafPort))
	standby := sbStartServer(t, "standby", fmt.Sprintf(
		`leafnodes { remotes: [ { url: "nats-leaf://127.0.0.1:%d", deny_exports: ["kyc.>"] } ] }`, leafPort))

	svc := newBinService(t) // the primary's nodes
	sb := svc.cloneTo(t)    // the standby's query node: same keys, its own data dir
	sb.env = []string{"KYCSTATE_NATS_URL=" + standby.url}
	ingest := sbNode(t, svc, "ingest", primary.url)
	query := sbNode(t, svc, "query", primary.url)
	if out := sb.mustOps(t, "standby", "--primary-domain", "primary"); !strings.Contains(out, "mirror the primary") {
		t.Fatalf("standby said:\n%s", out)
	}
	standbyQuery := sbNode(t, sb, "query", standby.url)

	// Load: four senders, each its own applicants, every answer recorded.
	type sent struct {
		applicant string
		seq       uint64
	}
	var mu sync.Mutex
	var acked []sent
	var stopLoad = make(chan struct{})
	var wg sync.WaitGroup
	at := time.Now().Add(-time.Hour).UTC()
	keys := svc.app.Keys[0]
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			httpc := &http.Client{Timeout: 5 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-stopLoad:
					return
				default:
				}
				id := newID()
				for k, typ := range []string{"applicantCreated", "applicantCompleted"} {
					h, err := seal(svc.app, keys, id, typ, "", at.Add(time.Duration(w*100000+i*2+k)*time.Millisecond), fmt.Sprintf("sb%d-%d-%d", w, i, k))
					if err != nil {
						t.Errorf("seal: %v", err)
						return
					}
					a, err := postHook(httpc, svc.ingestURL, svc.app.Name, h)
					if err == nil && a.code == http.StatusOK {
						mu.Lock()
						acked = append(acked, sent{id, a.seq})
						mu.Unlock()
					}
				}
			}
		}()
	}
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	clEventually(t, 60*time.Second, "200 webhooks answered", func() error {
		if n := ackedCount(); n < 200 {
			return fmt.Errorf("%d answered", n)
		}
		return nil
	})
	// The mirror follows under load: the standby's query node reads what the primary
	// answered a moment ago.
	mu.Lock() // the senders append while the checks below read
	probe, first, second := acked[len(acked)-1], acked[0], acked[1]
	mu.Unlock()
	var st client.State
	if code, body := getJSON(t, fmt.Sprintf("%s/v1/applicants/%s?minSeq=%d", sb.apiURL, probe.applicant, probe.seq), sb.reader, &st); code != http.StatusOK {
		t.Fatalf("standby under load: %d %s", code, body)
	}

	// An erasure on the primary reaches the standby: state erased, key gone from its files.
	victim := first.applicant
	admin, err := client.New(svc.apiURL, svc.admin)
	if err != nil {
		t.Fatal(err)
	}
	er, _, err := admin.Erase(context.Background(), domain.ApplicantID(victim), "ticket 12")
	if err != nil {
		t.Fatalf("erase on the primary: %v", err)
	}
	if code, body := getJSON(t, fmt.Sprintf("%s/v1/applicants/%s?minSeq=%d", sb.apiURL, victim, er.Seq), sb.reader, &st); code != http.StatusOK || !st.Erased {
		t.Fatalf("the victim on the standby after the erasure: %d %s", code, body)
	}
	wrapped := `"kind":"data","app":"` + string(svc.app.AppKey) + `","id":"` + victim + `"`
	kept := `"kind":"data","app":"` + string(svc.app.AppKey) + `","id":"` + probe.applicant + `"`
	clEventually(t, 10*time.Second, "the kept applicant's key in the standby's KYC_KEYS", func() error {
		if len(grepDataDir(t, filepath.Join(standby.dir, "store"), []string{kept})) == 0 {
			return fmt.Errorf("not found: the needle would prove nothing")
		}
		return nil
	})
	if got := grepDataDir(t, filepath.Join(standby.dir, "store"), []string{wrapped}); len(got) > 0 {
		t.Fatalf("the erased applicant's key is still in the standby's files: %v", got)
	}
	// The standby's query node reads only: an erasure there is refused.
	sbAdmin, err := client.New(sb.apiURL, sb.admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := sbAdmin.Erase(context.Background(), domain.ApplicantID(second.applicant), "x"); err == nil {
		t.Fatal("the standby's query node took an erasure")
	}

	// Kill the primary under load, then stop the load.
	primary.proc.kill()
	time.Sleep(300 * time.Millisecond)
	close(stopLoad)
	wg.Wait()
	ingest.kill()
	query.kill()

	nc, err := nats.Connect(standby.url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(context.Background(), "KYC_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mirrored := info.State.LastSeq
	if out := sb.mustOps(t, "standby", "--promote"); !strings.Contains(out, "promoted KYC_EVENTS and KYC_KEYS") {
		t.Fatalf("promote said:\n%s", out)
	}
	// Every webhook answered 200 that the mirror had is readable on the standby.
	mu.Lock()
	all := append([]sent(nil), acked...)
	mu.Unlock()
	missing := 0
	for _, a := range all {
		if a.seq > mirrored {
			missing++
			continue
		}
		if code, body := getJSON(t, fmt.Sprintf("%s/v1/applicants/%s?minSeq=%d", sb.apiURL, a.applicant, a.seq), sb.reader, nil); code != http.StatusOK {
			t.Fatalf("webhook at seq %d (mirrored up to %d) not readable on the standby: %d %s", a.seq, mirrored, code, body)
		}
	}
	t.Logf("%d webhooks answered 200; the mirror had all up to seq %d; %d answered after it (asynchronous mirroring)", len(all), mirrored, missing)

	// The promoted standby takes over: its query node restarted as a full node, ingest
	// pointed at it.
	if err := standbyQuery.stop(t, stopWait); err != nil {
		t.Fatalf("standby query node: %v", err)
	}
	sbNode(t, sb, "query", standby.url)
	sbNode(t, sb, "ingest", standby.url)
	id := newID()
	a := mustPost(t, sb.ingestURL, svc.app.Name, sealHook(t, svc.app, keys, id, "applicantCreated", "", time.Now().UTC(), "after-promotion"))
	if a.seq <= mirrored {
		t.Fatalf("first webhook after promotion at seq %d, the mirror ended at %d", a.seq, mirrored)
	}
	if code, body := getJSON(t, fmt.Sprintf("%s/v1/applicants/%s?minSeq=%d", sb.apiURL, id, a.seq), sb.reader, nil); code != http.StatusOK {
		t.Fatalf("webhook after promotion: %d %s", code, body)
	}
	if _, _, err := sbAdmin.Erase(context.Background(), domain.ApplicantID(id), "after promotion"); err != nil {
		t.Fatalf("erasure on the promoted standby: %v", err)
	}
}
