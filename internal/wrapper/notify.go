package wrapper

import (
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/heartbeat"
	"github.com/sr-wrapper/sr-wrapper/internal/sdnotify"
)

// readiness tells systemd (Type=notify) when the service is up: once the
// child runs and the service is registered. Without --abort-on-failure a
// registry that stays down must not make systemd kill the unit for never
// becoming ready, so READY=1 then also comes once a heartbeat timeout has
// passed, with a status saying the service is not registered yet.
type readiness struct {
	n        *sdnotify.Notifier
	log      *zap.Logger
	once     sync.Once
	fallback *time.Timer
}

func newReadiness(n *sdnotify.Notifier, log *zap.Logger) *readiness {
	return &readiness{n: n, log: log}
}

func (r *readiness) report(err error) {
	if err != nil {
		r.log.Warn("notify systemd", zap.Error(err))
	}
}

// started arms the fallback, under systemd only: there is no one else to
// tell.
func (r *readiness) started(fallbackAfter time.Duration) {
	if r.n == nil || fallbackAfter <= 0 {
		return
	}
	r.fallback = time.AfterFunc(fallbackAfter, func() {
		r.once.Do(func() {
			r.report(r.n.Ready("running; not registered yet, still trying"))
		})
	})
}

// event follows the Keeper.
func (r *readiness) event(e heartbeat.Event) {
	switch e {
	case heartbeat.EventRegistered:
		first := false
		r.once.Do(func() {
			first = true
			r.report(r.n.Ready("running; registered"))
		})
		if !first {
			r.report(r.n.Status("running; registered"))
		}
	case heartbeat.EventDeregistered:
		r.report(r.n.Status("running; deregistered: unhealthy"))
	case heartbeat.EventSessionLost:
		r.report(r.n.Status("running; session lost, registering again"))
	}
}

func (r *readiness) stopping() {
	if r.fallback != nil {
		r.fallback.Stop()
	}
	r.report(r.n.Stopping("stopping"))
}
