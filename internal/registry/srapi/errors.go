package srapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

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
	// retryAfter is the reply's Retry-After, 0 when it had none.
	retryAfter time.Duration
}

// RetryAfter is how long the reply asked the client to wait before trying
// again (its Retry-After header: a rate limit, a busy identity service, a
// registry unavailable for now), 0 when it did not say.
func (e *APIError) RetryAfter() time.Duration { return e.retryAfter }

// maxRetryAfter bounds what a Retry-After is taken for: a day, the longest
// window of the hosted service's limits. Callers bound it further.
const maxRetryAfter = 24 * time.Hour

// parseRetryAfter reads a Retry-After header (RFC 9110: whole seconds, or
// an HTTP date) as a wait from now; 0 for none, a wait already over, or
// one that does not parse.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if strings.TrimLeft(v, "0123456789") == "" {
		if len(v) > 6 { // more than 11 days: past the bound anyway
			return maxRetryAfter
		}
		n, _ := strconv.Atoi(v)
		return min(time.Duration(n)*time.Second, maxRetryAfter)
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	return min(max(at.Sub(now), 0), maxRetryAfter)
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

// FrontendsError is a call to a registry of several frontends that failed
// on every frontend it tried. It is only returned for a list of frontends:
// with one, the call's own error is.
type FrontendsError struct {
	// Errs are the failures in the order tried, one per frontend: each a
	// *TransportError (no reply) or an *APIError (a 5xx); the last may be
	// the end of the caller's context.
	Errs []error
	// Frontends is the number of frontends; fewer were tried when the
	// caller's context ended first.
	Frontends int
}

// Error names every frontend tried with its failure:
// "all 2 registry frontends failed: GET http://a/...: ...; GET http://b/...: ...".
func (e *FrontendsError) Error() string {
	var b strings.Builder
	if len(e.Errs) >= e.Frontends {
		fmt.Fprintf(&b, "all %d registry frontends failed: ", e.Frontends)
	} else {
		fmt.Fprintf(&b, "%d of %d registry frontends tried, and failed: ", len(e.Errs), e.Frontends)
	}
	for i, err := range e.Errs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

func (e *FrontendsError) Unwrap() []error { return e.Errs }

// IsTransient reports whether err is worth retrying: a transport failure
// (but not the caller's own cancellation, nor a TLS failure), a timeout, or
// a reply that APIError.Transient says is (a 5xx, a 429, a rate limit
// fault, a registry's 401). A call that failed on several frontends is
// transient when any of its failures is.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if fe, ok := errors.AsType[*FrontendsError](err); ok {
		return slices.ContainsFunc(fe.Errs, IsTransient)
	}
	if _, ok := errors.AsType[*TLSError](err); ok {
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

// IsPermanent reports whether err is a failure that retrying cannot
// change: a 4xx reply that APIError.Transient does not take back (bad
// request, bad credentials, forbidden, not found...), or a *TLSError (a
// certificate that does not verify, TLS files that do not load), which is
// a configuration error. A call that failed on several frontends is
// permanent when all of its failures are.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	if fe, ok := errors.AsType[*FrontendsError](err); ok {
		return len(fe.Errs) > 0 && !slices.ContainsFunc(fe.Errs, func(e error) bool { return !IsPermanent(e) })
	}
	if _, ok := errors.AsType[*TLSError](err); ok {
		return true
	}
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
