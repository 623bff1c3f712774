package ingest

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// DefaultMaxConnsPerSource is ingest.max_conns_per_source's default. A provider delivers
// from a handful of addresses, and one of them catching up after an outage (or a load
// test from one host) keeps hundreds of connections open at once: four times
// ingest.max_in_flight's default leaves such a sender room to fill every slot, while one
// address still cannot hold the descriptors and memory of thousands. Bodies are read
// before admission, so a connection costs a goroutine and its buffers, never a slot.
const DefaultMaxConnsPerSource = 4 * DefaultMaxInFlight

// CodeTooManyConnections is the code of a connection refused at the listener. 503.
const CodeTooManyConnections = "too_many_connections"

// refusedAnswer is what a connection over its source's cap is told before it is closed.
// It is written without reading the request, so a client may see the connection reset
// instead; either way it retries later.
func refusedAnswer() []byte {
	body := `{"error":{"code":"` + CodeTooManyConnections + `","message":"too many connections from this source address; retry later"}}`
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: " + retryAfter +
		"\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// ListenerConfig configures Listener.
type ListenerConfig struct {
	// MaxConnsPerSource caps the connections open at once from one source address
	// (ingest.max_conns_per_source); 0 or less: no cap.
	MaxConnsPerSource int
	Logger            *zap.Logger           // nil: no logging
	Metrics           prometheus.Registerer // nil: the counter is not registered
}

// Listener wraps ln so that no source address holds more than MaxConnsPerSource
// connections at once (DESIGN.md section 15, "Admission before work"): a connection over
// the cap is answered 503 (too_many_connections, Retry-After) and closed at once,
// before net/http reads a byte of it, while other sources are served. With the body
// read before a slot is taken, it bounds what one source can hold: its connections, and
// for each at most ingest.max_body of memory.
//
// The source is the peer's IP address (IPv6 by its /64: one host commonly holds a whole
// /64). Behind a reverse proxy or load balancer every connection comes from the proxy:
// the cap then applies to the proxy as a whole, so set it above the proxy's connection
// pool (or to 0) and cap per client at the proxy. Forwarded-for headers are not read:
// the cap acts before any header arrives.
//
// Errors: none from the wrapping itself; KindConflict when the metrics are registered twice.
func Listener(ln net.Listener, cfg ListenerConfig) (net.Listener, error) {
	refused := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kycstate_ingest_connections_refused_total",
		Help: "Connections closed at accept because their source address had ingest.max_conns_per_source open.",
	})
	if cfg.Metrics != nil {
		if err := cfg.Metrics.Register(refused); err != nil {
			return nil, domain.E("ingest.Listener", domain.KindConflict, err)
		}
	}
	if cfg.MaxConnsPerSource <= 0 {
		return ln, nil
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	return &sourceListener{Listener: ln, max: cfg.MaxConnsPerSource, open: make(map[string]int),
		refused: refused, log: log.Named("ingest")}, nil
}

// sourceListener counts open connections per source. Its map holds only sources with a
// connection open, so it is bounded by the connections themselves.
type sourceListener struct {
	net.Listener
	max     int
	refused prometheus.Counter
	log     *zap.Logger

	mu     sync.Mutex
	open   map[string]int
	logged time.Time // last refusal logged; refusals are logged at most every refusedLogEvery
	unsaid int       // refusals since
}

// refusedLogEvery paces the refusal log line: a flood of connections must not become a
// flood of log lines.
const refusedLogEvery = 10 * time.Second

// Accept returns the next connection whose source is under its cap; connections over
// it are refused (answered and closed) on the way.
func (l *sourceListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := sourceKey(c.RemoteAddr())
		if l.take(src) {
			return &sourceConn{Conn: c, release: func() { l.release(src) }}, nil
		}
		l.refuse(c, src)
	}
}

func (l *sourceListener) take(src string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[src] >= l.max {
		return false
	}
	l.open[src]++
	return true
}

func (l *sourceListener) release(src string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[src]--; l.open[src] <= 0 {
		delete(l.open, src)
	}
}

// refuse answers c 503 and closes it. The write goes to a fresh socket's empty send
// buffer, so it does not block the accept loop; the deadline makes sure of it.
func (l *sourceListener) refuse(c net.Conn, src string) {
	l.refused.Inc()
	_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = c.Write(refusedAnswer())
	_ = c.Close()

	l.mu.Lock()
	l.unsaid++
	now := time.Now()
	if now.Sub(l.logged) < refusedLogEvery {
		l.mu.Unlock()
		return
	}
	n := l.unsaid
	l.logged, l.unsaid = now, 0
	l.mu.Unlock()
	l.log.Warn("connections refused: source over ingest.max_conns_per_source",
		zap.String("source", src), zap.Int("max", l.max), zap.Int("refused", n))
}

// sourceConn gives its source's place back when closed (once, however often Close is
// called).
type sourceConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *sourceConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite passes a half-close through to the connection: net/http uses it to let a
// client read an answer before the connection closes.
func (c *sourceConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// sourceKey is the source of a connection: its IP address, IPv6 by its /64.
func sourceKey(addr net.Addr) string {
	if a, ok := addr.(*net.TCPAddr); ok {
		return sourceOfIP(a.AddrPort().Addr())
	}
	return sourceOf(addr.String())
}

// sourceOf is sourceKey of a host:port string (http.Request.RemoteAddr).
func sourceOf(hostport string) string {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return hostport
	}
	return sourceOfIP(ap.Addr())
}

func sourceOfIP(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
