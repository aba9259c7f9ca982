package srapi

import (
	"context"
	"fmt"
	"iter"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
)

// PageFunc fetches one page of a list: the Client's List* methods, or a
// closure around ListConfigurationNamespace.
type PageFunc[T any] func(ctx context.Context, opts ListOptions) (*api.List[T], error)

// Each yields the items of a list from opts on, page after page, following
// next_marker until the server has no more. A failed page is yielded once
// as an error and ends the sequence.
//
//	for svc, err := range srapi.Each(ctx, c.ListServices, srapi.ListOptions{Tag: "db"}) { ... }
func Each[T any](ctx context.Context, page PageFunc[T], opts ListOptions) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for {
			l, err := page(ctx, opts)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, v := range l.Values {
				if !yield(v, nil) {
					return
				}
			}
			next := l.Metadata.NextMarker
			if next == nil || *next == "" {
				return
			}
			if *next == opts.Marker {
				// A server that hands back the marker it was given would
				// keep us here forever.
				var zero T
				yield(zero, fmt.Errorf("list pagination: next_marker %q repeats the current marker", *next))
				return
			}
			opts.Marker = *next
		}
	}
}

// All collects a list from opts on, following next_marker to the end, or
// up to max items when max > 0.
func All[T any](ctx context.Context, page PageFunc[T], opts ListOptions, max int) ([]T, error) {
	var out []T
	if max > 0 && (opts.Limit == 0 || opts.Limit > max) && max <= api.MaxListLimit {
		// No point in fetching more than asked for.
		opts.Limit = max
	}
	for v, err := range Each(ctx, page, opts) {
		if err != nil {
			return out, err
		}
		out = append(out, v)
		if max > 0 && len(out) >= max {
			break
		}
	}
	return out, nil
}
