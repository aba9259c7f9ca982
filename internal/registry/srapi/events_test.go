package srapi

import (
	"context"
	"slices"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
)

// eventFeed serves the events whose ids are in ids the way the API pages
// the feed: the marker is the first event of a page (inclusive) and
// next_marker the first event of the next one.
func eventFeed(ids *[]string, calls *int) PageFunc[api.Event] {
	return func(ctx context.Context, opts ListOptions) (*api.List[api.Event], error) {
		page, err := pagesOf(*ids, calls)(ctx, opts)
		if err != nil {
			return nil, err
		}
		l := &api.List[api.Event]{Metadata: page.Metadata}
		for _, id := range page.Values {
			l.Values = append(l.Values, api.Event{ID: id})
		}
		return l, nil
	}
}

func eventIDs(evs []api.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.ID)
	}
	return out
}

// TestEventPollerCrossesPages polls a feed, then polls again after new
// events arrived, for page sizes down to 1, where the page at the marker
// holds nothing but the event already handed out.
func TestEventPollerCrossesPages(t *testing.T) {
	tests := []struct {
		name      string
		marker    string
		limit     int
		want      []string
		wantCalls int
	}{
		{"from the start, pages of 2", "", 2, []string{"a", "b", "c", "d"}, 2},
		{"from the start, pages of 1", "", 1, []string{"a", "b", "c", "d"}, 4},
		{"from a marker, pages of 1", "b", 1, []string{"c", "d"}, 3},
		{"from a marker, pages of 2", "b", 2, []string{"c", "d"}, 2},
		{"from the last event", "d", 1, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ids := []string{"a", "b", "c", "d"}
			calls := 0
			p := &EventPoller{list: eventFeed(&ids, &calls), limit: tt.limit, marker: tt.marker, last: tt.marker}
			got, err := p.Poll(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(eventIDs(got), tt.want) || calls != tt.wantCalls {
				t.Fatalf("first poll: %v in %d calls, want %v in %d", eventIDs(got), calls, tt.want, tt.wantCalls)
			}
			if p.Marker() != "d" {
				t.Fatalf("Marker() = %q after the first poll, want d", p.Marker())
			}

			ids = append(ids, "e", "f", "g")
			if got, err = p.Poll(context.Background()); err != nil {
				t.Fatal(err)
			}
			if want := []string{"e", "f", "g"}; !slices.Equal(eventIDs(got), want) {
				t.Fatalf("second poll: %v, want %v", eventIDs(got), want)
			}
			if got, err = p.Poll(context.Background()); err != nil || len(got) != 0 {
				t.Fatalf("idle poll: %v, %v", eventIDs(got), err)
			}
		})
	}
}

// TestEventPollerStopsWhenNextMarkerRepeats plays a server that points
// next_marker at the last event it returned rather than past it.
func TestEventPollerStopsWhenNextMarkerRepeats(t *testing.T) {
	calls := 0
	last := func(_ context.Context, opts ListOptions) (*api.List[api.Event], error) {
		calls++
		id := "e1"
		return &api.List[api.Event]{Values: []api.Event{{ID: id}}, Metadata: api.ListMetadata{NextMarker: &id}}, nil
	}
	p := &EventPoller{list: last}
	got, err := p.Poll(context.Background())
	if err != nil || !slices.Equal(eventIDs(got), []string{"e1"}) || calls != 2 {
		t.Fatalf("first poll: %v, %v in %d calls; want [e1] in 2", eventIDs(got), err, calls)
	}
	calls = 0
	if got, err = p.Poll(context.Background()); err != nil || len(got) != 0 || calls != 1 {
		t.Fatalf("second poll: %v, %v in %d calls; want nothing in 1", eventIDs(got), err, calls)
	}
}
