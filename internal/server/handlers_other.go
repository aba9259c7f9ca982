package server

import (
	"net/http"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
)

// Rate limits are reported, not enforced: the hosted service's daily
// allowance (500,000 requests) is below what 100 sessions heartbeating every
// few seconds need, and enforcing it would break the wrapper's contract.
const (
	rateLimit  = 500000
	rateWindow = "24.0 hours"
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
	tenantID, ok := s.ids.check(cred.Username, cred.APIKey)
	if !ok {
		c.fault(http.StatusUnauthorized, api.FaultUnauthorized, "Unable to authenticate user with credentials provided.",
			"unknown username or wrong API key")
		return
	}
	tok := s.ids.issue(cred.Username, tenantID, time.Now())
	base := c.baseURL()
	resp := api.AuthResponse{Access: api.Access{
		Token: api.Token{
			ID:      tok.id,
			Expires: formatExpires(tok.expires),
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
	listOf(c, func(v api.ConfigurationValue) string { return v.ID }, func(t *tenant) []api.ConfigurationValue {
		return t.configUnder(prefix)
	})
}

func (s *Server) getConfiguration(c *call, id string) {
	getOne(c, "ConfigurationValue", id, func(t *tenant) (api.ConfigurationValue, bool) {
		v, ok := t.config[id]
		return api.ConfigurationValue{ID: id, Value: v}, ok
	})
}

func (s *Server) setConfiguration(c *call, id string) {
	var req api.SetConfigurationRequest
	if !c.decode(&req) || !c.valid(api.ValidateConfigurationValue(req.Value)) {
		return
	}
	t := c.t
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.mu.Lock()
	old, existed := t.config[id]
	n := len(t.config)
	t.mu.Unlock()
	if !existed && n >= s.limits.ConfigurationValue {
		c.limitReached("configuration values", s.limits.ConfigurationValue)
		return
	}
	change := api.ConfigurationChange{ConfigurationValueID: id, NewValue: &req.Value}
	if existed {
		change.OldValue = &old
	}
	nowMS := time.Now().UnixMilli()
	err := s.store.commitTenant(c.r.Context(), t.id, func(tb *tenantBuckets) error {
		if err := tb.config.Put([]byte(id), []byte(req.Value)); err != nil {
			return err
		}
		_, err := appendEvent(tb, api.EventConfigurationUpdate, change, nowMS)
		return err
	})
	if err != nil {
		c.storeFailed("set the configuration value", err)
		return
	}
	t.mu.Lock()
	t.config[id] = req.Value
	t.mu.Unlock()
	c.noContent()
}

func (s *Server) deleteConfiguration(c *call, id string) {
	t := c.t
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.mu.Lock()
	old, ok := t.config[id]
	t.mu.Unlock()
	if !ok {
		c.notFound("ConfigurationValue", id)
		return
	}
	change := api.ConfigurationChange{ConfigurationValueID: id, OldValue: &old}
	nowMS := time.Now().UnixMilli()
	err := s.store.commitTenant(c.r.Context(), t.id, func(tb *tenantBuckets) error {
		if err := tb.config.Delete([]byte(id)); err != nil {
			return err
		}
		_, err := appendEvent(tb, api.EventConfigurationRemove, change, nowMS)
		return err
	})
	if err != nil {
		c.storeFailed("delete the configuration value", err)
		return
	}
	t.mu.Lock()
	delete(t.config, id)
	t.mu.Unlock()
	c.noContent()
}

// listEvents serves GET /events: from the marker on when one is given,
// else the last hour. Events come from the store, not memory.
func (s *Server) listEvents(c *call) {
	p, ok := c.pageParams()
	if !ok {
		return
	}
	from := p.marker
	if !p.hasMk {
		from = eventIDPrefix(time.Now().Add(-time.Hour).UnixMilli())
	}
	events, err := s.store.readEvents(c.t.id, from, p.limit)
	if err != nil {
		c.storeFailed("read the events", err)
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
	c.json(http.StatusOK, api.Limits{
		Resource: s.limits,
		Rate: map[string]api.RateLimit{
			"/.*": {Limit: rateLimit, Used: int(c.t.rateUsed.Load()), Window: rateWindow},
		},
	})
}

// overview serves GET /views/overview: one entry per session, paginated by
// session id.
func (s *Server) overview(c *call) {
	listOf(c, func(e api.OverviewEntry) string { return e.Session.ID }, func(t *tenant) []api.OverviewEntry {
		all := make([]api.OverviewEntry, 0, len(t.sessions))
		for _, sess := range t.sessions {
			if !sess.gone {
				all = append(all, api.OverviewEntry{Session: sess.view(), Services: sess.serviceViews()})
			}
		}
		return all
	})
}
