// Package server is the Service Registry API v1.0 server behind
// sr-registry: the HTTP handlers of every call of docs/sr-api-v1.md, the
// identity endpoint (POST /v2.0/tokens), session expiry, the events feed,
// and their durable store (bbolt, one file in the data dir).
//
// It is not a client (see internal/registry/srapi) and not a library of
// wire types (see internal/api, whose types and validation rules it uses
// for every body and every rule; a broken rule's text is a fault's details).
//
// # State and durability
//
// Every mutating call (create, update or delete of a session, service or
// configuration value, and the events they append) is committed to bbolt,
// fsync included, before it is answered, so it survives a kill -9 right
// after the reply. Concurrent mutations share transactions (group commit).
//
// Heartbeats are not written: last_seen and the heartbeat token chain live
// in memory only, which is what lets one process hold 10,000 sessions
// heartbeating. After a restart, each stored session comes back with a full
// fresh timeout (rather than all expiring at once), last_seen null, and an
// unknown token chain: its first heartbeat accepts any well-formed token
// and starts a new chain, since the client still holds a token from before
// the restart that the server can no longer check. Identity tokens also
// live in memory: after a restart clients get 401 and authenticate again,
// as the hosted service's clients always did when a token was purged.
//
// # Expiry
//
// A session whose last heartbeat (or creation) is older than its
// heartbeat_timeout is removed with its services within a fraction of a
// second, and exactly one services.timeout event lists those services.
// DELETE /sessions/{id} removes them at once without an event.
//
// # Identifiers
//
// Configuration ids are the URL path below /configuration with its leading
// slash: PUT /v1.0/{tenant}/configuration/production/cassandra/listen_ip
// sets the id "/production/cassandra/listen_ip", PUT /configuration/api_key
// sets "/api_key". A trailing slash names a namespace: GET
// /configuration/production/cassandra/ lists every value whose id starts
// with "/production/cassandra/", sub-namespaces included.
//
// Event ids are "<13-digit ms timestamp>-<12-digit sequence>": they sort
// lexicographically in insertion order (so ?marker= works), the sequence is
// stored per tenant in bbolt, and the timestamp never goes backwards, so ids
// never collide across restarts. Events are kept for EventRetention.
//
// Lists are ordered by id and paginated: limit 1..1000 (default 100),
// marker = the id of the first item of the page, next_marker and an
// absolute next_href that keeps the limit and the other query parameters.
//
// Every response carries the header X-Response-Id, which faults repeat as
// txnId.
package server
