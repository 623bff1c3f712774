package eventlog

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestConnectEmbeddedFsyncsEveryWriteByDefault(t *testing.T) {
	c := natsStart(t, NATSConfig{})
	srv := c.Server()
	if srv == nil {
		t.Fatal("embedded connection has no server")
	}
	js := srv.JetStreamConfig()
	if js == nil || !js.SyncAlways {
		t.Fatalf("JetStream config %+v: want SyncAlways", js)
	}
	if srv.Addr() != nil {
		t.Errorf("embedded server listens on %v; want no port without Listen", srv.Addr())
	}
	if got := c.NC.MaxPayload(); got != EmbeddedMaxPayload {
		t.Errorf("max payload %d, want %d", got, EmbeddedMaxPayload)
	}
	if !c.NC.IsConnected() {
		t.Error("not connected")
	}
}

func TestConnectEmbeddedSyncInterval(t *testing.T) {
	c := natsStart(t, NATSConfig{SyncInterval: 30 * time.Second})
	js := c.Server().JetStreamConfig()
	if js.SyncAlways || js.SyncInterval != 30*time.Second {
		t.Fatalf("SyncAlways %v SyncInterval %v; want false, 30s", js.SyncAlways, js.SyncInterval)
	}
}

func TestConnectInvalidConfig(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range map[string]NATSConfig{
		"no store dir": {},
		"bad listen":   {StoreDir: t.TempDir(), Listen: "localhost"},
		"bad port":     {StoreDir: t.TempDir(), Listen: "127.0.0.1:99999"},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := Connect(ctx, cfg, zap.NewNop())
			if err == nil {
				c.Close()
				t.Fatal("Connect succeeded")
			}
			if k := domain.KindOf(err); k != domain.KindInvalid {
				t.Fatalf("kind %v (%v), want invalid", k, err)
			}
		})
	}
}

func TestCloseIsIdempotentAndStopsServer(t *testing.T) {
	c, err := Connect(context.Background(), NATSConfig{StoreDir: t.TempDir()}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if c.Server().Running() {
		t.Error("embedded server still running after Close")
	}
	if !c.NC.IsClosed() {
		t.Error("connection not closed")
	}
	var nilConn *Conn
	if err := nilConn.Close(); err != nil {
		t.Errorf("nil Close: %v", err)
	}
}

func TestServerLogGoesToZap(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	c, err := Connect(context.Background(), NATSConfig{StoreDir: t.TempDir()}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if logs.FilterMessage("embedded nats server").Len() == 0 {
		t.Fatal("no server log line reached zap")
	}
	for _, e := range logs.FilterMessage("embedded nats server").All() {
		if e.LoggerName != "nats.server" {
			t.Fatalf("server line logged by %q", e.LoggerName)
		}
	}
}

// natsFreePort picks a TCP port that is free right now.
func natsFreePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestConnectExternalLogsEachStateChangeOnce(t *testing.T) {
	dir := t.TempDir()
	listen := "127.0.0.1:" + strconv.Itoa(natsFreePort(t))
	srvCfg := NATSConfig{StoreDir: dir, Listen: listen, ListenSeed: filepath.Join(dir, "client.nk")}
	srv, err := Connect(context.Background(), srvCfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	ext, err := Connect(context.Background(), NATSConfig{URLs: []string{"nats://" + listen}, Name: "test",
		Credentials: srvCfg.ListenSeed}, zap.New(core))
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	defer ext.Close()
	if ext.Server() != nil {
		t.Error("external connection reports an embedded server")
	}
	if got := ext.NC.Opts.MaxReconnect; got != -1 {
		t.Errorf("MaxReconnect %d, want -1 (forever)", got)
	}

	reconnected := ext.NC.StatusChanged(nats.CONNECTED)
	srv.Close() // the server goes away: one disconnect
	waitLog(t, logs, "nats disconnected", 1)
	srv2, err := Connect(context.Background(), srvCfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	select {
	case <-reconnected:
	case <-time.After(20 * time.Second):
		t.Fatal("no reconnect")
	}
	waitLog(t, logs, "nats reconnected", 1)
	ext.Close()
	waitLog(t, logs, "nats connection closed", 1)
	for _, msg := range []string{"nats disconnected", "nats reconnected", "nats connection closed"} {
		if n := logs.FilterMessage(msg).Len(); n != 1 {
			t.Errorf("%q logged %d times, want once", msg, n)
		}
	}
}

func waitLog(t *testing.T, logs *observer.ObservedLogs, msg string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for logs.FilterMessage(msg).Len() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%q not logged; have %v", msg, logs.All())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConnectExternalUnreachableGivesUp(t *testing.T) {
	port := natsFreePort(t) // nothing listens there
	ctx := context.Background()
	c, err := Connect(ctx, NATSConfig{
		URLs:           []string{"nats://127.0.0.1:" + strconv.Itoa(port)},
		ConnectTimeout: 300 * time.Millisecond,
	}, zap.NewNop())
	if err == nil {
		c.Close()
		t.Fatal("Connect to nothing succeeded")
	}
	if k := domain.KindOf(err); k != domain.KindUnavailable {
		t.Fatalf("kind %v (%v), want unavailable", k, err)
	}

	// A cancelled ctx ends the wait too.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Connect(cctx, NATSConfig{URLs: []string{"nats://127.0.0.1:" + strconv.Itoa(port)}}, zap.NewNop()); domain.KindOf(err) != domain.KindUnavailable {
		t.Fatalf("cancelled Connect: %v, want unavailable", err)
	}
}
