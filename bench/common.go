package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/kycstate/kycstate/store/eventlog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newLogger writes warnings and errors to stderr, as JSON: what the service logs at its
// default level, minus the per-request info lines it does not write either.
func newLogger() *zap.Logger {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(os.Stderr), zapcore.WarnLevel))
}

// openLog starts the embedded NATS server on dir and opens the event log on it, as
// `kycstate serve` does. relaxed sets a 1-minute sync interval instead of fsync on every
// write (used only to load the rebuild's stream).
func openLog(ctx context.Context, dir string, relaxed bool, log *zap.Logger) (c *eventlog.Conn, events *eventlog.EventLog, err error) {
	cfg := eventlog.NATSConfig{StoreDir: dir, Name: "kycstate-bench"}
	if relaxed {
		cfg.SyncInterval = time.Minute
	}
	// The server's goroutines, and the client library's read loop, carry part=nats in
	// CPU profiles.
	labelled(ctx, "nats", func() {
		if c, err = eventlog.Connect(ctx, cfg, log); err != nil {
			return
		}
		if events, err = eventlog.Open(ctx, c, eventlog.Config{Keys: benchMasterKeys()}, log); err != nil {
			c.Close()
		}
	})
	return c, events, err
}

// benchMaster is the benchmark's keys.master: every phase seals events (stored version
// 2) as serve does, so the figures include the data-key ring's cost.
const benchMaster = "6b7973746174652d62656e63682d6d61737465722d6b65792d30303030303030"

func benchMasterKeys() *eventlog.MasterKeys {
	m, err := eventlog.ParseMasterKey(benchMaster)
	if err != nil {
		panic(err)
	}
	return &eventlog.MasterKeys{Current: m}
}

// labelled runs fn with the profiler label part: every goroutine fn starts inherits it,
// so `go tool pprof -tagfocus part=...` splits a profile into the service, the load
// generator and the embedded NATS server.
func labelled(ctx context.Context, part string, fn func()) {
	pprof.Do(ctx, pprof.Labels("part", part), func(context.Context) { fn() })
}

// labelGoroutine sets the profiler label part on the calling goroutine and on every
// goroutine it starts from now on.
func labelGoroutine(ctx context.Context, part string) {
	pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels("part", part)))
}

// serve runs srv on a loopback port; it returns the base URL and a function that shuts
// the server down and waits for it. Its goroutines carry the profiler label part.
func serve(srv *http.Server, part string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	done := make(chan struct{})
	labelled(context.Background(), part, func() {
		go func() {
			defer close(done)
			srv.Serve(ln)
		}()
	})
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	}
	return "http://" + ln.Addr().String(), stop, nil
}

// keepAliveClient keeps exactly conns connections open to one host.
func keepAliveClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
	}
}

// readBody reads a response body into buf.
func readBody(r io.Reader, buf *bytes.Buffer) error {
	buf.Reset()
	_, err := buf.ReadFrom(r)
	return err
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func median(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	s := slices.Clone(x)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// profile starts a CPU profile named name in o.Profile (if profiling) and returns the
// function that stops it.
func profile(o options, name string) (func() error, error) {
	if o.Profile == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(filepath.Join(o.Profile, name+".pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// heapProfile writes a heap profile named name in o.Profile, if profiling: what the live
// heap is made of at the end of a phase's measurement.
func heapProfile(o options, name string) error {
	if o.Profile == "" {
		return nil
	}
	f, err := os.Create(filepath.Join(o.Profile, name+".heap.pprof"))
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// progress prints a line on stderr.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "   "+format+"\n", args...)
}

// errFirst keeps the first error that any of many goroutines puts.
type errFirst struct {
	ch chan error
}

func newErrFirst() *errFirst { return &errFirst{ch: make(chan error, 1)} }

func (e *errFirst) put(err error) {
	select {
	case e.ch <- err:
	default:
	}
}

func (e *errFirst) err() error {
	select {
	case err := <-e.ch:
		return err
	default:
		return nil
	}
}
