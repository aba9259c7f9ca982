// Package srapi is the HTTP client of the Service Registry API v1.0
// (sessions edition, docs/sr-api-v1.md) and the wrapper's HTTP backend.
//
// It has two layers:
//
//   - Client speaks every call of the reference: identity authentication,
//     sessions, services, configuration, the events feed (with a poller),
//     limits and the overview view, with pagination helpers (Each, All).
//     Other tools of the repository (srctl, tests) use it directly.
//   - Registry implements registry.Registry and registry.Session on top of a
//     Client for the wrapper: it chains heartbeat tokens, maps the API's
//     faults onto registry.ErrSessionLost, ErrServiceExists and ErrPermanent,
//     and ends a session by deleting it (or its services, where a server
//     lacks session deletion).
//
// The client authenticates lazily on the first call, re-authenticates once
// on a 401 and retries the call once, reuses HTTP/1.1 connections (one
// transport; heartbeats and event polling stay on one socket), verifies TLS
// unless told otherwise (against a private CA and with a client certificate
// when TLSFiles say so, loaded at the first connection), and bounds every
// request in time. In debug mode it logs every HTTP transaction with tokens
// and the API key redacted; the API key never appears in a log line or an
// error.
//
// A registry may be given as several frontends that share its state. A
// call then goes to the frontend in use and, on no reply, a timeout or a
// 5xx, on to the next, once each; the client sticks to the frontend that
// works (see Client). Sessions and their token chains carry over, since
// they live in the registry.
//
// It is not a retry policy: apart from trying each frontend once, a failed
// call is returned at once, classified by IsTransient and IsPermanent (a
// certificate that does not verify is a permanent TLSError), and the caller
// (the heartbeat loop, the wrapper's registration) decides when to try
// again.
package srapi
