package srapi

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
)

// pagesOf serves items in pages of opts.Limit (default 2), marker being
// the first item of a page, as the API paginates.
func pagesOf(items []string, calls *int) PageFunc[string] {
	return func(_ context.Context, opts ListOptions) (*api.List[string], error) {
		*calls++
		limit := opts.Limit
		if limit == 0 {
			limit = 2
		}
		start := 0
		if opts.Marker != "" {
			start = slices.Index(items, opts.Marker)
		}
		end := min(start+limit, len(items))
		l := &api.List[string]{Values: items[start:end]}
		if end < len(items) {
			l.Metadata.NextMarker = &items[end]
		}
		return l, nil
	}
}

func TestAllFollowsNextMarker(t *testing.T) {
	items := []string{"a", "b", "c", "d", "e"}
	tests := []struct {
		name      string
		opts      ListOptions
		max       int
		want      []string
		wantCalls int
	}{
		{"everything", ListOptions{}, 0, items, 3},
		{"from a marker", ListOptions{Marker: "c"}, 0, []string{"c", "d", "e"}, 2},
		{"up to max, page size shrinks to it", ListOptions{}, 1, []string{"a"}, 1},
		{"up to max across pages", ListOptions{Limit: 2}, 3, []string{"a", "b", "c"}, 2},
		{"big pages", ListOptions{Limit: 1000}, 0, items, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			got, err := All(context.Background(), pagesOf(items, &calls), tt.opts, tt.max)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) || calls != tt.wantCalls {
				t.Fatalf("got %v in %d calls, want %v in %d", got, calls, tt.want, tt.wantCalls)
			}
		})
	}
}

func TestEachStopsOnARepeatedMarker(t *testing.T) {
	stuck := func(_ context.Context, opts ListOptions) (*api.List[int], error) {
		m := "m"
		return &api.List[int]{Values: []int{1}, Metadata: api.ListMetadata{NextMarker: &m}}, nil
	}
	got, err := All(context.Background(), stuck, ListOptions{}, 0)
	if err == nil || !strings.Contains(err.Error(), "repeats") || len(got) != 2 {
		t.Fatalf("got %v, %v; want 2 items then a repeat error", got, err)
	}
}

func TestEachYieldsAPageError(t *testing.T) {
	failing := func(_ context.Context, opts ListOptions) (*api.List[int], error) {
		return nil, fmt.Errorf("boom")
	}
	n := 0
	for _, err := range Each(context.Background(), failing, ListOptions{}) {
		n++
		if err == nil {
			t.Fatal("want an error")
		}
	}
	if n != 1 {
		t.Fatalf("yielded %d times, want 1", n)
	}
}
