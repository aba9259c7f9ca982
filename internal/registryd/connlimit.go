package registryd

import (
	"container/list"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// refusalLogEvery bounds how often a full server logs that it refuses
// connections: a flood must not become a flood of log lines.
const refusalLogEvery = 10 * time.Second

// connLimit caps the API listener's connections, counting them in
// http.Server.ConnState, which net/http calls with StateNew in its accept
// loop before accepting the next one. When the cap is reached a new
// connection takes the place of the longest-idle keep-alive connection,
// which is closed (its client, between two requests, reconnects: Go's
// Transport retries such a request by itself); when none is idle, every
// connection is busy with a request (or has yet to send one, which the
// read timeouts bound), and the new one is closed at once, refused rather
// than left waiting in the backlog.
type connLimit struct {
	max int
	log *zap.Logger

	mu        sync.Mutex
	conns     map[net.Conn]*list.Element // the element is in idle, or not in any list
	idle      *list.List                 // of net.Conn, longest idle first
	refused   int
	lastWarn  time.Time
	evictions int
}

func newConnLimit(max int, log *zap.Logger) *connLimit {
	return &connLimit{max: max, log: log, conns: map[net.Conn]*list.Element{}, idle: list.New()}
}

func (cl *connLimit) track(c net.Conn, st http.ConnState) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	switch st {
	case http.StateNew:
		if len(cl.conns) >= cl.max && !cl.evictIdle() {
			cl.refuse(c)
			return
		}
		cl.conns[c] = nil
	case http.StateActive:
		// A connection already evicted or refused is no longer counted.
		if cl.unidle(c) {
			cl.conns[c] = nil
		}
	case http.StateIdle:
		if cl.unidle(c) {
			cl.conns[c] = cl.idle.PushBack(c)
		}
	case http.StateClosed, http.StateHijacked:
		if cl.unidle(c) {
			delete(cl.conns, c)
		}
	}
}

// unidle takes c off the idle list if it is on it, and reports whether c
// is counted at all.
func (cl *connLimit) unidle(c net.Conn) bool {
	e, ok := cl.conns[c]
	if ok && e != nil {
		cl.idle.Remove(e)
	}
	return ok
}

// evictIdle closes the longest-idle connection and forgets it, making room
// for one; it returns false when none is idle.
func (cl *connLimit) evictIdle() bool {
	e := cl.idle.Front()
	if e == nil {
		return false
	}
	c := cl.idle.Remove(e).(net.Conn)
	delete(cl.conns, c)
	cl.evictions++
	// Not under the lock, nor in net/http's accept loop: closing a TLS
	// connection writes an alert.
	go func() { _ = c.Close() }()
	return true
}

func (cl *connLimit) refuse(c net.Conn) {
	cl.refused++
	if now := time.Now(); now.Sub(cl.lastWarn) >= refusalLogEvery {
		cl.lastWarn = now
		cl.log.Warn("connection limit reached and no connection idle: refusing new connections (raise --max-connections, or add frontends)",
			zap.Int("max_connections", cl.max), zap.Int("refused_so_far", cl.refused))
	}
	// At once, before net/http reads from it: a connection that has not
	// completed a TLS handshake closes without writing anything.
	_ = c.Close()
}

// counts reports the connections counted, the idle ones among them, and
// how many were evicted and refused so far.
func (cl *connLimit) counts() (open, idle, evicted, refused int) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return len(cl.conns), cl.idle.Len(), cl.evictions, cl.refused
}

// collectors export the counts on /metrics: how close the API listener is
// to --max-connections, and how often the cap acted (an evicted idle
// connection costs its client a reconnect; a refused one, a failed call).
func (cl *connLimit) collectors() []prometheus.Collector {
	read := func(pick func(open, evicted, refused int) int) func() float64 {
		return func() float64 {
			open, _, evicted, refused := cl.counts()
			return float64(pick(open, evicted, refused))
		}
	}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sr_registry_connections",
			Help: "Connections open on the API listener, counted against sr_registry_connections_max.",
		}, read(func(open, _, _ int) int { return open })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sr_registry_connections_max",
			Help: "The API listener's connection cap: --max-connections, or less when the open-file limit is lower.",
		}, func() float64 { return float64(cl.max) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sr_registry_connections_evicted_total",
			Help: "Idle keep-alive connections closed to make room for a new one at the cap (their clients reconnect).",
		}, read(func(_, evicted, _ int) int { return evicted })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sr_registry_connections_refused_total",
			Help: "New connections closed at once at the cap because none was idle: raise --max-connections or add frontends.",
		}, read(func(_, _, refused int) int { return refused })),
	}
}
