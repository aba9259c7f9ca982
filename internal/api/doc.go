// Package api holds the wire types and validation rules of the Service
// Registry API v1.0 (sessions edition), as described in docs/sr-api-v1.md.
//
// It is shared by the server (internal/server), the HTTP client
// (internal/registry/srapi) and the wrapper's flag validation, so that all
// three agree on one definition of a valid id, tag or metadata map. It does
// no I/O.
package api
