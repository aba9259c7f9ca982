package server

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/buildinfo"
	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

// Metrics. GET /metrics answers the Prometheus text format from a
// registry of the Server's own (no global registerer: several servers in
// one process keep apart). Label values are only ever route patterns,
// methods, status codes, event types and commit kinds: never a tenant, an
// id, a token or a configuration key, so that cardinality stays bounded
// and nothing secret is exposed.
//
// Counters count what this process did; with the etcd store, summing them
// over the frontends gives the cluster's figure (an expiry is counted by
// the frontend whose transaction won, so once). The gauges of sessions and
// services are the registry's totals, the same on every frontend.
const (
	metricSessions        = "sr_registry_sessions"
	metricServices        = "sr_registry_services"
	metricHeartbeats      = "sr_registry_heartbeats_total"
	metricExpiries        = "sr_registry_session_expiries_total"
	metricEvents          = "sr_registry_events_total"
	metricRequestDuration = "sr_registry_http_request_duration_seconds"
	metricCommitDuration  = "sr_registry_store_commit_duration_seconds"
	metricBuildInfo       = "sr_registry_build_info"

	// countsTimeout bounds the store's count at each scrape (an etcd read).
	countsTimeout = 3 * time.Second
	// maxScrapes bounds concurrent scrapes; more are answered 503.
	maxScrapes = 4
)

// durationBuckets cover a heartbeat served from memory (~0.1 ms) up to an
// etcd call at its deadline (2 s by default).
var durationBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// eventTypes are the types of the events feed, each counted from zero.
var eventTypes = []string{api.EventServiceJoin, api.EventServicesTimeout, api.EventConfigurationUpdate, api.EventConfigurationRemove}

// metrics are a Server's instruments and the handler of /metrics.
type metrics struct {
	registry *prometheus.Registry
	handler  http.Handler
	// onAPI: /metrics is served by Handler too (not only by ServeMetrics).
	onAPI bool
	// store are the instruments the store reports to.
	store *store.Metrics

	// base is the origin of now.
	base time.Time

	heartbeats prometheus.Counter
	requests   *prometheus.HistogramVec
	// observers are the requests histogram's children by route, method
	// and code, copied on write: a request looks its child up without a
	// lock or an allocation, and only a combination never seen before
	// takes mu (there are a few hundred at most).
	observers atomic.Pointer[map[requestKey]prometheus.Observer]
	mu        sync.Mutex
}

// requestKey is the labels of one child of the requests histogram.
type requestKey struct {
	route  route
	method method
	code   uint16
}

// newMetrics makes the instruments and registers them, with the Go and
// process collectors and the store's counts, in a new registry.
func newMetrics(log *zap.Logger, onAPI, etcd bool) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		base:     time.Now(),
		registry: reg,
		onAPI:    onAPI,
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricHeartbeats,
			Help: "Heartbeats this process accepted (each one kept a session alive). On the etcd store each frontend counts its own: sum over the frontends.",
		}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    metricRequestDuration,
			Help:    "Time from a request's headers being read to its reply being written, by route pattern (route=\"unmatched\" for every path no route matches), method (\"other\" beyond the standard ones) and status code.",
			Buckets: durationBuckets,
		}, []string{"route", "method", "code"}),
		store: &store.Metrics{
			SessionExpiries: prometheus.NewCounter(prometheus.CounterOpts{
				Name: metricExpiries,
				Help: "Sessions removed because their heartbeat timeout passed, counted once their removal is durable. On the etcd store each expiry is counted by the one frontend whose transaction won: sum over the frontends.",
			}),
			Events: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: metricEvents,
				Help: "Events committed to the events feed, by type. On the etcd store each frontend counts the events of its own transactions: sum over the frontends.",
			}, []string{"type"}),
			CommitDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
				Name:    metricCommitDuration,
				Help:    "Time of each write to the store's durable storage, by kind: kind=\"mutations\" is one bbolt group commit (fsync included) or one etcd transaction of a tenant's mutations; kind=\"heartbeats\" is one etcd transaction of heartbeats (bbolt keeps heartbeats in memory).",
				Buckets: durationBuckets,
			}, []string{"kind"}),
		},
	}
	empty := map[requestKey]prometheus.Observer{}
	m.observers.Store(&empty)
	// Series that exist from the start, so that rate() sees their first
	// increase: every event type, the commit kinds of this store, and the
	// replies of the hot routes.
	for _, typ := range eventTypes {
		m.store.Events.WithLabelValues(typ)
	}
	m.store.CommitDuration.WithLabelValues(store.CommitMutations)
	if etcd {
		m.store.CommitDuration.WithLabelValues(store.CommitHeartbeats)
	}
	for _, k := range []requestKey{
		{routeHeartbeat, methodPost, http.StatusOK},
		{routeSessions, methodPost, http.StatusCreated},
		{routeServices, methodPost, http.StatusCreated},
		{routeSession, methodDelete, http.StatusNoContent},
		{routeTokens, methodPost, http.StatusOK},
	} {
		m.observer(k)
	}
	info := buildinfo.Get()
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        metricBuildInfo,
		Help:        "Always 1: the version and commit of this sr-registry.",
		ConstLabels: prometheus.Labels{"version": info.Version, "commit": info.Commit},
	})
	buildInfo.Set(1)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.heartbeats, m.requests, buildInfo,
		m.store.SessionExpiries, m.store.Events, m.store.CommitDuration,
	)
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            zap.NewStdLog(log.Named("metrics")),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: maxScrapes,
	})
	return m
}

// registerCounts adds the gauges of sessions and services, counted by st
// at each scrape.
func (m *metrics) registerCounts(st store.Store, log *zap.Logger, etcd bool) {
	whose := ""
	if etcd {
		whose = " On the etcd store: the whole registry's, read from etcd at each scrape, so every frontend reports the same total (aggregate over frontends with max, not sum)."
	}
	m.registry.MustRegister(&countsCollector{
		store: st,
		log:   log,
		sessions: prometheus.NewDesc(metricSessions,
			"Live sessions, over every tenant."+whose, nil, nil),
		services: prometheus.NewDesc(metricServices,
			"Registered services, over every tenant."+whose, nil, nil),
	})
}

// countsCollector reports the store's counts as two gauges. When the store
// cannot count (etcd unreachable, or closing), the scrape goes without
// them rather than report a wrong number.
type countsCollector struct {
	store              store.Store
	log                *zap.Logger
	sessions, services *prometheus.Desc
}

func (cc *countsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- cc.sessions
	ch <- cc.services
}

func (cc *countsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), countsTimeout)
	defer cancel()
	c, err := cc.store.Counts(ctx)
	if err != nil {
		cc.log.Debug("metrics: count sessions and services", zap.Error(err))
		return
	}
	ch <- prometheus.MustNewConstMetric(cc.sessions, prometheus.GaugeValue, float64(c.Sessions))
	ch <- prometheus.MustNewConstMetric(cc.services, prometheus.GaugeValue, float64(c.Services))
}

// observe records the request of c, answered now.
func (m *metrics) observe(c *call) {
	code := c.sw.code
	if code == 0 {
		code = http.StatusOK // what net/http sends for a handler that wrote nothing
	}
	k := requestKey{route: routeOf(c.r.URL.Path), method: methodOf(c.r.Method), code: uint16(code)}
	m.observer(k).Observe((m.now() - c.start).Seconds())
}

// now is the monotonic clock of request durations: a read of the
// monotonic clock alone, half of what time.Now costs (which reads the
// wall clock too), on the path of every heartbeat.
func (m *metrics) now() time.Duration { return time.Since(m.base) }

// observer returns the requests histogram's child of k.
func (m *metrics) observer(k requestKey) prometheus.Observer {
	if o, ok := (*m.observers.Load())[k]; ok {
		return o
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.observers.Load()
	if o, ok := old[k]; ok {
		return o
	}
	o := m.requests.WithLabelValues(routePatterns[k.route], methodNames[k.method], strconv.Itoa(int(k.code)))
	next := make(map[requestKey]prometheus.Observer, len(old)+1)
	maps.Copy(next, old)
	next[k] = o
	m.observers.Store(&next)
	return o
}

// statusWriter is the ResponseWriter that handlers write to: it notes the
// status code for the requests histogram. It lives inside the call, so it
// costs no allocation.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (see tooLarge).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// serveMetrics answers GET /metrics.
func (s *Server) serveMetrics(c *call) {
	if c.r.Method != http.MethodGet && c.r.Method != http.MethodHead {
		c.methodNotAllowed(http.MethodGet, http.MethodHead)
		return
	}
	s.metrics.handler.ServeHTTP(c.w, c.r)
}

// MetricsHandler returns the handler of the metrics listener (see
// ServeMetrics): GET /metrics, and the probes GET /healthz and GET /readyz
// as on the API listener; any other path is 404.
func (s *Server) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := s.newCall(w, r)
		defer s.metrics.observe(c)
		switch path := r.URL.Path; path {
		case "/metrics":
			s.serveMetrics(c)
		case "/healthz", "/readyz":
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				c.methodNotAllowed(http.MethodGet, http.MethodHead)
				return
			}
			s.health(c, path == "/readyz")
		default:
			c.notFoundPath()
		}
	})
}

// ServeMetrics serves MetricsHandler on l (plain HTTP) until ctx is done,
// then shuts down, letting scrapes in flight finish (up to 10 s). Unlike
// Serve it does not close the Server. With Config.SeparateMetrics, this is
// the only place /metrics is served.
func (s *Server) ServeMetrics(ctx context.Context, l net.Listener) error {
	return s.serveMetricsOn(ctx, l, HTTPLimits{}.withDefaults())
}

// RegisterMetrics adds collectors of the process around the server (its
// listeners' connection counts, say) to the metrics it serves.
func (s *Server) RegisterMetrics(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := s.metrics.registry.Register(c); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}
