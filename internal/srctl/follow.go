package srctl

import (
	"context"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
)

// Retries of events follow: quick at first, so that a registry restart
// costs a fraction of a second, and capped low, so that following resumes
// soon after a long outage ends.
const (
	followRetryFirst = 200 * time.Millisecond
	followRetryMax   = 5 * time.Second
)

// Column widths of followed events: an sr-registry event id and the
// longest event type are 26 characters. Rows are printed as they come, so
// the widths cannot be measured as a table's are.
const (
	followIDWidth   = 26
	followTypeWidth = 26
)

// eventsFollow prints each new event once, in feed order, until ctx ends
// (Ctrl-C, SIGTERM: not an error), --limit events were printed, or the
// registry refuses for good. The poller keeps the marker of the last event
// printed, so a poll that fails — the registry restarting, the network
// gone — is retried from the same place: nothing is printed twice and
// nothing is skipped.
func (r *runner) eventsFollow(ctx context.Context) error {
	p := r.c.NewEventPoller(r.cfg.After, r.cfg.PageSize)
	// Without --after, "new" means after what the feed holds when the
	// first poll succeeds; that poll's events are skipped.
	primed := r.cfg.After != ""
	if primed {
		if err := r.followHeader(); err != nil {
			return err
		}
	}
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(followRetryFirst),
		backoff.WithMaxInterval(followRetryMax),
		backoff.WithMaxElapsedTime(0), // a person stops it, not a timer
	)
	printed := 0
	failing := false
	for {
		events, err := p.Poll(ctx)
		if primed {
			for _, e := range events {
				if err := r.followEvent(e); err != nil {
					return err
				}
				printed++
				if r.cfg.Limit > 0 && printed >= r.cfg.Limit {
					return nil
				}
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !retryable(err) {
				return err
			}
			d := bo.NextBackOff()
			r.warnf("warning: following events: %v; retrying in %s", err, d.Round(10*time.Millisecond))
			failing = true
			if !sleep(ctx, d) {
				return nil
			}
			continue
		}
		if !primed {
			primed = true
			if err := r.followHeader(); err != nil {
				return err
			}
		}
		if failing {
			failing = false
			bo.Reset()
			if m := p.Marker(); m != "" {
				r.warnf("note: registry reachable again; following resumes after event %s", m)
			} else {
				r.warnf("note: registry reachable again; following resumes")
			}
		}
		if !sleep(ctx, r.cfg.Interval) {
			return nil
		}
	}
}

// retryable says whether following should try a failed poll again: any
// transient failure, which includes a 401 that the client's own
// re-authentication did not cure (a token purged again between the new
// login and the retry, as when the registry restarts twice in a row); the
// next poll logs in anew. A 401 from the identity endpoint itself, from
// whichever frontend, means the credentials are wrong, which waiting does
// not change.
func retryable(err error) bool { return srapi.IsTransient(err) }

// sleep waits d, or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// followHeader prints the column names once, in table output. It is also
// the sign that following has started: events from then on are printed.
func (r *runner) followHeader() error {
	if r.jsonOutput() {
		return nil
	}
	return r.followLine(eventHeader[0], eventHeader[1], eventHeader[2], eventHeader[3])
}

// followEvent prints one event: a line of JSON, or a row with the local
// time (an age would always read "0s ago").
func (r *runner) followEvent(e api.Event) error {
	if r.jsonOutput() {
		return writeJSONLine(r.stdout, e)
	}
	return r.followLine(e.ID, localTime(e.Timestamp), e.Type, eventDetails(e))
}

func (r *runner) followLine(id, when, typ, details string) error {
	_, err := fmt.Fprintf(r.stdout, "%-*s  %-*s  %-*s  %s\n",
		followIDWidth, cell(id), len(timeLayout), cell(when), followTypeWidth, cell(typ), cell(details))
	if err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
