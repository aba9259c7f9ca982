package store

import (
	"fmt"
	"time"
)

// EventRetention is how long the events feed keeps an event. Without a
// marker GET /events shows the last hour; with one, whatever is still
// kept.
const EventRetention = 7 * 24 * time.Hour

// EventID is the id of the seq-th event of a tenant, committed at ts (unix
// ms): "<13-digit ts>-<12-digit seq>". Ids sort lexicographically in commit
// order as long as each tenant's ts never goes backwards (a store takes the
// maximum of its clock and the tenant's last event's) and seq grows with
// every event.
func EventID(ts int64, seq uint64) string { return fmt.Sprintf("%013d-%012d", ts, seq) }

// EventIDPrefix is the smallest event id at or after the time ms, for
// seeking to "the last hour" or pruning older events.
func EventIDPrefix(ms int64) string { return fmt.Sprintf("%013d-", ms) }
