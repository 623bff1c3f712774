// Package jstest is the JetStream test fixture: a real nats-server, embedded in the test
// process with its store in a temporary directory, reached through an in-process
// connection (no port), and shut down when the test ends. Tests across the repository
// use it rather than each starting a server of its own, or a fake.
//
// Each server belongs to the test that started it: nothing is shared between tests, and
// everything it started is stopped by the test's cleanup, so tests that use it end with
// no goroutine left behind. It accepts what production's embedded server accepts (the
// same maximum payload). Only tests import it; every function takes the test's
// testing.TB.
package jstest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kycstate/kycstate/store/eventlog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Server is one embedded JetStream server and a client connection to it.
type Server struct {
	NS  *server.Server
	NC  *nats.Conn
	JS  jetstream.JetStream // over NC
	Dir string              // the JetStream store directory

	closeOnce sync.Once
}

// Start starts a server with its store in tb.TempDir() and connects to it. The server
// and the connection are closed when the test ends.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	return StartIn(tb, tb.TempDir(), opts...)
}

// Option changes the server's options before it starts.
type Option func(*server.Options)

// SyncAlways makes the server fsync every write, as the embedded server of production
// does (eventlog.Connect): for benchmarks whose numbers must include the fsync.
func SyncAlways() Option { return func(o *server.Options) { o.SyncAlways = true } }

// StartIn is Start with its store in dir, which may hold the streams of a server
// started there before: a test restarts the log with Close and StartIn on the same dir.
//
// The server takes the embedded server's maximum payload (eventlog.EmbeddedMaxPayload),
// so that what a test can append is what production can; it keeps nats-server's default
// fsync, since no test here pulls the power.
func StartIn(tb testing.TB, dir string, opts ...Option) *Server {
	tb.Helper()
	o := &server.Options{
		DontListen: true,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		MaxPayload: eventlog.EmbeddedMaxPayload,
	}
	for _, opt := range opts {
		opt(o)
	}
	ns, err := server.NewServer(o)
	if err != nil {
		tb.Fatalf("jstest: new server: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		tb.Fatal("jstest: server did not become ready")
	}
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns), nats.MaxReconnects(-1))
	if err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		tb.Fatalf("jstest: connect: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
		tb.Fatalf("jstest: %v", err)
	}
	s := &Server{NS: ns, NC: nc, JS: js, Dir: dir}
	tb.Cleanup(s.Close)
	return s
}

// Close closes the connection and shuts the server down. Safe to call twice.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.NC.Close()
		s.NS.Shutdown()
		s.NS.WaitForShutdown()
	})
}

// Conn is s's connection as the event log takes it. Closing it leaves s running.
func (s *Server) Conn(tb testing.TB) *eventlog.Conn {
	tb.Helper()
	c, err := eventlog.Wrap(s.NC)
	if err != nil {
		tb.Fatalf("jstest: %v", err)
	}
	return c
}

// EventLog opens the event log (KYC_EVENTS and KYC_REJECTS) on s with cfg; log may be
// nil.
func (s *Server) EventLog(tb testing.TB, cfg eventlog.Config, log *zap.Logger) *eventlog.EventLog {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	events, err := eventlog.Open(ctx, s.Conn(tb), cfg, log)
	if err != nil {
		tb.Fatalf("jstest: open event log: %v", err)
	}
	return events
}

// MaxPayload sets the server's maximum payload (production's external clusters keep
// nats-server's default, 1 MiB).
func MaxPayload(n int32) Option { return func(o *server.Options) { o.MaxPayload = n } }
