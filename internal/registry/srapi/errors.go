package srapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
)

// APIError is a call that got an HTTP reply with an error status. Fault is
// the decoded fault body; when the body was not a fault, Fault.Type is
// empty and Fault.Message holds the start of the body.
type APIError struct {
	Method string
	URL    string
	Status int
	Fault  api.Fault

	// fromRegistry is set for replies of the registry, as opposed to
	// those of the identity service: only the latter's 401 means bad
	// credentials.
	fromRegistry bool
}

// Error reads like
// "POST http://h/v1.0/t/services: 400 serviceWithThisIdExists: message (details) [txnId x]".
func (e *APIError) Error() string {
	s := fmt.Sprintf("%s %s: %d", e.Method, e.URL, e.Status)
	if e.Fault.Type != "" {
		s += " " + e.Fault.Type
	} else {
		s += " " + http.StatusText(e.Status)
	}
	if e.Fault.Message != "" {
		s += ": " + e.Fault.Message
	}
	if e.Fault.Details != "" {
		s += " (" + e.Fault.Details + ")"
	}
	if e.Fault.TxnID != "" {
		s += " [txnId " + e.Fault.TxnID + "]"
	}
	return s
}

// Transient reports whether retrying the same call later may succeed:
// server failures (5xx), throttling (429, 400 rateLimitReached), request
// timeouts (408), and a 401 from the registry. The client has then already
// re-authenticated and the registry refused even the new token, which is
// what a registry restarted once more in between does (it forgets every
// token); the credentials were good, since the identity service took them.
// A 401 from the identity service is bad credentials, and not transient.
func (e *APIError) Transient() bool {
	switch {
	case e.Status >= 500:
		return true
	case e.Status == http.StatusTooManyRequests, e.Status == http.StatusRequestTimeout:
		return true
	case e.Fault.Type == api.FaultRateLimitReached:
		return true
	case e.Status == http.StatusUnauthorized && e.fromRegistry:
		return true
	}
	return false
}

// TransportError is a call that got no HTTP reply: the connection was
// refused, reset or timed out, or the reply could not be read.
type TransportError struct {
	Method string
	URL    string
	Err    error
}

func (e *TransportError) Error() string { return e.Method + " " + e.URL + ": " + e.Err.Error() }

func (e *TransportError) Unwrap() error { return e.Err }

// IsTransient reports whether err is worth retrying: a transport failure
// (but not the caller's own cancellation), a timeout, or a reply that
// APIError.Transient says is (a 5xx, a 429, a rate limit fault, a
// registry's 401).
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if ae, ok := errors.AsType[*APIError](err); ok {
		return ae.Transient()
	}
	if _, ok := errors.AsType[*TransportError](err); ok {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// IsPermanent reports whether err is a reply that retrying cannot change:
// a 4xx that APIError.Transient does not take back (bad request, bad
// credentials, forbidden, not found...).
func IsPermanent(err error) bool {
	ae, ok := errors.AsType[*APIError](err)
	return ok && ae.Status >= 400 && ae.Status < 500 && !ae.Transient()
}

// IsNotFound reports whether err is a 404 reply.
func IsNotFound(err error) bool { return StatusCode(err) == http.StatusNotFound }

// HasFault reports whether err is a reply carrying a fault of the given
// type, e.g. api.FaultServiceWithThisIDExists.
func HasFault(err error, faultType string) bool {
	ae, ok := errors.AsType[*APIError](err)
	return ok && ae.Fault.Type == faultType
}

// StatusCode returns the HTTP status of an *APIError in err's chain, or 0.
func StatusCode(err error) int {
	if ae, ok := errors.AsType[*APIError](err); ok {
		return ae.Status
	}
	return 0
}
