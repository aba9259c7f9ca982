package store

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the instruments a store reports what it does to. The server
// makes them (their names, help and labels are its business: see
// internal/server's /metrics) and registers them; a store only updates
// them, at the moment a change is durable. Options.Metrics nil, or any
// field nil, reports to instruments that nobody reads.
type Metrics struct {
	// SessionExpiries counts the sessions this store expired, when the
	// removal (and its services.timeout event) is durable. On etcd it is
	// counted by the frontend whose transaction won, so every expiry is
	// counted once in the cluster.
	SessionExpiries prometheus.Counter
	// Events counts the events committed, by event type (its one label).
	Events *prometheus.CounterVec
	// CommitDuration observes how long each write to durable storage took,
	// by kind (its one label): CommitMutations for a transaction of
	// mutations (bbolt: one group commit, fsync included; etcd: one
	// transaction of a tenant's mutations), CommitHeartbeats for one etcd
	// transaction of heartbeats (bbolt keeps heartbeats in memory).
	CommitDuration *prometheus.HistogramVec
}

// The kinds of CommitDuration.
const (
	CommitMutations  = "mutations"
	CommitHeartbeats = "heartbeats"
)

// OrDiscard returns m with every nil field (all of them when m is nil)
// replaced by an instrument that is not registered anywhere, so that a
// store can update its instruments without checking for nil.
func (m *Metrics) OrDiscard() *Metrics {
	var out Metrics
	if m != nil {
		out = *m
	}
	if out.SessionExpiries == nil {
		out.SessionExpiries = prometheus.NewCounter(prometheus.CounterOpts{Name: "discarded"})
	}
	if out.Events == nil {
		out.Events = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "discarded"}, []string{"type"})
	}
	if out.CommitDuration == nil {
		out.CommitDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "discarded"}, []string{"kind"})
	}
	return &out
}

// Counts are how much of the registry is live at one moment.
type Counts struct {
	Sessions int
	Services int
}
