package wrapper

import (
	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/heartbeat"
	"github.com/sr-wrapper/sr-wrapper/internal/sdnotify"
	"github.com/sr-wrapper/sr-wrapper/internal/supervisor"
)

// systemdHooks tell systemd (Type=notify) what the supervisor reports:
// READY=1 once the child runs and the service is registered, or after a
// heartbeat timeout without --abort-on-failure, so that a registry that
// stays down does not make systemd kill the unit for never becoming ready.
// The supervisor calls them from its loop, so what systemd hears is in
// that order and ends with STOPPING=1; WATCHDOG=1 comes from that loop
// too, while the child runs. A nil Notifier sends nothing.
func systemdHooks(n *sdnotify.Notifier, log *zap.Logger) supervisor.Hooks {
	report := func(err error) {
		if err != nil {
			log.Warn("notify systemd", zap.Error(err))
		}
	}
	// A ping that fails (systemd gone) fails again every period: say so
	// once, and again once it has recovered and failed anew.
	pingFailing := false
	return supervisor.Hooks{
		Ready: func(registered bool) {
			if registered {
				report(n.Ready("running; registered"))
			} else {
				report(n.Ready("running; not registered yet, still trying"))
			}
		},
		Registration: func(e heartbeat.Event) {
			switch e.Kind {
			case heartbeat.Registered:
				report(n.Status("running; registered"))
			case heartbeat.Deregistered:
				report(n.Status("running; deregistered: unhealthy"))
			case heartbeat.SessionLost:
				report(n.Status("running; session lost, registering again"))
			}
		},
		Stopping: func() { report(n.Stopping("stopping")) },
		Watchdog: func() {
			err := n.Watchdog()
			if err != nil && !pingFailing {
				log.Warn("ping systemd's watchdog", zap.Error(err))
			}
			pingFailing = err != nil
		},
	}
}
