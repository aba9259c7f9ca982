package api

import (
	"encoding/json"
	"fmt"
)

// Session is a heartbeated context that owns services.
type Session struct {
	ID               string            `json:"id"`
	HeartbeatTimeout int               `json:"heartbeat_timeout"`
	Metadata         map[string]string `json:"metadata"`
	// LastSeen is the time of the last heartbeat in ms since the epoch, nil
	// before the first one.
	LastSeen *int64 `json:"last_seen"`
}

// CreateSessionRequest is the body of POST /sessions.
type CreateSessionRequest struct {
	HeartbeatTimeout int               `json:"heartbeat_timeout"`
	Metadata         map[string]string `json:"metadata,omitempty"`
}

// UpdateSessionRequest is the body of PUT /sessions/{id}; nil fields are left
// unchanged.
type UpdateSessionRequest struct {
	HeartbeatTimeout *int              `json:"heartbeat_timeout,omitempty"`
	Metadata         map[string]string `json:"metadata,omitempty"`
}

// HeartbeatToken is the body of POST /sessions/{id}/heartbeat, of its reply,
// and of the reply to POST /sessions.
type HeartbeatToken struct {
	Token string `json:"token"`
}

// Service is a registered instance of a program, owned by one session.
type Service struct {
	ID        string            `json:"id"`
	SessionID string            `json:"session_id"`
	Tags      []string          `json:"tags"`
	Metadata  map[string]string `json:"metadata"`
}

// CreateServiceRequest is the body of POST /services.
type CreateServiceRequest struct {
	ID        string            `json:"id"`
	SessionID string            `json:"session_id"`
	Tags      []string          `json:"tags,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
}

// UpdateServiceRequest is the body of PUT /services/{id}; nil fields are left
// unchanged.
type UpdateServiceRequest struct {
	Tags     []string          `json:"tags,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// ConfigurationValue is one configuration entry.
type ConfigurationValue struct {
	ID    string `json:"id"`
	Value string `json:"value"`
}

// SetConfigurationRequest is the body of PUT /configuration/{id}.
type SetConfigurationRequest struct {
	Value string `json:"value"`
}

// Event types of the events feed.
const (
	EventServiceJoin         = "service.join"
	EventServicesTimeout     = "services.timeout"
	EventConfigurationUpdate = "configuration_value.update"
	EventConfigurationRemove = "configuration_value.remove"
)

// Event is one entry of the events feed. Payload depends on Type: a Service
// for service.join, a list of services for services.timeout, a
// ConfigurationChange for the configuration events.
type Event struct {
	ID        string          `json:"id"`
	Timestamp int64           `json:"timestamp"`
	Type      string          `json:"type"`
	Payload   json.RawMessage `json:"payload"`
}

// ConfigurationChange is the payload of configuration_value.update and
// configuration_value.remove events. NewValue is absent on remove.
type ConfigurationChange struct {
	ConfigurationValueID string  `json:"configuration_value_id"`
	OldValue             *string `json:"old_value"`
	NewValue             *string `json:"new_value,omitempty"`
}

// ListMetadata describes one page of a list.
type ListMetadata struct {
	Count      int     `json:"count"`
	Limit      int     `json:"limit"`
	Marker     *string `json:"marker"`
	NextMarker *string `json:"next_marker"`
	NextHref   *string `json:"next_href"`
}

// List is one page of a list response.
type List[T any] struct {
	Values   []T          `json:"values"`
	Metadata ListMetadata `json:"metadata"`
}

// OverviewEntry is one element of GET /views/overview.
type OverviewEntry struct {
	Session  Session   `json:"session"`
	Services []Service `json:"services"`
}

// Limits is the body of GET /limits.
type Limits struct {
	Resource ResourceLimits       `json:"resource"`
	Rate     map[string]RateLimit `json:"rate"`
}

// ResourceLimits are the per-account resource limits.
type ResourceLimits struct {
	Session            int `json:"session"`
	Service            int `json:"service"`
	ConfigurationValue int `json:"configuration_value"`
}

// RateLimit is one rate limit window and its use.
type RateLimit struct {
	Limit  int    `json:"limit"`
	Used   int    `json:"used"`
	Window string `json:"window"`
}

// Pagination defaults and bounds.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// Fault types and their HTTP status codes.
const (
	FaultBadRequest              = "badRequest"
	FaultServiceWithThisIDExists = "serviceWithThisIdExists"
	FaultInvalidLimit            = "invalidLimit"
	FaultLimitReached            = "limitReached"
	FaultRateLimitReached        = "rateLimitReached"
	FaultUnauthorized            = "unauthorizedError"
	FaultForbidden               = "forbiddenError"
	FaultNotFound                = "notFoundError"
	FaultRequestTooLarge         = "requestTooLargeError"
	FaultInternal                = "internalError"
	FaultNotImplemented          = "notImplementedError"
	FaultSystemFailure           = "systemFailureError"
)

// Fault is the error body of every failed API call. It implements error so
// that clients can return it as is.
type Fault struct {
	Type    string `json:"type"`
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details string `json:"details"`
	TxnID   string `json:"txnId"`
}

func (f *Fault) Error() string {
	s := fmt.Sprintf("%d %s: %s", f.Code, f.Type, f.Message)
	if f.Details != "" {
		s += " (" + f.Details + ")"
	}
	if f.TxnID != "" {
		s += " [txnId " + f.TxnID + "]"
	}
	return s
}
