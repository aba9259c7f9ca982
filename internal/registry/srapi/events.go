package srapi

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
)

// EventPoller follows the events feed: each Poll returns the events that
// arrived since the previous one, following next_marker across pages. It
// is not safe for concurrent use.
type EventPoller struct {
	c     *Client
	limit int
	// marker is where the next poll starts. The feed's marker is
	// inclusive, so it is the id of the last event handed out, which the
	// next poll then drops (last).
	marker string
	last   string
}

// NewEventPoller returns a poller that starts after the event whose id is
// marker (as returned by Marker, saved from an earlier poller) or, with "",
// at the events of the last hour. pageSize is the limit of each request;
// 0 means the server's default.
func (c *Client) NewEventPoller(marker string, pageSize int) *EventPoller {
	return &EventPoller{c: c, marker: marker, last: marker, limit: pageSize}
}

// Marker is where the next Poll starts: the id of the last event handed
// out, or the starting marker before any. Save it to resume later.
func (p *EventPoller) Marker() string { return p.marker }

// Poll returns the events that arrived since the last poll, in feed order,
// fetching as many pages as needed. On error it returns the events it got
// before the error; the poller has advanced past them.
func (p *EventPoller) Poll(ctx context.Context) ([]api.Event, error) {
	var out []api.Event
	opts := ListOptions{Marker: p.marker, Limit: p.limit}
	for {
		l, err := p.c.ListEvents(ctx, opts)
		if err != nil {
			return out, err
		}
		added := 0
		for _, e := range l.Values {
			if p.last != "" && e.ID == p.last {
				continue
			}
			out = append(out, e)
			p.last = e.ID
			added++
		}
		if p.last != "" {
			p.marker = p.last
		}
		next := l.Metadata.NextMarker
		// A server may point next_marker at the last event it returned
		// rather than past it; a page with nothing new ends the poll.
		if next == nil || *next == "" || *next == opts.Marker || added == 0 {
			return out, nil
		}
		opts.Marker = *next
	}
}

// Follow polls every interval and calls fn for each new event, until ctx
// ends (it then returns ctx's error), fn returns an error (returned as
// is), or a poll fails permanently. Transient failures are logged and the
// next poll tries again from where the last one stopped.
func (p *EventPoller) Follow(ctx context.Context, interval time.Duration, fn func(api.Event) error) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		events, err := p.Poll(ctx)
		for _, e := range events {
			if ferr := fn(e); ferr != nil {
				return ferr
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !IsTransient(err) {
				return err
			}
			p.c.log.Warn("poll events", zap.Error(err))
		}
		t.Reset(interval)
	}
}
