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
	// MaxReadTimeout bounds ingest.read_timeout: a body's read, a slot's wait and the
	// append together must end before WriteTimeout (MaxHold + MaxReadTimeout leaves 2 s).
	MaxReadTimeout = 8 * time.Second
	// WriteTimeout must exceed the append timeout, or a slow PubAck would cut the
	// connection instead of answering 503.
	serverWriteTimeout = 30 * time.Second
	serverIdleTimeout  = 120 * time.Second
	// MaxHold bounds a webhook's queue wait plus append timeout: held longer, its 503
	// would be written after WriteTimeout has cut the connection, and Allpass would see a
	// reset instead of Retry-After. The margin leaves time to read the body
	// (MaxReadTimeout).
	MaxHold = serverWriteTimeout - 10*time.Second
	// MaxHeaderBytes: Allpass sends a handful of headers; anything past 64 KiB is answered
	// 431 by net/http before the handler runs.
	serverMaxHeaderBytes = 64 << 10
)

// NewHTTPServer returns the server for the ingest handler h on addr, with timeouts and a
// header size limit set. The caller runs Serve (over Listener, to cap connections per
// source) and Shutdown. When h is NewHandler's, Shutdown refuses at once the requests
// waiting in its queue (503 with Retry-After) while it waits for the ones in flight, so
// every queued request is answered before the caller closes the log.
//
// A webhook's body is bounded by the handler itself (HandlerConfig.ReadTimeout and the
// minimum rate), on the connection's read deadline. The server's ReadTimeout, headers
// plus the handler's read timeout, only bounds what the handler does not read: the body
// of another route, which net/http drains after the answer.
func NewHTTPServer(addr string, h http.Handler) *http.Server {
	read := DefaultReadTimeout
	if s, ok := h.(interface{ readTimeout() time.Duration }); ok {
		read = s.readTimeout()
	}
	srv := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: serverReadHeaderTimeout,
		ReadTimeout:       serverReadHeaderTimeout + read,
		WriteTimeout:      serverWriteTimeout,
		IdleTimeout:       serverIdleTimeout,
		MaxHeaderBytes:    serverMaxHeaderBytes,
	}
	if s, ok := h.(interface{ stopQueue() }); ok {
		srv.RegisterOnShutdown(s.stopQueue)
	}
	return srv
}
