package ingest

import (
	"net/http"
	"time"
)

// Limits of the ingest HTTP server. Allpass sends small JSON bodies over short requests;
// the limits keep slow or oversized clients from holding connections or memory.
const (
	// ReadHeaderTimeout bounds a client trickling its headers (slowloris).
	serverReadHeaderTimeout = 5 * time.Second
	// ReadTimeout bounds reading headers and the (at most MaxBody) body.
	serverReadTimeout = 30 * time.Second
	// WriteTimeout must exceed the append timeout, or a slow PubAck would cut the
	// connection instead of answering 503.
	serverWriteTimeout = 30 * time.Second
	serverIdleTimeout  = 120 * time.Second
	// MaxHold bounds a webhook's queue wait plus append timeout: held longer, its 503
	// would be written after WriteTimeout has cut the connection, and Allpass would see a
	// reset instead of Retry-After. The margin leaves time to read the body.
	MaxHold = serverWriteTimeout - 10*time.Second
	// MaxHeaderBytes: Allpass sends a handful of headers; anything past 64 KiB is answered
	// 431 by net/http before the handler runs.
	serverMaxHeaderBytes = 64 << 10
)

// NewHTTPServer returns the server for the ingest handler h on addr, with timeouts and a
// header size limit set. The caller runs ListenAndServe and Shutdown. When h is
// NewHandler's, Shutdown refuses at once the requests waiting in its queue (503 with
// Retry-After) while it waits for the ones in flight, so every queued request is
// answered before the caller closes the log.
func NewHTTPServer(addr string, h http.Handler) *http.Server {
	srv := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: serverReadHeaderTimeout,
		ReadTimeout:       serverReadTimeout,
		WriteTimeout:      serverWriteTimeout,
		IdleTimeout:       serverIdleTimeout,
		MaxHeaderBytes:    serverMaxHeaderBytes,
	}
	if s, ok := h.(interface{ stopQueue() }); ok {
		srv.RegisterOnShutdown(s.stopQueue)
	}
	return srv
}
