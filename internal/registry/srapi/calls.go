package srapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
)

// ListOptions select one page of a list.
type ListOptions struct {
	// Limit is the page size, 1..1000; 0 means the server's default (100).
	Limit int
	// Marker is the id of the first item of the page; "" starts at the
	// beginning (for events: an hour ago).
	Marker string
	// Tag filters services by tag. Only ListServices uses it.
	Tag string
}

func (o ListOptions) query(withTag bool) url.Values {
	q := url.Values{}
	if o.Limit != 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Marker != "" {
		q.Set("marker", o.Marker)
	}
	if withTag && o.Tag != "" {
		q.Set("tag", o.Tag)
	}
	return q
}

// Sessions

// CreateSession opens a session and returns its id (from the Location
// header) and the token for its first heartbeat.
func (c *Client) CreateSession(ctx context.Context, req api.CreateSessionRequest) (id, token string, err error) {
	var reply api.HeartbeatToken
	hdr, err := c.do(ctx, http.MethodPost, "/sessions", nil, req, &reply)
	if err != nil {
		return "", "", err
	}
	id, err = idFromLocation(hdr.Get("Location"))
	if err != nil {
		return "", "", fmt.Errorf("POST /sessions: %w", err)
	}
	if reply.Token == "" {
		return "", "", fmt.Errorf("POST /sessions: session %s created without a heartbeat token", id)
	}
	return id, reply.Token, nil
}

// GetSession returns one session.
func (c *Client) GetSession(ctx context.Context, id string) (*api.Session, error) {
	var s api.Session
	if _, err := c.do(ctx, http.MethodGet, "/sessions/"+url.PathEscape(id), nil, nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// ListSessions returns one page of sessions.
func (c *Client) ListSessions(ctx context.Context, opts ListOptions) (*api.List[api.Session], error) {
	var l api.List[api.Session]
	if _, err := c.do(ctx, http.MethodGet, "/sessions", opts.query(false), nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// UpdateSession changes a session's heartbeat timeout and/or metadata.
func (c *Client) UpdateSession(ctx context.Context, id string, req api.UpdateSessionRequest) error {
	_, err := c.do(ctx, http.MethodPut, "/sessions/"+url.PathEscape(id), nil, req, nil)
	return err
}

// Heartbeat extends a session with the current token and returns the
// token for the next heartbeat. Sending the previous token again (a retry
// whose reply was lost) gets the same reply again.
func (c *Client) Heartbeat(ctx context.Context, id, token string) (next string, err error) {
	var reply api.HeartbeatToken
	path := "/sessions/" + url.PathEscape(id) + "/heartbeat"
	if _, err := c.do(ctx, http.MethodPost, path, nil, api.HeartbeatToken{Token: token}, &reply); err != nil {
		return "", err
	}
	if reply.Token == "" {
		return "", fmt.Errorf("POST %s: reply has no token", path)
	}
	return reply.Token, nil
}

// DeleteSession ends a session and removes its services at once (an
// extension of sr-registry; other servers may answer 404, 405 or 501).
func (c *Client) DeleteSession(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, "/sessions/"+url.PathEscape(id), nil, nil, nil)
	return err
}

// Services

// CreateService registers a service in a session and returns its id, as
// the Location header names it.
func (c *Client) CreateService(ctx context.Context, req api.CreateServiceRequest) (string, error) {
	hdr, err := c.do(ctx, http.MethodPost, "/services", nil, req, nil)
	if err != nil {
		return "", err
	}
	id, err := idFromLocation(hdr.Get("Location"))
	if err != nil {
		return "", fmt.Errorf("POST /services: %w", err)
	}
	return id, nil
}

// GetService returns one service.
func (c *Client) GetService(ctx context.Context, id string) (*api.Service, error) {
	var s api.Service
	if _, err := c.do(ctx, http.MethodGet, "/services/"+url.PathEscape(id), nil, nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// ListServices returns one page of services, only those tagged opts.Tag
// when it is set.
func (c *Client) ListServices(ctx context.Context, opts ListOptions) (*api.List[api.Service], error) {
	var l api.List[api.Service]
	if _, err := c.do(ctx, http.MethodGet, "/services", opts.query(true), nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// UpdateService changes a service's tags and/or metadata.
func (c *Client) UpdateService(ctx context.Context, id string, req api.UpdateServiceRequest) error {
	_, err := c.do(ctx, http.MethodPut, "/services/"+url.PathEscape(id), nil, req, nil)
	return err
}

// DeleteService removes a service; its session lives on.
func (c *Client) DeleteService(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, "/services/"+url.PathEscape(id), nil, nil, nil)
	return err
}

// Configuration

// configPath maps a configuration id to its URL path as the API's clients
// build it, "/configuration/" + id with each segment escaped, so that the
// server returns the id as written: "/production/cassandra/listen_ip" is
// /configuration//production/cassandra/listen_ip, "api_key" is
// /configuration/api_key.
func configPath(id string) string {
	segs := strings.Split(id, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/configuration/" + strings.Join(segs, "/")
}

// SetConfiguration creates or replaces a configuration value. The id is
// kept as written: "api_key" and "/api_key" are two ids, while
// "production/cassandra/listen_ip" (no leading slash, inner slashes) can
// only mean "/production/cassandra/listen_ip".
func (c *Client) SetConfiguration(ctx context.Context, id, value string) error {
	_, err := c.do(ctx, http.MethodPut, configPath(id), nil, api.SetConfigurationRequest{Value: value}, nil)
	return err
}

// GetConfiguration returns one configuration value.
func (c *Client) GetConfiguration(ctx context.Context, id string) (*api.ConfigurationValue, error) {
	var v api.ConfigurationValue
	if _, err := c.do(ctx, http.MethodGet, configPath(id), nil, nil, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// DeleteConfiguration removes a configuration value.
func (c *Client) DeleteConfiguration(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, configPath(id), nil, nil, nil)
	return err
}

// ListConfiguration returns one page of all configuration values.
func (c *Client) ListConfiguration(ctx context.Context, opts ListOptions) (*api.List[api.ConfigurationValue], error) {
	var l api.List[api.ConfigurationValue]
	if _, err := c.do(ctx, http.MethodGet, "/configuration", opts.query(false), nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// ListConfigurationNamespace returns one page of the values under a
// namespace and its sub-namespaces, e.g. "/production/cassandra/" (the
// trailing slash is added when missing).
func (c *Client) ListConfigurationNamespace(ctx context.Context, namespace string, opts ListOptions) (*api.List[api.ConfigurationValue], error) {
	p := configPath(strings.TrimSuffix(namespace, "/")) + "/"
	var l api.List[api.ConfigurationValue]
	if _, err := c.do(ctx, http.MethodGet, p, opts.query(false), nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// Events, limits, views

// ListEvents returns one page of the events feed: from opts.Marker on
// (inclusive), or the last hour's events without a marker.
func (c *Client) ListEvents(ctx context.Context, opts ListOptions) (*api.List[api.Event], error) {
	var l api.List[api.Event]
	if _, err := c.do(ctx, http.MethodGet, "/events", opts.query(false), nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// Limits returns the account's resource limits and rate limit use.
func (c *Client) Limits(ctx context.Context) (*api.Limits, error) {
	var l api.Limits
	if _, err := c.do(ctx, http.MethodGet, "/limits", nil, nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// Overview returns one page of the overview view: each session with its
// services. A server that answers with a bare array (no pagination) gets
// it wrapped as a single page.
func (c *Client) Overview(ctx context.Context, opts ListOptions) (*api.List[api.OverviewEntry], error) {
	var raw json.RawMessage
	if _, err := c.do(ctx, http.MethodGet, "/views/overview", opts.query(false), nil, &raw); err != nil {
		return nil, err
	}
	var l api.List[api.OverviewEntry]
	if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '[' {
		if err := json.Unmarshal(t, &l.Values); err != nil {
			return nil, fmt.Errorf("GET /views/overview: decode reply: %w", err)
		}
		l.Metadata.Count = len(l.Values)
		return &l, nil
	}
	if err := json.Unmarshal(raw, &l); err != nil {
		return nil, fmt.Errorf("GET /views/overview: decode reply: %w", err)
	}
	return &l, nil
}

// idFromLocation returns the last path segment of a Location header, which
// is how the API tells a client the id of what it created.
func idFromLocation(loc string) (string, error) {
	if loc == "" {
		return "", fmt.Errorf("201 reply has no Location header")
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("parse Location %q: %w", loc, err)
	}
	p := strings.TrimRight(u.Path, "/")
	id := p[strings.LastIndexByte(p, '/')+1:]
	if id == "" {
		return "", fmt.Errorf("location %q names no id", loc)
	}
	return id, nil
}
