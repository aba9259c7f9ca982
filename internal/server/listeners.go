package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// Defaults of HTTPLimits' zero values.
const (
	// DefaultReadHeaderTimeout bounds the reading of a request's header.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultReadTimeout bounds the reading of a whole request, header
	// and body, from its first byte: a body trickled a byte at a time is
	// cut off then. net/http starts it afresh for each request of a
	// keep-alive connection, so it does not limit the connection's life.
	DefaultReadTimeout = 20 * time.Second
	// DefaultWriteTimeout bounds the handling and writing of a reply,
	// from the end of its request's header. No handler waits for long
	// (there is no long poll): a store commit takes milliseconds.
	DefaultWriteTimeout = 30 * time.Second
	// DefaultIdleTimeout is how long a keep-alive connection may wait for
	// its next request: longer than any client's heartbeat interval (at
	// most 0.8 × 30 s), so heartbeats keep reusing their connection.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultMaxHeaderBytes bounds a request's header.
	DefaultMaxHeaderBytes = 64 << 10
)

// HTTPLimits are the timeouts, the header limit and the connection hook
// of the http.Servers of ServeListeners. Zero fields take their defaults.
type HTTPLimits struct {
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	// ConnState, when set, is called as http.Server.ConnState for the
	// connections of the API listener (after the server's own tracking),
	// e.g. to cap their number. The net.Conn is what the listener
	// returned: a *tls.Conn for a TLS listener.
	ConnState func(net.Conn, http.ConnState)
}

func (lim HTTPLimits) withDefaults() HTTPLimits {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&lim.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&lim.ReadTimeout, DefaultReadTimeout)
	def(&lim.WriteTimeout, DefaultWriteTimeout)
	def(&lim.IdleTimeout, DefaultIdleTimeout)
	if lim.MaxHeaderBytes <= 0 {
		lim.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	return lim
}

// httpServer is an http.Server with the limits, serving h, whose requests'
// contexts are not cancelled by ctx (Shutdown lets them finish).
func (lim HTTPLimits) httpServer(ctx context.Context, h http.Handler, log *zap.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		ReadTimeout:       lim.ReadTimeout,
		WriteTimeout:      lim.WriteTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    lim.MaxHeaderBytes,
		ErrorLog:          zap.NewStdLog(log.WithOptions(zap.IncreaseLevel(zap.WarnLevel))),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
}

// ServeListeners serves the API on l and, when ml is not nil, the metrics
// on ml (ServeMetrics), with lim's timeouts, until ctx is done or either
// fails, which stops both: a server asked for its metrics elsewhere does
// not go on without them. The listeners may be TLS listeners
// (tls.NewListener): requests then see r.TLS and the replies' URLs say
// https. The Server is closed at the end, as by Serve.
func (s *Server) ServeListeners(ctx context.Context, l, ml net.Listener, lim HTTPLimits) error {
	lim = lim.withDefaults()
	if ml == nil {
		return s.serve(ctx, l, lim)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	metricsDone := make(chan error, 1)
	go func() {
		err := s.serveMetricsOn(ctx, ml, lim)
		cancel()
		metricsDone <- err
	}()
	err := s.serve(ctx, l, lim)
	cancel()
	return errors.Join(err, <-metricsDone)
}

func (s *Server) serve(ctx context.Context, l net.Listener, lim HTTPLimits) error {
	hs := lim.httpServer(ctx, s.Handler(), s.log.Named("http"))
	fresh := &freshConns{m: map[net.Conn]struct{}{}}
	hs.ConnState = fresh.track
	if lim.ConnState != nil {
		hs.ConnState = func(c net.Conn, st http.ConnState) {
			fresh.track(c, st)
			lim.ConnState(c, st)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	select {
	case err := <-errc:
		closeErr := s.Close()
		return errors.Join(fmt.Errorf("serve on %s: %w", l.Addr(), err), closeErr)
	case <-ctx.Done():
	}
	s.log.Info("shutting down", zap.String("addr", l.Addr().String()))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	// Shutdown waits up to 5 s for connections that have not sent a
	// request yet (a client's spare connection): give them a moment to
	// send one, then close them.
	closeFresh := time.AfterFunc(freshConnGrace, fresh.closeAll)
	defer closeFresh.Stop()
	shutErr := hs.Shutdown(sctx)
	if shutErr != nil {
		shutErr = fmt.Errorf("shut down HTTP server on %s: %w", l.Addr(), shutErr)
		_ = hs.Close()
	}
	<-errc
	return errors.Join(shutErr, s.Close())
}

func (s *Server) serveMetricsOn(ctx context.Context, l net.Listener, lim HTTPLimits) error {
	hs := lim.httpServer(ctx, s.MetricsHandler(), s.log.Named("metrics-http"))
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve metrics on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	err := hs.Shutdown(sctx)
	if err != nil {
		_ = hs.Close()
		err = fmt.Errorf("shut down metrics server on %s: %w", l.Addr(), err)
	}
	if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return err
}
