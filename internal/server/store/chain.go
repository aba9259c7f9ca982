package store

import "github.com/google/uuid"

// Chain is a session's heartbeat token chain: the token the next heartbeat
// must carry, and the one before it.
type Chain struct {
	Cur, Prev uuid.UUID
	HasPrev   bool
	// Unknown: the chain was lost (a bbolt session restored after a
	// restart), so the next heartbeat's token is taken as it comes.
	Unknown bool
}

// Advance applies a heartbeat carrying got, with next the token to issue
// if the chain moves on. The current token (or any token, when the chain
// is unknown) advances the chain and is answered with next; the previous
// token (a retry whose reply was lost) is answered with the current one
// again and leaves the chain as it is; anything else is ErrTokenMismatch.
//
// Refusing every token of an unknown chain would make every client of a
// restarted bbolt server recreate its session and re-register its services,
// which is exactly what restoring sessions is meant to avoid.
func (c Chain) Advance(got, next uuid.UUID) (Chain, uuid.UUID, error) {
	switch {
	case c.Unknown || got == c.Cur:
		return Chain{Cur: next, Prev: got, HasPrev: true}, next, nil
	case c.HasPrev && got == c.Prev:
		return c, c.Cur, nil
	}
	return c, uuid.UUID{}, ErrTokenMismatch
}
