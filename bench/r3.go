package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"go.uber.org/zap"
)

// The R3 phases run the ingest comparisons of ingest.go on the clustered topology of
// DESIGN.md section 9: three nats-server processes on loopback, each started with
// deploy/nats/nats-cluster.conf (fsync always, as in production and in the cluster
// tests), and KYC_EVENTS created with three replicas by eventlog.Open. A PubAck there
// means the leader and one follower of three hold the message.
//
// The servers are processes of their own, as in production, not servers embedded in
// this one: each has its own heap and garbage collector, and the phase's peak RSS stays
// the load generator's and the handler's (the servers' peaks are reported beside it).
// bench/run builds nats-server from the module graph, at the version go.mod pins, as
// the end-to-end tests do.
//
// Both sides connect to the stream leader only. A client on a follower adds a hop over
// a route for every message on both sides alike; connecting to the leader makes that
// the same in every run, where a client's random pick among three would not.

// phaseIngestR3 is phaseIngest on the cluster: 16 senders against 16 sync publishers
// sharing one connection.
func phaseIngestR3(ctx context.Context, o options, r *result) error {
	n, rounds := 12_000, 12
	if o.Quick {
		n, rounds = 4_000, 4
	}
	return ingestRun(ctx, o, r, "ingest_r3", clusterTarget(o), ingestSenders, 1, n, rounds, false)
}

// phaseIngestBurstR3 is phaseIngestBurst on the cluster: 256 senders against 256 sync
// publishers with a connection each.
func phaseIngestBurstR3(ctx context.Context, o options, r *result) error {
	n, rounds := 24_000, 8
	if o.Quick {
		n, rounds = 6_000, 3
	}
	return ingestRun(ctx, o, r, "ingest_burst_r3", clusterTarget(o), burstSenders, burstSenders, n, rounds, false)
}

// clusterTarget starts the cluster under the phase's directory, opens KYC_EVENTS with
// three replicas, and connects the handler and the raw clients to the stream leader.
func clusterTarget(o options) logTarget {
	var leaderURL string
	var cl *cluster
	return logTarget{
		open: func(ctx context.Context, r *result, dir string, log *zap.Logger) (*eventlog.Conn, *eventlog.EventLog, func(), error) {
			var err error
			cl, err = startCluster(ctx, o, dir)
			if err != nil {
				return nil, nil, nil, err
			}
			c, events, leader, err := cl.openLog(ctx, log)
			if err != nil {
				cl.close(r)
				return nil, nil, nil, err
			}
			leaderURL = cl.url(leader)
			r.note("3 nats-server processes, deploy/nats/nats-cluster.conf; KYC_EVENTS R3, leader %s; the handler and the raw clients connect to the leader", leader)
			return c, events, func() {
				c.Close()
				cl.close(r)
			}, nil
		},
		raw: func(_ *eventlog.Conn, n int) ([]jetstream.JetStream, func(), error) {
			return tcpClients(cl, leaderURL, n)
		},
	}
}

// clusterTimeout bounds the cluster's start: every server up, a JetStream meta leader,
// the stream created with a leader and two current followers.
const clusterTimeout = 60 * time.Second

// cluster is three nats-server processes routed to each other on loopback.
type cluster struct {
	dir   string
	nodes []*clusterNode
	// seed is the file of the admin identity's nkey seed: the deploy config admits no
	// anonymous client, and the bench's clients (kycstate's and the raw baseline's alike)
	// all present it, so neither pays for a permission the other skips.
	seed string
}

type clusterNode struct {
	name string
	port int // client port
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{} // closed when the process has exited
}

// startCluster starts the three servers with o.NATSConf and waits until JetStream has a
// meta leader. On error nothing it started is left running.
func startCluster(ctx context.Context, o options, dir string) (*cluster, error) {
	if o.NATSServer == "" || o.NATSConf == "" {
		return nil, errors.New("the r3 phases need -nats-server and -nats-conf (bench/run builds and passes them)")
	}
	ports, err := freePorts(9) // client, route, monitoring for each node
	if err != nil {
		return nil, err
	}
	cl := &cluster{dir: filepath.Join(dir, "cluster")}
	routes, password, err := cl.identities()
	if err != nil {
		return nil, err
	}
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("NATS_ROUTE_%d=nats://kycstate-route:%s@127.0.0.1:%d", i+1, password, ports[3*i+1]))
	}
	for i := range 3 {
		n := &clusterNode{name: fmt.Sprintf("n%d", i+1), port: ports[3*i], out: &tailBuffer{max: 16 << 10},
			done: make(chan struct{})}
		ndir := filepath.Join(cl.dir, n.name)
		if err := os.MkdirAll(ndir, 0o755); err != nil {
			cl.close(nil)
			return nil, err
		}
		// exec.Command, not CommandContext: close kills every server on every return,
		// and a SIGKILL of this process kills them through the parent-death signal.
		n.cmd = exec.Command(o.NATSServer, "-c", o.NATSConf)
		n.cmd.Dir = ndir
		n.cmd.Env = append([]string{
			"PATH=" + os.Getenv("PATH"),
			"NATS_SERVER_NAME=" + n.name,
			"NATS_HOST=127.0.0.1",
			"NATS_PORT=" + strconv.Itoa(ports[3*i]),
			"NATS_CLUSTER_PORT=" + strconv.Itoa(ports[3*i+1]),
			"NATS_HTTP_PORT=" + strconv.Itoa(ports[3*i+2]),
			"NATS_STORE_DIR=" + filepath.Join(ndir, "store"),
		}, routes...)
		n.cmd.Stdout, n.cmd.Stderr = n.out, n.out
		n.cmd.SysProcAttr = childProcAttr()
		if err := n.cmd.Start(); err != nil {
			cl.close(nil)
			return nil, fmt.Errorf("start nats-server %s: %w", n.name, err)
		}
		go func() { n.cmd.Wait(); close(n.done) }()
		cl.nodes = append(cl.nodes, n)
	}
	if err := cl.waitMeta(ctx); err != nil {
		cl.close(nil)
		return nil, err
	}
	return cl, nil
}

func (cl *cluster) urls() []string {
	var out []string
	for _, n := range cl.nodes {
		out = append(out, fmt.Sprintf("nats://127.0.0.1:%d", n.port))
	}
	return out
}

// url is the client URL of the node named name.
func (cl *cluster) url(name string) string {
	for _, n := range cl.nodes {
		if n.name == name {
			return fmt.Sprintf("nats://127.0.0.1:%d", n.port)
		}
	}
	return ""
}

// identities makes the three nkey identities and the routes' password the deploy config
// reads from its environment (as `kycstate keygen --nats` does for an operator), keeps
// the admin seed in cl.seed, and returns the environment lines and the password, which
// every route URL carries.
func (cl *cluster) identities() ([]string, string, error) {
	if err := os.MkdirAll(cl.dir, 0o755); err != nil {
		return nil, "", err
	}
	pw := make([]byte, 24)
	if _, err := rand.Read(pw); err != nil {
		return nil, "", err
	}
	password := hex.EncodeToString(pw)
	env := []string{"NATS_CLUSTER_PASSWORD=" + password}
	for _, name := range []string{"NATS_INGEST_NKEY", "NATS_QUERY_NKEY", "NATS_ADMIN_NKEY"} {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return nil, "", err
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, "", err
		}
		env = append(env, name+"="+pub)
		if name == "NATS_ADMIN_NKEY" {
			seed, err := kp.Seed()
			if err != nil {
				return nil, "", err
			}
			cl.seed = filepath.Join(cl.dir, "admin.nk")
			if err := os.WriteFile(cl.seed, seed, 0o600); err != nil {
				return nil, "", err
			}
		}
	}
	return env, password, nil
}

// connect opens a TCP connection to urls as the admin identity.
func (cl *cluster) connect(urls string, opts ...nats.Option) (*nats.Conn, error) {
	auth, err := nats.NkeyOptionFromSeed(cl.seed)
	if err != nil {
		return nil, err
	}
	return nats.Connect(urls, append(opts, auth)...)
}

// waitMeta waits until JetStream answers an account request, which needs a meta leader.
func (cl *cluster) waitMeta(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, clusterTimeout)
	defer cancel()
	nc, err := cl.connect(strings.Join(cl.urls(), ","), nats.Name("kycstate-bench-probe"),
		nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	return cl.until(ctx, "JetStream meta leader", func(ctx context.Context) error {
		_, err := js.AccountInfo(ctx)
		return err
	})
}

// openLog opens KYC_EVENTS with three replicas through eventlog.Open, as `kycstate
// ingest` does on a cluster, waits until the stream has a leader and two current
// followers, and returns a connection and log on the leader alone, opened the same way.
func (cl *cluster) openLog(ctx context.Context, log *zap.Logger) (*eventlog.Conn, *eventlog.EventLog, string, error) {
	ctx, cancel := context.WithTimeout(ctx, clusterTimeout)
	defer cancel()
	open := func(urls []string) (c *eventlog.Conn, events *eventlog.EventLog, err error) {
		labelled(ctx, "nats", func() {
			if c, err = eventlog.Connect(ctx, eventlog.NATSConfig{URLs: urls, Name: "kycstate-bench", Credentials: cl.seed}, log); err != nil {
				return
			}
			if events, err = eventlog.Open(ctx, c, eventlog.Config{Replicas: 3}, log); err != nil {
				c.Close()
			}
		})
		return c, events, err
	}
	c, _, err := open(cl.urls())
	if err != nil {
		return nil, nil, "", err
	}
	var leader string
	err = cl.until(ctx, "KYC_EVENTS leader and two current followers", func(ctx context.Context) error {
		s, err := c.JS.Stream(ctx, eventlog.EventStreamConfig(eventlog.Config{}).Name)
		if err != nil {
			return err
		}
		info := s.CachedInfo()
		if info.Config.Replicas != 3 {
			return fmt.Errorf("stream has %d replicas, want 3", info.Config.Replicas)
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return errors.New("stream has no leader")
		}
		if len(info.Cluster.Replicas) != 2 {
			return fmt.Errorf("leader sees %d followers", len(info.Cluster.Replicas))
		}
		for _, p := range info.Cluster.Replicas {
			if p.Offline || !p.Current {
				return fmt.Errorf("follower %s offline=%v current=%v", p.Name, p.Offline, p.Current)
			}
		}
		leader = info.Cluster.Leader
		return nil
	})
	c.Close()
	if err != nil {
		return nil, nil, "", err
	}
	url := cl.url(leader)
	if url == "" {
		return nil, nil, "", fmt.Errorf("stream leader %q is none of the three nodes", leader)
	}
	c, events, err := open([]string{url})
	if err != nil {
		return nil, nil, "", err
	}
	return c, events, leader, nil
}

// until calls try every 100 ms until it succeeds or ctx ends, and then says what it
// waited for, the last error, and the servers' output.
func (cl *cluster) until(ctx context.Context, what string, try func(context.Context) error) error {
	for {
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := try(tctx)
		cancel()
		if err == nil {
			return nil
		}
		for _, n := range cl.nodes {
			select {
			case <-n.done:
				return fmt.Errorf("nats-server %s exited while waiting for %s: %s", n.name, what, n.out.String())
			default:
			}
		}
		select {
		case <-ctx.Done():
			var tails []string
			for _, n := range cl.nodes {
				tails = append(tails, fmt.Sprintf("--- %s:\n%s", n.name, n.out.String()))
			}
			return fmt.Errorf("waiting for %s: %w (last: %v)\n%s", what, ctx.Err(), err, strings.Join(tails, "\n"))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// close records each server's peak RSS in r (when r is set), kills the servers, waits
// for them and removes their directories. It is safe to call twice.
func (cl *cluster) close(r *result) {
	var peak, total int64
	for _, n := range cl.nodes {
		if n.cmd.Process == nil {
			continue
		}
		kib := procPeakRSS(n.cmd.Process.Pid)
		peak, total = max(peak, kib), total+max(kib, 0)
		n.cmd.Process.Kill()
		<-n.done
	}
	if r != nil && len(cl.nodes) > 0 {
		r.set("nats_peak_mib", float64(peak)/1024)
		r.set("nats_total_mib", float64(total)/1024)
	}
	cl.nodes = nil
	os.RemoveAll(cl.dir)
}

// procPeakRSS reads the peak resident set size (VmHWM) of process pid in KiB, or -1.
func procPeakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	return vmHWM(b)
}

// tcpClients opens n NATS connections to url, each with its own JetStream context: the
// baseline's clients on the cluster, as `nats bench js pub sync --clients=N` runs them.
func tcpClients(cl *cluster, url string, n int) ([]jetstream.JetStream, func(), error) {
	return jsClients(n, func() (*nats.Conn, error) { return cl.connect(url, nats.Name("kycstate-bench-raw")) })
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	seen := map[int]bool{}
	var ports []int
	for len(ports) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !seen[p] {
			seen[p] = true
			ports = append(ports, p)
		}
	}
	return ports, nil
}

// tailBuffer keeps the last max bytes written to it; a server's output, for errors.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
