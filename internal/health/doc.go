// Package health decides whether the wrapped program really serves, so
// that the wrapper lists only instances that answer. A Spec is a check as
// the --check-* flags give it; it builds the Checker, which probes the
// program once (an HTTP GET, a TCP connect, or a command that must exit
// 0), and Run probes it on an interval and turns the results into healthy
// and unhealthy transitions with rise/fall hysteresis.
//
// It is not the registration: Run only reports transitions through
// Config.OnChange, and the caller passes them on (to the heartbeat
// Keeper's SetHealthy). It does not supervise the main child either: a
// command check's processes are started through a ProcessStarter, the
// wrapper's signals.Reaper, which owns all waiting for children.
package health
