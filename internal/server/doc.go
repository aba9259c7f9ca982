// Package server is the Service Registry API v1.0 server behind
// sr-registry: the HTTP handlers of every call of docs/sr-api-v1.md and of
// the identity endpoint (POST /v2.0/tokens), their validation and faults,
// and authentication. The state lives in a store.Store (package
// internal/server/store): the bbolt store of one process
// (internal/server/boltstore, Config.DataDir) or etcd shared by any
// number of identical frontends (internal/server/etcdstore). Handlers
// never know which one runs.
//
// It is not a client (see internal/registry/srapi) and not a library of
// wire types (see internal/api, whose types and validation rules it uses
// for every body and every rule; a broken rule's text is a fault's details).
//
// # Durability and expiry
//
// Every mutating call is durable before it is answered; heartbeats keep a
// session alive; a session whose last heartbeat (or creation) is older
// than its heartbeat_timeout is removed with its services, with exactly
// one services.timeout event; DELETE /sessions/{id} removes them at once
// without an event. How each store keeps those promises is in its package
// documentation. A store that cannot answer (shutting down, or etcd out of
// quorum) gets 503 systemFailureError, which clients retry.
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
// Event ids are "<13-digit ms timestamp>-<12-digit sequence>"
// (store.EventID): they sort lexicographically in commit order (so
// ?marker= works). Events are kept for EventRetention.
//
// Lists are ordered by id and paginated: limit 1..1000 (default 100),
// marker = the id of the first item of the page, next_marker and an
// absolute next_href that keeps the limit and the other query parameters.
//
// Every response carries the header X-Response-Id, which faults repeat as
// txnId.
package server
