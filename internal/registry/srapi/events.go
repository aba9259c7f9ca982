package srapi

import (
	"context"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
)

// EventPoller follows the events feed: each Poll returns the events that
// arrived since the previous one, following next_marker across pages. It
// is not safe for concurrent use.
type EventPoller struct {
	list  PageFunc[api.Event]
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
	return &EventPoller{list: c.ListEvents, marker: marker, last: marker, limit: pageSize}
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
		l, err := p.list(ctx, opts)
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
		// The end of the feed; or a server that points next_marker at the
		// last event it returned rather than past it, and would hand back
		// the same page again.
		if next == nil || *next == "" || *next == opts.Marker {
			return out, nil
		}
		// A page with nothing new ends the poll only when next_marker
		// leads nowhere past the last event seen: with a page size of 1,
		// the page at the (inclusive) marker holds nothing but the event
		// already handed out, and the new ones are on the next page.
		if added == 0 && *next == p.last {
			return out, nil
		}
		opts.Marker = *next
	}
}
