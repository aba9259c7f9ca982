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
// Configuration ids are returned exactly as the client wrote them. Clients
// build the URL of a value as "/configuration/" + id, so PUT
// /configuration/configId sets "configId", and PUT
// /configuration//production/cassandra/listen_ip (the doubled slash is
// one) sets "/production/cassandra/listen_ip". An id without a leading
// slash holds no slash at all (the API's id rule), so
// /configuration/production/cassandra/listen_ip, with inner slashes but no
// doubled one, can only mean "/production/cassandra/listen_ip" and is read
// so. A trailing slash names a namespace, in either form: GET
// /configuration/production/cassandra/ and
// /configuration//production/cassandra/ both list every value whose id
// starts with "/production/cassandra/", sub-namespaces included.
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
//
// # Limits
//
// Accounts hold at most Config.Limits sessions, services and
// configuration values (400 limitReached beyond). Each tenant may make
// Config.RateLimit requests per window (internal/server/ratelimit; 400
// rateLimitReached beyond, with Retry-After); GET /limits shows both, and
// the window's count. Heartbeats are neither counted nor refused: a
// fleet's heartbeats alone can exceed the hosted service's daily
// allowance, and a tenant at its limit must not lose its sessions.
// Deletions of sessions and services (a wrapper deregistering as its child
// exits) and GET /limits are counted but never refused. With several
// frontends the count is shared through the store once a second, so a
// cluster may admit up to about frontends × one second of a tenant's
// traffic past the limit (docs/cluster.md).
//
// # What old clients read
//
// The identity reply carries what each old client takes the tenant from
// (see api.CatalogLegacyComputeName) and writes token.expires as the
// hosted service did, "2012-09-14T10:04:52.000-00:00", a form the Java
// client parses. PUT /sessions/{id} and PUT /services/{id} answer 204 with
// the object's Location, which the Node.js client reads. A body over
// Config.MaxBodyBytes is answered 413 before anything else is checked, and
// the connection is closed only after reading (a bounded amount of) the
// rest: clients that send the whole body before reading, such as Python's,
// see the 413 rather than a reset.
//
// # Authentication
//
// POST /v2.0/tokens checks a username and API key against the accounts
// (LoadCredentials; in dev mode any other username is its own tenant) and
// issues a token; every other call is checked against the token, a map
// lookup, and against the current accounts (a reload that removed the
// account, moved it to another tenant or changed its key ends its tokens:
// each token carries a stamp of the key it was issued under). A key kept as a
// bcrypt hash costs tens of milliseconds to verify, so (auth.go): a
// successful verification is cached for the accounts' generation
// (SetCredentials starts a new one), logins with the same key wait for the
// one verification under way, at most AuthLimits.Verifications run at once
// (beyond, after a short wait, 429 rateLimitReached with Retry-After), and
// each source address may fail only so many logins (AuthLimits.Failures).
// Keys, hashes and tokens are never logged nor written in a fault.
//
// # Metrics and probes
//
// GET /metrics is the Prometheus text format from a registry of the
// Server's own (see metrics.go for what each metric means, and
// docs/cluster.md for what they mean with several frontends); with
// Config.SeparateMetrics it is served only by ServeMetrics, on a listener
// of its own. Labels hold route patterns (routes.go), methods, status
// codes, event types and commit kinds, never anything a client sent. GET
// /healthz answers 200 while the process serves, GET /readyz 200 while the
// store answers (503 otherwise); neither needs a token.
//
// # Upgrading a data dir
//
// Data dirs written before schema 2 stored every id with a leading slash
// ("/configId" for PUT /configuration/configId). Opening one renames each
// single-segment id "/x" to "x", once, so that every value answers at the
// URL it was written to with the id its client wrote; ids of several
// segments were already stored as their URL names them. The events of
// before the upgrade keep the ids they were reported with. An older
// sr-registry refuses a data dir of schema 2.
//
// Dev tenant ids used to be 10-digit numbers, most above 2^31-1, which
// the Java client cannot hold. Today's DevTenantID is a function of the
// old id that keeps those below 2^31-1, so a dev server moves the state of
// every tenant with an old-form id (ten digits, at least 2147483647, named
// by no credential) to the new id at start, sequences included, and logs
// each move. A tenant whose new id already holds state is left where it
// is, with a warning: merging two tenants is not done behind the user's
// back.
package server
