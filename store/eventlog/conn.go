package eventlog

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NATSConfig says where the event log lives.
type NATSConfig struct {
	// URLs of an external NATS (several for a cluster). Empty: run an embedded server.
	URLs []string
	// StoreDir is the embedded server's JetStream directory.
	StoreDir string
	// Listen, if set ("127.0.0.1:4222"), lets the embedded server accept TCP clients;
	// empty means in-process only, no port. A listening server admits only clients that
	// present the nkey whose seed is in ListenSeed (the in-process client too): nobody
	// who merely reaches the port can publish under kyc.events.>.
	Listen string
	// ListenSeed is the file of that nkey's seed, required with Listen: read at start,
	// or made (mode 0600) the first time. A client of the listener gives the same file
	// as its Credentials. The port speaks plaintext; the seed never crosses it.
	ListenSeed string
	// SyncInterval of the embedded server; 0 means fsync every write ("always").
	SyncInterval time.Duration
	// Name identifies this client in the server's connection list.
	Name string
	// ConnectTimeout bounds the first connection to an external NATS (default 10 s).
	ConnectTimeout time.Duration

	// How this client authenticates to an external NATS (unused by the embedded server,
	// which makes its own identity, see ListenSeed): at most one of Credentials (the path
	// of a creds file or an nkey seed file, nats.credentials) and User with Password
	// (nats.user, nats.password). None: no credentials are presented.
	Credentials    string
	User, Password string
	// TLS (nats.tls) verifies the server against a CA and presents a client certificate;
	// set, the connection must be TLS.
	TLS TLSFiles
}

// Defaults of the connection.
const (
	DefaultConnectTimeout = 10 * time.Second
	// EmbeddedMaxPayload is the embedded server's largest message. A stored event holds
	// the plaintext and the original body (up to the 1 MiB body limit, hex or base64), so
	// the NATS default of 1 MB is too small; an external NATS needs max_payload of at
	// least this much too (deploy/ configs set it).
	EmbeddedMaxPayload = 8 << 20

	reconnectWait = 500 * time.Millisecond
	drainTimeout  = 5 * time.Second
	readyTimeout  = 30 * time.Second
)

// Conn is a connection to NATS JetStream, embedded or external; everything above it
// uses the same code path.
type Conn struct {
	NC *nats.Conn
	JS jetstream.JetStream
	// stop shuts the embedded server down, if there is one.
	stop func()

	srv       *server.Server
	wipe      func()        // wipes the listener's nkey, if there is one
	borrowed  bool          // NC belongs to the caller (Wrap): Close leaves it open
	closed    chan struct{} // closed by the connection's ClosedHandler
	closeOnce sync.Once
	closeErr  error
}

// Connect starts the embedded server (when cfg.URLs is empty) and connects to it, or
// connects to the external NATS, reconnecting forever and logging each state change.
//
// The embedded server fsyncs every write unless cfg.SyncInterval is set (DESIGN.md
// section 4: JetStream's default two-minute fsync loses acknowledged writes on power
// loss). Errors: KindInvalid for a bad configuration, KindUnavailable when the server
// does not start or the external NATS cannot be reached within cfg.ConnectTimeout.
func Connect(ctx context.Context, cfg NATSConfig, log *zap.Logger) (*Conn, error) {
	const op = "eventlog.Connect"
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("nats")
	if len(cfg.URLs) == 0 {
		return connectEmbedded(ctx, op, cfg, log)
	}
	return connectExternal(ctx, op, cfg, log)
}

func connectEmbedded(ctx context.Context, op string, cfg NATSConfig, log *zap.Logger) (*Conn, error) {
	if cfg.StoreDir == "" {
		return nil, domain.E(op, domain.KindInvalid, "embedded NATS needs a store directory")
	}
	opts := &server.Options{
		ServerName: "kycstate-embedded",
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		DontListen: true,
		NoSigs:     true, // the process owns signals, not the library
		MaxPayload: EmbeddedMaxPayload,
	}
	if cfg.SyncInterval > 0 {
		opts.SyncInterval = cfg.SyncInterval
	} else {
		// SyncAlways makes the file store open its blocks O_SYNC / fsync after each
		// write; SyncInterval is then only the background flush of metadata.
		opts.SyncAlways = true
	}
	c := &Conn{closed: make(chan struct{})}
	var identity []nats.Option
	if cfg.Listen != "" {
		host, port, err := splitListen(cfg.Listen)
		if err != nil {
			return nil, domain.E(op, domain.KindInvalid, err)
		}
		if cfg.ListenSeed == "" {
			return nil, domain.E(op, domain.KindInvalid, "embedded NATS with a listener needs a credentials file (ListenSeed)")
		}
		kp, err := listenIdentity(cfg.ListenSeed)
		if err != nil {
			return nil, domain.E(op, domain.KindInvalid, err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			kp.Wipe()
			return nil, domain.E(op, domain.KindInvalid, err)
		}
		// With a port, every client authenticates: the listener's identity is the only
		// user the server knows, so an anonymous connection is refused, in process too.
		// The in-process client signs each challenge with the pair it keeps until Close.
		opts.DontListen = false
		opts.Host, opts.Port = host, port
		opts.Nkeys = []*server.NkeyUser{{Nkey: pub}}
		identity = []nats.Option{nats.Nkey(pub, kp.Sign)}
		c.wipe = kp.Wipe
	}
	fail := func(kind domain.ErrorKind, err any) (*Conn, error) {
		if c.wipe != nil {
			c.wipe()
		}
		return nil, domain.E(op, kind, err)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fail(domain.KindInvalid, fmt.Errorf("embedded NATS: %w", err))
	}
	// Route the server's own log into zap; only warnings and errors are kept.
	ns.SetLoggerV2(serverLogger{log.Named("server")}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(readyTimeout) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return fail(domain.KindUnavailable, "embedded NATS did not become ready")
	}
	stop := func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}
	if err := ctx.Err(); err != nil {
		stop()
		return fail(domain.KindUnavailable, err)
	}
	c.srv, c.stop = ns, stop
	nopts := c.natsOptions(cfg, log, true)
	nopts = append(nopts, identity...)
	nopts = append(nopts, nats.InProcessServer(ns))
	nc, err := nats.Connect(ns.ClientURL(), nopts...)
	if err != nil {
		stop()
		return fail(domain.KindUnavailable, err)
	}
	if err := c.finish(nc); err != nil {
		nc.Close()
		stop()
		return fail(domain.KindUnavailable, err)
	}
	log.Info("embedded nats started", zap.String("storeDir", cfg.StoreDir),
		zap.Bool("syncAlways", opts.SyncAlways), zap.Bool("listening", !opts.DontListen))
	if !opts.DontListen {
		log.Info("embedded nats listens; clients authenticate with the nkey seed in the credentials file",
			zap.String("listen", cfg.Listen), zap.String("credentials", cfg.ListenSeed))
	}
	return c, nil
}

func connectExternal(ctx context.Context, op string, cfg NATSConfig, log *zap.Logger) (*Conn, error) {
	timeout := cfg.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	auth, err := authOptions(cfg)
	if err != nil {
		return nil, domain.E(op, domain.KindInvalid, err)
	}
	c := &Conn{closed: make(chan struct{})}
	nopts := c.natsOptions(cfg, log, false)
	nopts = append(nopts, auth...)
	// Keep trying the first connection too; Connect then returns at once and the loop
	// below waits, bounded by ConnectTimeout and ctx.
	nopts = append(nopts, nats.RetryOnFailedConnect(true))
	nc, err := nats.Connect(strings.Join(cfg.URLs, ","), nopts...)
	if err != nil {
		return nil, domain.E(op, domain.KindUnavailable, err)
	}
	if !nc.IsConnected() {
		status := nc.StatusChanged(nats.CONNECTED, nats.CLOSED)
		t := time.NewTimer(timeout)
		if !nc.IsConnected() {
			select {
			case <-status:
			case <-t.C:
			case <-ctx.Done():
			}
		}
		t.Stop()
		nc.RemoveStatusListener(status)
		if !nc.IsConnected() {
			nc.Close()
			cause := ctx.Err()
			switch last := nc.LastError(); {
			case cause != nil:
			case last != nil:
				// Refused credentials or TLS end here, the client having given up.
				cause = fmt.Errorf("no NATS server accepted the connection within %s: %w", timeout, last)
			default:
				cause = fmt.Errorf("no NATS server reachable within %s", timeout)
			}
			return nil, domain.E(op, domain.KindUnavailable, cause)
		}
	}
	if err := c.finish(nc); err != nil {
		nc.Close()
		return nil, domain.E(op, domain.KindUnavailable, err)
	}
	return c, nil
}

// natsOptions are the client options shared by both modes: reconnect forever, and log
// each state change once (the handlers fire once per transition, not per attempt). An
// in-process connection is logged as such: its URL is the server's placeholder, on which
// nothing listens.
func (c *Conn) natsOptions(cfg NATSConfig, log *zap.Logger, inProcess bool) []nats.Option {
	name := cfg.Name
	if name == "" {
		name = "kycstate"
	}
	var once sync.Once
	return []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		nats.DrainTimeout(drainTimeout),
		nats.ConnectHandler(func(nc *nats.Conn) {
			if inProcess {
				log.Info("nats connected", zap.String("url", "in process (embedded server)"))
				return
			}
			log.Info("nats connected", zap.String("url", nc.ConnectedUrlRedacted()))
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() {
				return // our own Close; ClosedHandler reports it
			}
			log.Warn("nats disconnected", zap.Error(err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", zap.String("url", nc.ConnectedUrlRedacted()))
		}),
		nats.ClosedHandler(func(*nats.Conn) {
			log.Info("nats connection closed")
			once.Do(func() { close(c.closed) })
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("nats async error", zap.String("subject", subject), zap.Error(err))
		}),
	}
}

func (c *Conn) finish(nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	c.NC, c.JS = nc, js
	return nil
}

// Wrap returns a Conn over nc, a connection the caller made and keeps: Close leaves nc
// open, and the caller closes it. It is for a process that already holds a connection
// (the test fixture internal/jstest, say); Connect is the way to reach a configured NATS.
// Errors: KindInvalid for a nil or closed connection.
func Wrap(nc *nats.Conn) (*Conn, error) {
	const op = "eventlog.Wrap"
	if nc == nil || nc.IsClosed() {
		return nil, domain.E(op, domain.KindInvalid, "no open NATS connection")
	}
	c := &Conn{borrowed: true, closed: make(chan struct{})}
	if err := c.finish(nc); err != nil {
		return nil, domain.E(op, domain.KindInvalid, err)
	}
	return c, nil
}

// Server returns the embedded server, or nil when connected to an external NATS. It is
// there for tests and for an operator's diagnostics; the event log never needs it.
func (c *Conn) Server() *server.Server { return c.srv }

// Close drains the connection (unless it is borrowed, see Wrap) and stops the embedded
// server. Safe to call twice.
func (c *Conn) Close() error {
	if c == nil {
		return nil
	}
	c.closeOnce.Do(func() { c.closeErr = c.close() })
	return c.closeErr
}

func (c *Conn) close() error {
	var err error
	if c.NC != nil && !c.borrowed {
		// Drain lets in-flight requests and buffered messages finish; a connection that
		// is not connected has nothing to drain and is closed outright.
		if derr := c.NC.Drain(); derr == nil {
			t := time.NewTimer(drainTimeout + time.Second)
			select {
			case <-c.closed:
			case <-t.C:
				err = errors.New("nats drain did not finish in time")
			}
			t.Stop()
		}
		c.NC.Close()
	}
	if c.stop != nil {
		c.stop()
	}
	if c.wipe != nil {
		c.wipe()
	}
	if err != nil {
		return domain.E("eventlog.Conn.Close", domain.KindUnavailable, err)
	}
	return nil
}

func splitListen(listen string) (string, int, error) {
	host, p, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("nats listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("nats listen address %q: bad port", listen)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// serverLogger routes the embedded server's log into zap. Notices, debug and trace go
// to debug level; the operator sees warnings and errors. Fatalf is logged as an error:
// the server calls it before exiting on its own, and zap's Fatal would exit twice.
type serverLogger struct{ log *zap.Logger }

func (l serverLogger) Noticef(format string, v ...any) { l.emit(zap.DebugLevel, format, v) }
func (l serverLogger) Warnf(format string, v ...any)   { l.emit(zap.WarnLevel, format, v) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.emit(zap.ErrorLevel, format, v) }
func (l serverLogger) Errorf(format string, v ...any)  { l.emit(zap.ErrorLevel, format, v) }
func (l serverLogger) Debugf(format string, v ...any)  { l.emit(zap.DebugLevel, format, v) }
func (l serverLogger) Tracef(format string, v ...any)  { l.emit(zap.DebugLevel, format, v) }

func (l serverLogger) emit(level zapcore.Level, format string, v []any) {
	if ce := l.log.Check(level, "embedded nats server"); ce != nil {
		ce.Write(zap.String("detail", fmt.Sprintf(format, v...)))
	}
}
