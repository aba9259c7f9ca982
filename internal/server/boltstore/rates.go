package boltstore

import (
	"context"
	"maps"
	"time"
)

// ShareRequests implements store.Store. One process is the only one
// counting, so each tenant's total is its count: nothing is kept, and the
// counts are not persisted (a restart starts the window's counts afresh,
// as identity tokens are forgotten).
func (s *Store) ShareRequests(ctx context.Context, _ time.Time, _ time.Duration, counts map[string]int64) (map[string]int64, error) {
	if err := s.Ready(ctx); err != nil {
		return nil, err
	}
	return maps.Clone(counts), nil
}
