package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The cluster tests run deploy/nats/nats-cluster.conf and deploy/kycstate/cluster.yaml,
// the very files docker-compose.yml mounts, with loopback addresses and free ports given
// through the environment where compose gives container names, and the identities and
// route password that kycstate keygen --nats makes, as an operator would.
const (
	clNATSConf     = "../deploy/nats/nats-cluster.conf"
	clKycstateConf = "../deploy/kycstate/cluster.yaml"
	clStream       = "KYC_EVENTS"
)

// clNode is one nats-server of the test cluster; restart runs it again on the same ports
// and store directory, as a rebooted machine would.
type clNode struct {
	name string
	dir  string
	env  []string
	proc *proc
}

// clCluster is three nats-servers forming one JetStream cluster on loopback, and a client
// connected to all of them that the test uses to find leaders and read the stream back.
type clCluster struct {
	t     *testing.T
	conf  string
	nodes []*clNode
	urls  []string
	ids   map[string]clIdentity // ingest, query, admin: the identities of the config
	// routePassword admits a node's route to the others; routeAddrs are the route ports.
	routePassword string
	routeAddrs    []string
	nc            *nats.Conn // as admin
	js            jetstream.JetStream
}

// clIdentities are the users deploy/nats/nats-cluster.conf names, each by the variable
// that gives the servers its public nkey.
var clIdentities = map[string]string{
	"ingest": "NATS_INGEST_NKEY",
	"query":  "NATS_QUERY_NKEY",
	"admin":  "NATS_ADMIN_NKEY",
}

// clIdentity is one of them: the public nkey the servers are given and the seed file the
// client presents.
type clIdentity struct {
	pub      string
	seedFile string
}

// clNewIdentities makes the identities as an operator does, with kycstate keygen --nats:
// seeds in dir, public keys printed as the servers' environment, with the routes'
// password.
func clNewIdentities(t *testing.T, dir string) (ids map[string]clIdentity, routePassword string) {
	t.Helper()
	out, err := runCmd(t, dir, nil, opsWait, bins.kycstate, "keygen", "--nats", dir)
	if err != nil {
		t.Fatalf("kycstate keygen --nats: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^NATS_CLUSTER_PASSWORD=([0-9a-f]{32,})$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("keygen --nats printed no NATS_CLUSTER_PASSWORD line:\n%s", out)
	}
	routePassword = m[1]
	ids = map[string]clIdentity{}
	for name, v := range clIdentities {
		m := regexp.MustCompile(`(?m)^` + v + `=(U[A-Z0-9]{55})$`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("keygen --nats printed no %s line:\n%s", v, out)
		}
		seedFile := filepath.Join(dir, "nats-"+name+".nk")
		if st, err := os.Stat(seedFile); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("keygen --nats: seed file %s: %v (mode %v), want 0600", seedFile, err, st)
		}
		ids[name] = clIdentity{pub: m[1], seedFile: seedFile}
	}
	return ids, routePassword
}

// connectAs connects to every node as the named identity and returns the connection and
// a channel of the errors the server sends it asynchronously (permission violations).
func (c *clCluster) connectAs(name string) (*nats.Conn, <-chan error) {
	c.t.Helper()
	id, ok := c.ids[name]
	if !ok {
		c.t.Fatalf("no identity %q", name)
	}
	auth, err := nats.NkeyOptionFromSeed(id.seedFile)
	if err != nil {
		c.t.Fatal(err)
	}
	errs := make(chan error, 64)
	nc, err := nats.Connect(strings.Join(c.urls, ","), auth, nats.Name("cluster-test-"+name),
		nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	return nc, errs
}

// clPorts returns n distinct loopback ports that were free a moment ago.
func clPorts(t *testing.T, n int) []int {
	t.Helper()
	seen := map[int]bool{}
	var ports []int
	for len(ports) < n {
		if p := freePort(t); !seen[p] {
			seen[p] = true
			ports = append(ports, p)
		}
	}
	return ports
}

// clStartCluster starts three nats-servers with the deploy config and waits until
// JetStream has a meta leader, so a stream can be created.
func clStartCluster(t *testing.T) *clCluster {
	t.Helper()
	conf, err := filepath.Abs(clNATSConf)
	if err != nil {
		t.Fatal(err)
	}
	ports := clPorts(t, 9) // client, route, monitoring for each node
	c := &clCluster{t: t, conf: conf}
	c.ids, c.routePassword = clNewIdentities(t, t.TempDir())
	// Every node gets the identities' public keys and the routes, which carry the password.
	shared := []string{"NATS_CLUSTER_PASSWORD=" + c.routePassword}
	for name, v := range clIdentities {
		shared = append(shared, v+"="+c.ids[name].pub)
	}
	for i := range 3 {
		c.routeAddrs = append(c.routeAddrs, fmt.Sprintf("127.0.0.1:%d", ports[3*i+1]))
		shared = append(shared, fmt.Sprintf("NATS_ROUTE_%d=nats://kycstate-route:%s@%s", i+1, c.routePassword, c.routeAddrs[i]))
	}
	for i := range 3 {
		n := &clNode{name: fmt.Sprintf("n%d", i+1), dir: t.TempDir()}
		n.env = append([]string{
			"NATS_SERVER_NAME=" + n.name,
			"NATS_HOST=127.0.0.1",
			"NATS_PORT=" + strconv.Itoa(ports[3*i]),
			"NATS_CLUSTER_PORT=" + strconv.Itoa(ports[3*i+1]),
			"NATS_HTTP_PORT=" + strconv.Itoa(ports[3*i+2]),
			"NATS_STORE_DIR=" + filepath.Join(n.dir, "store"),
		}, shared...)
		c.urls = append(c.urls, fmt.Sprintf("nats://127.0.0.1:%d", ports[3*i]))
		c.nodes = append(c.nodes, n)
		c.restart(n)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.nodes {
				t.Logf("--- nats-server %s output (tail):\n%s", n.name, clTail(n.proc.Output(), 4000))
			}
		}
	})

	// The test reads the stream back and watches leaders as the operator would: admin.
	c.nc, _ = c.connectAs("admin")
	if c.js, err = jetstream.New(c.nc); err != nil {
		t.Fatal(err)
	}
	clEventually(t, 30*time.Second, "JetStream meta leader elected", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := c.js.AccountInfo(ctx)
		return err
	})
	return c
}

// restart starts n (again) with the same configuration, ports and store.
func (c *clCluster) restart(n *clNode) {
	n.proc = start(c.t, n.dir, n.env, bins.natsServer, "-c", c.conf)
}

func (c *clCluster) node(name string) *clNode {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no node named %q in the cluster", name)
	return nil
}

// streamInfo asks the stream leader for KYC_EVENTS's state; it fails while there is none.
func (c *clCluster) streamInfo() (*jetstream.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := c.js.Stream(ctx, clStream)
	if err != nil {
		return nil, err
	}
	info := s.CachedInfo()
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return nil, fmt.Errorf("stream %s has no leader", clStream)
	}
	return info, nil
}

// waitLeader waits until the stream has a leader other than the names in not and returns
// the leader's name.
func (c *clCluster) waitLeader(d time.Duration, not ...string) string {
	c.t.Helper()
	var leader string
	clEventually(c.t, d, "stream leader elected", func() error {
		info, err := c.streamInfo()
		if err != nil {
			return err
		}
		for _, n := range not {
			if info.Cluster.Leader == n {
				return fmt.Errorf("leader is still %s", n)
			}
		}
		leader = info.Cluster.Leader
		return nil
	})
	return leader
}

// clServices are the kycstate processes: one ingest node and two query nodes.
type clServices struct {
	ingestURL string
	queryURLs []string
	reader    string
	auditor   string
	admin     string
}

// clApp is the Allpass app the test sends as.
type clApp struct {
	appKey            string
	secretHex, hmacHx string
}

// clStartServices runs `kycstate ingest` and two `kycstate query` against the cluster,
// each with the compose config and KYCSTATE_* overrides: all three NATS URLs, R3.
func clStartServices(t *testing.T, c *clCluster, app clApp) *clServices {
	t.Helper()
	conf, err := filepath.Abs(clKycstateConf)
	if err != nil {
		t.Fatal(err)
	}
	s := &clServices{reader: clRandHex(t, 20), auditor: clRandHex(t, 20), admin: clRandHex(t, 20)}
	common := []string{
		"KYCSTATE_NATS_URL=" + strings.Join(c.urls, ","),
		"KYCSTATE_NATS_REPLICAS=3",
		// Shorter than the default 5 s, so a write the cluster cannot confirm is refused
		// sooner and the sender's retries spread over the outage.
		"KYCSTATE_INGEST_APPEND_TIMEOUT=2s",
		"KYCSTATE_APPS_0_APP_KEY=" + app.appKey,
		"ALLPASS_SECRET_KEY=" + app.secretHex,
		"ALLPASS_HMAC_KEY=" + app.hmacHx,
		"READER_TOKEN=" + s.reader,
		"AUDITOR_TOKEN=" + s.auditor,
		"ADMIN_TOKEN=" + s.admin,
		// Every node of the cluster shares keys.master (DESIGN.md section 11).
		"KYCSTATE_MASTER_KEY=" + clRandHex(t, 32),
	}
	var procs []*proc
	names := []string{"ingest"}
	ports := clPorts(t, 3)

	// Each node presents its identity's seed where compose mounts it as a secret.
	dir := t.TempDir()
	p := start(t, dir, append([]string{
		"KYCSTATE_DATA_DIR=" + dir,
		fmt.Sprintf("KYCSTATE_INGEST_LISTEN=127.0.0.1:%d", ports[0]),
		"KYCSTATE_NATS_CREDENTIALS=" + c.ids["ingest"].seedFile,
	}, common...), bins.kycstate, "ingest", "--config", conf)
	s.ingestURL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	procs = append(procs, p)
	// The ingest node creates the R3 stream before it listens.
	waitHTTP(t, s.ingestURL+"/healthz", 60*time.Second, p)

	for i := range 2 {
		dir := t.TempDir() // each query node its own projection
		p := start(t, dir, append([]string{
			"KYCSTATE_DATA_DIR=" + dir,
			fmt.Sprintf("KYCSTATE_API_LISTEN=127.0.0.1:%d", ports[1+i]),
			"KYCSTATE_NATS_CREDENTIALS=" + c.ids["query"].seedFile,
		}, common...), bins.kycstate, "query", "--config", conf)
		url := fmt.Sprintf("http://127.0.0.1:%d", ports[1+i])
		s.queryURLs = append(s.queryURLs, url)
		procs = append(procs, p)
		names = append(names, fmt.Sprintf("query%d", i+1))
		waitHTTP(t, url+"/healthz", 60*time.Second, p)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, p := range procs {
				t.Logf("--- kycstate %s output (tail):\n%s", names[i], clTail(p.Output(), 4000))
			}
		}
	})
	return s
}

// clEventually retries f every 100 ms until it returns nil, failing the test after d.
func clEventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func clTail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

func clRandHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// clGet does an authorised GET and returns the response; the caller closes the body.
func clGet(ctx context.Context, url, token string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return http.DefaultClient.Do(req)
}
