package store

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// NATSConfig says where the event log lives.
type NATSConfig struct {
	// URLs of an external NATS (several for a cluster). Empty: run an embedded server.
	URLs []string
	// StoreDir is the embedded server's JetStream directory.
	StoreDir string
	// Listen, if set ("127.0.0.1:4222"), lets the embedded server accept TCP clients;
	// empty means in-process only, no port.
	Listen string
	// SyncInterval of the embedded server; 0 means fsync every write ("always").
	SyncInterval time.Duration
	// Name identifies this client in the server's connection list.
	Name string
	// ConnectTimeout bounds the first connection to an external NATS (default 10 s).
	ConnectTimeout time.Duration
}

// Conn is a connection to NATS JetStream, embedded or external; everything above it
// uses the same code path.
type Conn struct {
	NC *nats.Conn
	JS jetstream.JetStream
	// stop shuts the embedded server down, if there is one.
	stop func()
}

// Connect starts the embedded server (when cfg.URLs is empty) and connects to it, or
// connects to the external NATS, reconnecting forever and logging each state change.
func Connect(ctx context.Context, cfg NATSConfig, log *zap.Logger) (*Conn, error) {
	panic("TODO")
}

// Close drains the connection and stops the embedded server. Safe to call twice.
func (c *Conn) Close() error { panic("TODO") }
