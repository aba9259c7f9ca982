package server

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/server/ratelimit"
	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

func (s *Server) authenticate(c *call) {
	var req api.AuthRequest
	if !c.decode(&req) {
		return
	}
	cred := req.Auth.APIKeyCredentials
	if cred == nil {
		c.fault(http.StatusBadRequest, api.FaultBadRequest, "Invalid request body",
			`the body must be {"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":"...","apiKey":"..."}}}`)
		return
	}
	src := sourceKey(c.r.RemoteAddr)
	acct, err := s.creds.Load().check(c.r.Context(), s.auth, src, cred.Username, cred.APIKey)
	var busy *busyError
	switch {
	case errors.As(err, &busy):
		// The name and the source, never the key.
		s.log.Debug("login refused for now", zap.String("username", truncate(cred.Username)),
			zap.String("source", src), zap.String("reason", busy.reason), zap.String("txn", c.txn))
		c.w.Header().Set("Retry-After", strconv.Itoa(int(max(1, busy.retryAfter.Round(time.Second)/time.Second))))
		c.fault(http.StatusTooManyRequests, api.FaultRateLimitReached, "Too many login attempts",
			busy.reason+"; retry after the Retry-After header's seconds")
		return
	case err != nil:
		s.log.Debug("login failed", zap.String("username", truncate(cred.Username)),
			zap.String("source", src), zap.String("txn", c.txn))
		c.fault(http.StatusUnauthorized, api.FaultUnauthorized, "Unable to authenticate user with credentials provided.",
			"unknown username or wrong API key")
		return
	}
	tenantID := acct.tenant
	tok, err := s.store.IssueToken(c.r.Context(), cred.Username, tenantID, acct.stamp)
	if err != nil {
		c.storeFault(err, "issue a token", "", "")
		return
	}
	base := c.baseURL()
	resp := api.AuthResponse{Access: api.Access{
		Token: api.Token{
			ID:      tok.ID,
			Expires: formatExpires(tok.Expires),
			Tenant:  api.Tenant{ID: tenantID, Name: tenantID},
		},
		User: api.User{
			ID:    cred.Username,
			Name:  cred.Username,
			Roles: []api.Role{{ID: "identity:default", Name: "identity:default"}},
		},
		// There is no compute service: the two compute entries are where
		// old clients read the tenant id from (see api.CatalogLegacyComputeName).
		ServiceCatalog: []api.CatalogEntry{
			{
				Name: api.CatalogLegacyComputeName,
				Type: "compute",
				Endpoints: []api.Endpoint{{
					TenantID:  tenantID,
					PublicURL: base + "/v1.0/" + tenantID,
				}},
			},
			{
				Name: api.CatalogComputeName,
				Type: "compute",
				Endpoints: []api.Endpoint{{
					TenantID:  tenantID,
					PublicURL: base + "/v2/" + tenantID,
					Region:    "LOCAL",
				}},
			},
			{
				Name: api.CatalogRegistryName,
				Type: api.CatalogRegistryType,
				Endpoints: []api.Endpoint{{
					TenantID:  tenantID,
					PublicURL: base + "/v1.0/" + tenantID,
					Region:    "LOCAL",
				}},
			},
		},
	}}
	c.json(http.StatusOK, resp)
}

// formatExpires writes a token's expiry as Rackspace's identity service
// did, with milliseconds and a numeric offset: "2012-09-14T10:04:52.000-05:00".
// The offset is "-00:00", RFC 3339's "UTC, local offset unknown": the Java
// client turns "-0H:00" into an RFC 822 zone before parsing and fails on
// anything else ("Z", "+00:00", "+01:00", "-10:00") with a
// NullPointerException at its next call.
func formatExpires(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000") + "-00:00"
}

func (s *Server) listConfiguration(c *call, prefix string) {
	all, err := s.store.ConfigValues(c.r.Context(), c.tenant, prefix)
	listOf(c, all, err, "configuration values", func(v api.ConfigurationValue) string { return v.ID })
}

func (s *Server) getConfiguration(c *call, id string) {
	v, err := s.store.ConfigValue(c.r.Context(), c.tenant, id)
	getOne(c, v, err, "ConfigurationValue", id)
}

func (s *Server) setConfiguration(c *call, id string) {
	var req api.SetConfigurationRequest
	if !c.decode(&req) || !c.valid(api.ValidateConfigurationValue(req.Value)) {
		return
	}
	if err := s.store.SetConfigValue(c.r.Context(), c.tenant, id, req.Value); err != nil {
		c.storeFault(err, "set the configuration value", "ConfigurationValue", id)
		return
	}
	c.noContent()
}

func (s *Server) deleteConfiguration(c *call, id string) {
	if err := s.store.DeleteConfigValue(c.r.Context(), c.tenant, id); err != nil {
		c.storeFault(err, "delete the configuration value", "ConfigurationValue", id)
		return
	}
	c.noContent()
}

// listEvents serves GET /events: from the marker on when one is given,
// else the last hour.
func (s *Server) listEvents(c *call) {
	p, ok := c.pageParams()
	if !ok {
		return
	}
	from := p.marker
	if !p.hasMk {
		from = store.EventIDPrefix(time.Now().Add(-time.Hour).UnixMilli())
	}
	events, err := s.store.Events(c.r.Context(), c.tenant, from, p.limit)
	if err != nil {
		c.storeFault(err, "read the events", "", "")
		return
	}
	var next string
	if len(events) > p.limit {
		next = events[p.limit].ID
		events = events[:p.limit]
	}
	listReply(c, events, p, next)
}

func (s *Server) getLimits(c *call) {
	l := s.rates.Limit()
	c.json(http.StatusOK, api.Limits{
		Resource: s.limits,
		Rate: map[string]api.RateLimit{
			"/.*": {Limit: int(l.Requests), Used: int(s.rates.Used(c.tenant)), Window: ratelimit.FormatWindow(l.Window)},
		},
	})
}

// admit counts the request against the tenant's rate limit, answering
// 400 rateLimitReached and returning false past it. rest is the path
// below the tenant. Heartbeats are neither counted nor refused: a
// fleet's heartbeats alone can exceed the hosted service's daily
// allowance, and a tenant at its limit must not lose its sessions.
// Deletions of sessions and services (a wrapper deregistering as its
// child exits) and GET /limits are counted but never refused.
func (s *Server) admit(c *call, rest string) bool {
	switch rateClassOf(c.r.Method, rest) {
	case rateExempt:
		return true
	case rateCountedOnly:
		s.rates.Count(c.tenant)
		return true
	}
	ok, next := s.rates.Take(c.tenant)
	if ok {
		return true
	}
	l := s.rates.Limit()
	wait := max(time.Until(next), 0)
	c.w.Header().Set("Retry-After", strconv.FormatInt(int64((wait+time.Second-1)/time.Second), 10))
	c.fault(http.StatusBadRequest, api.FaultRateLimitReached, "Rate limit has been reached",
		fmt.Sprintf("the account may make %d requests per %s; the next window starts at %s (in %s). "+
			"Heartbeats and deletions of sessions and services are still answered",
			l.Requests, ratelimit.FormatWindow(l.Window), next.UTC().Format(time.RFC3339), wait.Round(time.Second)))
	return false
}

// rateClass is how a request counts against the rate limit.
type rateClass int

const (
	rateLimited     rateClass = iota // counted, refused past the limit
	rateCountedOnly                  // counted, never refused
	rateExempt                       // neither
)

// rateClassOf classifies a request by method and path below the tenant,
// as serveTenant routes it.
func rateClassOf(method, rest string) rateClass {
	switch method {
	case http.MethodPost:
		// sessions/<id>/heartbeat, one trailing slash forgiven.
		id, ok := strings.CutPrefix(strings.TrimSuffix(rest, "/"), "sessions/")
		if ok && strings.HasSuffix(id, "/heartbeat") && strings.IndexByte(id, '/') == len(id)-len("/heartbeat") && len(id) > len("/heartbeat") {
			return rateExempt
		}
	case http.MethodDelete:
		if id, ok := strings.CutPrefix(rest, "sessions/"); ok && id != "" {
			return rateCountedOnly
		}
		if id, ok := strings.CutPrefix(rest, "services/"); ok && id != "" {
			return rateCountedOnly
		}
	case http.MethodGet:
		if rest == "limits" || rest == "limits/" {
			return rateCountedOnly
		}
	}
	return rateLimited
}

// overview serves GET /views/overview: one entry per session, paginated by
// session id.
func (s *Server) overview(c *call) {
	all, err := s.store.Overview(c.r.Context(), c.tenant)
	listOf(c, all, err, "sessions", func(e api.OverviewEntry) string { return e.Session.ID })
}
