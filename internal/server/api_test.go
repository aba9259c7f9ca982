package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/server"
)

func postTokens(t *testing.T, authURL string, body string) reply {
	t.Helper()
	c := &client{t: t, hc: http.DefaultClient}
	return c.do(http.MethodPost, authURL+"/v2.0/tokens", body)
}

func TestIdentityReplyHasWhatOldClientsRead(t *testing.T) {
	forEachStore(t, testIdentityReplyHasWhatOldClientsRead)
}

func testIdentityReplyHasWhatOldClientsRead(t *testing.T, st storeKind) {
	reg := st.start(t)
	r := postTokens(t, reg.AuthURL, `{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":"alice","apiKey":"whatever"}}}`).want(t, http.StatusOK)
	var ar api.AuthResponse
	r.decode(t, &ar)
	tok := ar.Access.Token
	if tok.ID == "" || tok.Tenant.ID == "" || tok.Tenant.Name != tok.Tenant.ID {
		t.Fatalf("token = %+v", tok)
	}
	exp, err := time.Parse(time.RFC3339, tok.Expires)
	if err != nil || exp.Before(time.Now().Add(23*time.Hour)) {
		t.Fatalf("expires %q: %v (want ISO 8601, about 24h ahead)", tok.Expires, err)
	}
	if tok.Tenant.ID != server.DevTenantID("alice") {
		t.Fatalf("tenant %q, want DevTenantID(alice) %q", tok.Tenant.ID, server.DevTenantID("alice"))
	}
	if ar.Access.User.Name != "alice" {
		t.Fatalf("user = %+v", ar.Access.User)
	}
	// The 2013 Node.js client reads the tenant only from the first compute
	// entry of the catalog.
	byName := map[string]api.CatalogEntry{}
	for _, e := range ar.Access.ServiceCatalog {
		byName[e.Name] = e
	}
	compute := byName[api.CatalogComputeName]
	if len(compute.Endpoints) == 0 || compute.Endpoints[0].TenantID != tok.Tenant.ID {
		t.Fatalf("compute entry = %+v", compute)
	}
	reg2 := byName[api.CatalogRegistryName]
	if reg2.Type != api.CatalogRegistryType || len(reg2.Endpoints) == 0 || reg2.Endpoints[0].PublicURL != reg.URL+"/"+tok.Tenant.ID {
		t.Fatalf("registry entry = %+v, want publicURL %s/%s", reg2, reg.URL, tok.Tenant.ID)
	}
	if got := ar.TenantID(); got != tok.Tenant.ID {
		t.Fatalf("TenantID() = %q", got)
	}
	// Stable per username, distinct between usernames, a plain path segment.
	for _, u := range []string{"bob", "user@example.com", "a/b c"} {
		id := reg.Authenticate(t, u)
		if id.TenantID == tok.Tenant.ID || id.TenantID != server.DevTenantID(u) || url.PathEscape(id.TenantID) != id.TenantID {
			t.Fatalf("tenant of %q = %q", u, id.TenantID)
		}
	}
}

func TestIdentityFaults(t *testing.T) {
	forEachStore(t, testIdentityFaults)
}

func testIdentityFaults(t *testing.T, st storeKind) {
	reg := st.start(t, registrytest.WithCredentials(server.Credential{Username: "ops", APIKey: "key1", Tenant: "t1"}))
	tests := []struct {
		name string
		body string
		code int
		typ  string
	}{
		{"wrong key", `{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":"ops","apiKey":"nope"}}}`, 401, api.FaultUnauthorized},
		{"unknown user", `{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":"eve","apiKey":"key1"}}}`, 401, api.FaultUnauthorized},
		{"no credentials", `{"auth":{}}`, 400, api.FaultBadRequest},
		{"malformed", `{"auth":`, 400, api.FaultBadRequest},
		{"wrong type", `{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":7}}}`, 400, api.FaultBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			postTokens(t, reg.AuthURL, tc.body).fault(t, tc.code, tc.typ)
		})
	}
	c := &client{t: t, hc: http.DefaultClient}
	c.do(http.MethodGet, reg.AuthURL+"/v2.0/tokens", nil).fault(t, http.StatusMethodNotAllowed, api.FaultBadRequest)
	id := reg.AuthenticateKey(t, "ops", "key1")
	if id.TenantID != "t1" {
		t.Fatalf("tenant %q, want t1", id.TenantID)
	}
}

func TestTokenChecksAndTenantIsolation(t *testing.T) {
	forEachStore(t, testTokenChecksAndTenantIsolation)
}

func testTokenChecksAndTenantIsolation(t *testing.T, st storeKind) {
	reg := st.start(t)
	alice := newClient(t, reg, "alice")
	bob := newClient(t, reg, "bob")
	sid, _ := alice.createSession(30, nil)

	anon := &client{t: t, base: alice.base, hc: http.DefaultClient}
	f := anon.do(http.MethodGet, "/sessions", nil).fault(t, http.StatusUnauthorized, api.FaultUnauthorized)
	if !strings.Contains(f.Details, "X-Auth-Token") {
		t.Fatalf("details %q should name the header", f.Details)
	}
	bogus := &client{t: t, base: alice.base, token: "not-a-token", hc: http.DefaultClient}
	bogus.do(http.MethodGet, "/sessions", nil).fault(t, http.StatusUnauthorized, api.FaultUnauthorized)

	// Bob's token on Alice's URL: 403 on every resource, existing or not.
	intruder := &client{t: t, base: alice.base, token: bob.token, hc: http.DefaultClient}
	for _, p := range []string{"/sessions", "/sessions/" + sid, "/services", "/configuration", "/events", "/limits", "/views/overview", "/nothing"} {
		intruder.do(http.MethodGet, p, nil).fault(t, http.StatusForbidden, api.FaultForbidden)
	}
	intruder.do(http.MethodDelete, "/sessions/"+sid, nil).fault(t, http.StatusForbidden, api.FaultForbidden)
	// Bob sees nothing of Alice's.
	bob.do(http.MethodGet, "/sessions/"+sid, nil).fault(t, http.StatusNotFound, api.FaultNotFound)
	var l api.List[api.Session]
	bob.do(http.MethodGet, "/sessions", nil).want(t, http.StatusOK).decode(t, &l)
	if len(l.Values) != 0 {
		t.Fatalf("bob sees sessions %+v", l.Values)
	}
	alice.do(http.MethodGet, "/sessions/"+sid, nil).want(t, http.StatusOK)
}

func TestTokenExpires(t *testing.T) {
	forEachStore(t, testTokenExpires)
}

func testTokenExpires(t *testing.T, st storeKind) {
	reg := st.start(t, registrytest.WithTokenTTL(300*time.Millisecond))
	c := newClient(t, reg, "alice")
	c.do(http.MethodGet, "/limits", nil).want(t, http.StatusOK)
	waitFor(t, 5*time.Second, "token expiry", func() bool {
		return c.do(http.MethodGet, "/limits", nil).StatusCode == http.StatusUnauthorized
	})
}

func TestSessionLifecycle(t *testing.T) {
	forEachStore(t, testSessionLifecycle)
}

func testSessionLifecycle(t *testing.T, st storeKind) {
	reg := st.start(t)
	c := newClient(t, reg, "alice")
	md := map[string]string{"host": "web1", "dc": "lon"}
	id, tok := c.createSession(15, md)
	if len(id) != 10 || !strings.HasPrefix(id, "se") {
		t.Fatalf("session id %q, want se + 8 alphanumerics", id)
	}

	var s api.Session
	c.do(http.MethodGet, "/sessions/"+id, nil).want(t, http.StatusOK).decode(t, &s)
	if s.ID != id || s.HeartbeatTimeout != 15 || !reflect.DeepEqual(s.Metadata, md) || s.LastSeen != nil {
		t.Fatalf("session = %+v", s)
	}

	// Token chaining.
	var t1, t1again, t2 api.HeartbeatToken
	before := time.Now().UnixMilli()
	c.heartbeat(id, tok).want(t, http.StatusOK).decode(t, &t1)
	if t1.Token == tok || t1.Token == "" {
		t.Fatalf("heartbeat returned %q for %q", t1.Token, tok)
	}
	// The previous token (reply lost, client retries) gets the same reply.
	c.heartbeat(id, tok).want(t, http.StatusOK).decode(t, &t1again)
	if t1again != t1 {
		t.Fatalf("retry with the previous token got %q, want %q", t1again.Token, t1.Token)
	}
	c.heartbeat(id, t1.Token).want(t, http.StatusOK).decode(t, &t2)
	if t2.Token == t1.Token {
		t.Fatal("chain did not advance")
	}
	// Now tok is two steps behind: rejected.
	f := c.heartbeat(id, tok).fault(t, http.StatusBadRequest, api.FaultBadRequest)
	if !strings.Contains(f.Details, "token") {
		t.Fatalf("details %q", f.Details)
	}
	c.heartbeat(id, "not-a-uuid").fault(t, http.StatusBadRequest, api.FaultBadRequest)
	c.heartbeat(id, "").fault(t, http.StatusBadRequest, api.FaultBadRequest)
	c.do(http.MethodGet, "/sessions/"+id, nil).want(t, http.StatusOK).decode(t, &s)
	if s.LastSeen == nil || *s.LastSeen < before {
		t.Fatalf("last_seen = %v, want >= %d", s.LastSeen, before)
	}

	// Update.
	c.do(http.MethodPut, "/sessions/"+id, `{"heartbeat_timeout":20,"metadata":{"k":"v"}}`).want(t, http.StatusNoContent)
	c.do(http.MethodGet, "/sessions/"+id, nil).want(t, http.StatusOK).decode(t, &s)
	if s.HeartbeatTimeout != 20 || !reflect.DeepEqual(s.Metadata, map[string]string{"k": "v"}) {
		t.Fatalf("after PUT: %+v", s)
	}
	c.do(http.MethodPut, "/sessions/"+id, `{"metadata":{}}`).want(t, http.StatusNoContent)
	c.do(http.MethodGet, "/sessions/"+id, nil).want(t, http.StatusOK).decode(t, &s)
	if s.HeartbeatTimeout != 20 || len(s.Metadata) != 0 {
		t.Fatalf("after clearing metadata: %+v", s)
	}

	// List.
	id2, _ := c.createSession(30, nil)
	var l api.List[api.Session]
	c.do(http.MethodGet, "/sessions", nil).want(t, http.StatusOK).decode(t, &l)
	if len(l.Values) != 2 {
		t.Fatalf("list = %+v, want 2 sessions", l)
	}
	ids := []string{l.Values[0].ID, l.Values[1].ID}
	if !slices.IsSorted(ids) || !slices.Contains(ids, id) || !slices.Contains(ids, id2) {
		t.Fatalf("list = %+v", l)
	}
	if l.Metadata.Count != 2 || l.Metadata.Limit != 100 || l.Metadata.Marker != nil || l.Metadata.NextMarker != nil || l.Metadata.NextHref != nil {
		t.Fatalf("metadata = %+v", l.Metadata)
	}

	// Delete.
	c.do(http.MethodDelete, "/sessions/"+id, nil).want(t, http.StatusNoContent)
	f = c.do(http.MethodGet, "/sessions/"+id, nil).fault(t, http.StatusNotFound, api.FaultNotFound)
	if want := fmt.Sprintf(`Object "Session" with key %q does not exist`, id); f.Message != want {
		t.Fatalf("message %q, want %q", f.Message, want)
	}
	c.heartbeat(id, t2.Token).fault(t, http.StatusNotFound, api.FaultNotFound)
	c.do(http.MethodDelete, "/sessions/"+id, nil).fault(t, http.StatusNotFound, api.FaultNotFound)
	c.do(http.MethodPut, "/sessions/"+id, `{"heartbeat_timeout":5}`).fault(t, http.StatusNotFound, api.FaultNotFound)
}

func TestSessionValidation(t *testing.T) {
	forEachStore(t, testSessionValidation)
}

func testSessionValidation(t *testing.T, st storeKind) {
	reg := st.start(t)
	c := newClient(t, reg, "alice")
	id, _ := c.createSession(10, nil)
	many := map[string]string{}
	for i := range 21 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	manyJSON, _ := json.Marshal(map[string]any{"heartbeat_timeout": 10, "metadata": many})
	tests := []struct {
		name, method, path, body, detail string
	}{
		{"timeout too small", "POST", "/sessions", `{"heartbeat_timeout":2}`, "heartbeat_timeout must be an integer between 3 and 30"},
		{"timeout too large", "POST", "/sessions", `{"heartbeat_timeout":31}`, "between 3 and 30"},
		{"timeout missing", "POST", "/sessions", `{}`, "heartbeat_timeout"},
		{"empty body", "POST", "/sessions", ``, "heartbeat_timeout"},
		{"timeout a string", "POST", "/sessions", `{"heartbeat_timeout":"30"}`, "heartbeat_timeout must be an integer"},
		{"timeout a float", "POST", "/sessions", `{"heartbeat_timeout":30.5}`, "heartbeat_timeout"},
		{"too much metadata", "POST", "/sessions", string(manyJSON), "at most 20 entries"},
		{"metadata value too long", "POST", "/sessions", `{"heartbeat_timeout":10,"metadata":{"k":"` + strings.Repeat("x", 256) + `"}}`, "1..255"},
		{"metadata empty key", "POST", "/sessions", `{"heartbeat_timeout":10,"metadata":{"":"v"}}`, "keys must be"},
		{"metadata not strings", "POST", "/sessions", `{"heartbeat_timeout":10,"metadata":{"k":1}}`, "must be a string"},
		{"malformed JSON", "POST", "/sessions", `{"heartbeat_timeout":`, "malformed JSON"},
		{"array body", "POST", "/sessions", `[1,2]`, "JSON object"},
		{"trailing garbage", "POST", "/sessions", `{"heartbeat_timeout":10} x`, "malformed JSON"},
		{"update timeout", "PUT", "/sessions/" + id, `{"heartbeat_timeout":0}`, "between 3 and 30"},
		{"update metadata", "PUT", "/sessions/" + id, `{"metadata":{"k":""}}`, "1..255"},
		{"session id too long", "GET", "/sessions/" + strings.Repeat("s", 16), ``, "session_id must be 1..15"},
		{"heartbeat body not JSON", "POST", "/sessions/" + id + "/heartbeat", `token`, "malformed JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := c.do(tc.method, tc.path, tc.body).fault(t, http.StatusBadRequest, api.FaultBadRequest)
			if !strings.Contains(f.Details, tc.detail) {
				t.Fatalf("details %q, want it to contain %q", f.Details, tc.detail)
			}
		})
	}
	// Unknown fields are ignored.
	c.do(http.MethodPost, "/sessions", `{"heartbeat_timeout":10,"color":"blue"}`).want(t, http.StatusCreated)
}

func TestServices(t *testing.T) {
	forEachStore(t, testServices)
}

func testServices(t *testing.T, st storeKind) {
	reg := st.start(t)
	c := newClient(t, reg, "alice")
	sid, _ := c.createSession(30, nil)
	md := map[string]string{"port": "8080"}

	r := c.createService("web-1", sid, []string{"www", "prod"}, md).want(t, http.StatusCreated)
	if loc := r.Header.Get("Location"); loc != c.base+"/services/web-1" {
		t.Fatalf("Location %q", loc)
	}
	if len(r.body) != 0 {
		t.Fatalf("create service body %q, want empty", r.body)
	}
	c.createService("db.1", sid, []string{"db"}, nil).want(t, http.StatusCreated)
	c.createService("WEB_2", sid, nil, nil).want(t, http.StatusCreated)

	var svc api.Service
	c.do(http.MethodGet, "/services/web-1", nil).want(t, http.StatusOK).decode(t, &svc)
	want := api.Service{ID: "web-1", SessionID: sid, Tags: []string{"www", "prod"}, Metadata: md}
	if !reflect.DeepEqual(svc, want) {
		t.Fatalf("service = %+v, want %+v", svc, want)
	}
	var raw map[string]any
	c.do(http.MethodGet, "/services/WEB_2", nil).want(t, http.StatusOK).decode(t, &raw)
	if tags, ok := raw["tags"].([]any); !ok || len(tags) != 0 {
		t.Fatalf("tags of a service without tags = %#v, want []", raw["tags"])
	}

	var l api.List[api.Service]
	c.do(http.MethodGet, "/services", nil).want(t, http.StatusOK).decode(t, &l)
	if got := serviceIDs(l.Values); !reflect.DeepEqual(got, []string{"WEB_2", "db.1", "web-1"}) {
		t.Fatalf("list ids %v", got)
	}
	c.do(http.MethodGet, "/services?tag=db", nil).want(t, http.StatusOK).decode(t, &l)
	if got := serviceIDs(l.Values); !reflect.DeepEqual(got, []string{"db.1"}) {
		t.Fatalf("?tag=db ids %v", got)
	}
	c.do(http.MethodGet, "/services?tag=none", nil).want(t, http.StatusOK).decode(t, &l)
	if len(l.Values) != 0 || l.Values == nil {
		t.Fatalf("?tag=none = %#v, want an empty list", l.Values)
	}

	// Faults.
	f := c.createService("web-1", sid, nil, nil).fault(t, http.StatusBadRequest, api.FaultServiceWithThisIDExists)
	if !strings.Contains(f.Details, sid) {
		t.Fatalf("details %q should name the holding session", f.Details)
	}
	f = c.createService("web-9", "seNoSuchOne", nil, nil).fault(t, http.StatusNotFound, api.FaultNotFound)
	if f.Message != `Object "Session" with key "seNoSuchOne" does not exist` {
		t.Fatalf("message %q", f.Message)
	}
	faults := []struct {
		name string
		body any
		msg  string
	}{
		{"id too short", api.CreateServiceRequest{ID: "ab", SessionID: sid}, "id must match"},
		{"id bad char", api.CreateServiceRequest{ID: "a b c", SessionID: sid}, "id must match"},
		{"session id empty", api.CreateServiceRequest{ID: "abc"}, "session_id must be 1..15"},
		{"too many tags", api.CreateServiceRequest{ID: "abc", SessionID: sid, Tags: strings.Split("a,b,c,d,e,f,g,h,i,j,k", ",")}, "at most 10"},
		{"tag too long", api.CreateServiceRequest{ID: "abc", SessionID: sid, Tags: []string{strings.Repeat("t", 56)}}, "tags[0] must be 1..55"},
		{"empty tag", api.CreateServiceRequest{ID: "abc", SessionID: sid, Tags: []string{""}}, "tags[0]"},
		{"bad metadata", api.CreateServiceRequest{ID: "abc", SessionID: sid, Metadata: map[string]string{"k": ""}}, "metadata"},
		{"tags not a list", `{"id":"abc","session_id":"` + sid + `","tags":"x"}`, "tags must be a list"},
	}
	for _, tc := range faults {
		t.Run(tc.name, func(t *testing.T) {
			f := c.do(http.MethodPost, "/services", tc.body).fault(t, http.StatusBadRequest, api.FaultBadRequest)
			if !strings.Contains(f.Details, tc.msg) {
				t.Fatalf("details %q, want %q", f.Details, tc.msg)
			}
		})
	}

	// Update replaces the given fields only.
	c.do(http.MethodPut, "/services/web-1", `{"tags":["canary"]}`).want(t, http.StatusNoContent)
	c.do(http.MethodGet, "/services/web-1", nil).want(t, http.StatusOK).decode(t, &svc)
	if !reflect.DeepEqual(svc.Tags, []string{"canary"}) || !reflect.DeepEqual(svc.Metadata, md) {
		t.Fatalf("after PUT tags: %+v", svc)
	}
	c.do(http.MethodPut, "/services/web-1", `{"metadata":{"port":"9090"}}`).want(t, http.StatusNoContent)
	c.do(http.MethodGet, "/services/web-1", nil).want(t, http.StatusOK).decode(t, &svc)
	if !reflect.DeepEqual(svc.Tags, []string{"canary"}) || svc.Metadata["port"] != "9090" {
		t.Fatalf("after PUT metadata: %+v", svc)
	}
	c.do(http.MethodPut, "/services/web-1", `{"tags":["`+strings.Repeat("t", 56)+`"]}`).fault(t, http.StatusBadRequest, api.FaultBadRequest)
	c.do(http.MethodPut, "/services/nope", `{"tags":[]}`).fault(t, http.StatusNotFound, api.FaultNotFound)
	c.do(http.MethodGet, "/services/a", nil).fault(t, http.StatusBadRequest, api.FaultBadRequest)

	// Delete frees the id.
	c.do(http.MethodDelete, "/services/web-1", nil).want(t, http.StatusNoContent)
	c.do(http.MethodGet, "/services/web-1", nil).fault(t, http.StatusNotFound, api.FaultNotFound)
	c.do(http.MethodDelete, "/services/web-1", nil).fault(t, http.StatusNotFound, api.FaultNotFound)
	c.createService("web-1", sid, nil, nil).want(t, http.StatusCreated)

	// Each create appended a service.join event carrying the service.
	joins := eventsOfType(c.events(""), api.EventServiceJoin)
	if len(joins) != 4 {
		t.Fatalf("%d service.join events, want 4", len(joins))
	}
	var first api.Service
	if err := json.Unmarshal(joins[0].Payload, &first); err != nil || first.ID != "web-1" || first.SessionID != sid || !reflect.DeepEqual(first.Tags, []string{"www", "prod"}) {
		t.Fatalf("first join payload %s: %v", joins[0].Payload, err)
	}
}

func serviceIDs(ss []api.Service) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.ID)
	}
	return out
}

func configIDs(vs []api.ConfigurationValue) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.ID)
	}
	return out
}

func TestConfiguration(t *testing.T) {
	forEachStore(t, testConfiguration)
}

func testConfiguration(t *testing.T, st storeKind) {
	reg := st.start(t)
	c := newClient(t, reg, "alice")
	set := map[string]string{
		"/production/cassandra/listen_ip":     "10.0.0.1",
		"/production/cassandra/seeds/primary": "10.0.0.2",
		"/production/web/port":                "80",
		"/staging/cassandra/listen_ip":        "10.1.0.1",
		"/api_key":                            "secret",
	}
	for id, v := range set {
		c.do(http.MethodPut, "/configuration/"+id, api.SetConfigurationRequest{Value: v}).want(t, http.StatusNoContent)
	}
	var cv api.ConfigurationValue
	c.do(http.MethodGet, "/configuration/production/cassandra/listen_ip", nil).want(t, http.StatusOK).decode(t, &cv)
	if cv != (api.ConfigurationValue{ID: "/production/cassandra/listen_ip", Value: "10.0.0.1"}) {
		t.Fatalf("value = %+v", cv)
	}

	lists := []struct {
		path string
		want []string
	}{
		{"/configuration", []string{"/api_key", "/production/cassandra/listen_ip", "/production/cassandra/seeds/primary", "/production/web/port", "/staging/cassandra/listen_ip"}},
		{"/configuration/", []string{"/api_key", "/production/cassandra/listen_ip", "/production/cassandra/seeds/primary", "/production/web/port", "/staging/cassandra/listen_ip"}},
		{"/configuration/production/", []string{"/production/cassandra/listen_ip", "/production/cassandra/seeds/primary", "/production/web/port"}},
		{"/configuration/production/cassandra/", []string{"/production/cassandra/listen_ip", "/production/cassandra/seeds/primary"}},
		{"/configuration/production/cassandra/seeds/", []string{"/production/cassandra/seeds/primary"}},
		{"/configuration/nothing/", nil},
	}
	for _, tc := range lists {
		var l api.List[api.ConfigurationValue]
		c.do(http.MethodGet, tc.path, nil).want(t, http.StatusOK).decode(t, &l)
		if got := configIDs(l.Values); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("GET %s = %v, want %v", tc.path, got, tc.want)
		}
	}

	// Overwrite, then delete: one event each, with old and new values.
	all := c.events("")
	marker := all[len(all)-1].ID
	c.do(http.MethodPut, "/configuration//api_key", `{"value":"rotated"}`).want(t, http.StatusNoContent)
	c.do(http.MethodDelete, "/configuration//api_key", nil).want(t, http.StatusNoContent)
	c.do(http.MethodGet, "/configuration//api_key", nil).fault(t, http.StatusNotFound, api.FaultNotFound)
	c.do(http.MethodDelete, "/configuration//api_key", nil).fault(t, http.StatusNotFound, api.FaultNotFound)
	evs := c.events(marker)[1:] // the marker itself comes back first
	if len(evs) != 2 || evs[0].Type != api.EventConfigurationUpdate || evs[1].Type != api.EventConfigurationRemove {
		t.Fatalf("events after marker = %+v", evs)
	}
	var upd, rem map[string]any
	_ = json.Unmarshal(evs[0].Payload, &upd)
	_ = json.Unmarshal(evs[1].Payload, &rem)
	if !reflect.DeepEqual(upd, map[string]any{"configuration_value_id": "/api_key", "old_value": "secret", "new_value": "rotated"}) {
		t.Fatalf("update payload %s", evs[0].Payload)
	}
	if !reflect.DeepEqual(rem, map[string]any{"configuration_value_id": "/api_key", "old_value": "rotated"}) {
		t.Fatalf("remove payload %s", evs[1].Payload)
	}
	var firstUpd map[string]any
	_ = json.Unmarshal(eventsOfType(all, api.EventConfigurationUpdate)[0].Payload, &firstUpd)
	if v, ok := firstUpd["old_value"]; !ok || v != nil {
		t.Fatalf("first update payload %v: old_value must be null", firstUpd)
	}

	faults := []struct {
		name, method, path, body, detail string
	}{
		{"id too short", "PUT", "/configuration/ab", `{"value":"v"}`, "configuration id must be 3..500 characters"},
		{"slash-led id too short", "PUT", "/configuration//ab", `{"value":"v"}`, "configuration id must match"},
		{"tripled slash", "PUT", "/configuration///abc", `{"value":"v"}`, "configuration id must match"},
		{"segment too short", "PUT", "/configuration/ab/cde", `{"value":"v"}`, "configuration id must match"},
		{"bad char", "PUT", "/configuration/a%20b%20c", `{"value":"v"}`, "configuration id must match"},
		{"empty value", "PUT", "/configuration/key", `{"value":""}`, "value must be 1..1024"},
		{"missing value", "PUT", "/configuration/key", `{}`, "value must be 1..1024"},
		{"value too long", "PUT", "/configuration/key", `{"value":"` + strings.Repeat("v", 1025) + `"}`, "value must be 1..1024"},
		{"value not a string", "PUT", "/configuration/key", `{"value":5}`, "value must be a string"},
		{"get bad id", "GET", "/configuration/x!y", ``, "configuration id"},
		{"bad namespace", "GET", "/configuration/a/", ``, "configuration id"},
	}
	for _, tc := range faults {
		t.Run(tc.name, func(t *testing.T) {
			f := c.do(tc.method, tc.path, tc.body).fault(t, http.StatusBadRequest, api.FaultBadRequest)
			if !strings.Contains(f.Details, tc.detail) {
				t.Fatalf("details %q, want %q", f.Details, tc.detail)
			}
		})
	}
	c.do(http.MethodPut, "/configuration/production/", `{"value":"v"}`).fault(t, http.StatusMethodNotAllowed, api.FaultBadRequest)
}

func TestPaginationAcrossPages(t *testing.T) {
	forEachStore(t, testPaginationAcrossPages)
}

func testPaginationAcrossPages(t *testing.T, st storeKind) {
	reg := st.start(t)
	c := newClient(t, reg, "alice")
	var want []string
	for i := range 25 {
		id := fmt.Sprintf("key%02d", i)
		want = append(want, id)
		c.do(http.MethodPut, "/configuration/"+id, `{"value":"v"}`).want(t, http.StatusNoContent)
	}
	var got []string
	path := "/configuration?limit=10"
	var pages int
	for path != "" {
		var l api.List[api.ConfigurationValue]
		c.do(http.MethodGet, path, nil).want(t, http.StatusOK).decode(t, &l)
		pages++
		if l.Metadata.Limit != 10 || l.Metadata.Count != len(l.Values) {
			t.Fatalf("page %d metadata %+v", pages, l.Metadata)
		}
		if pages > 1 && (l.Metadata.Marker == nil || *l.Metadata.Marker != l.Values[0].ID) {
			t.Fatalf("page %d marker %v, want the first id %s", pages, l.Metadata.Marker, l.Values[0].ID)
		}
		got = append(got, configIDs(l.Values)...)
		path = ""
		if l.Metadata.NextHref != nil {
			if l.Metadata.NextMarker == nil {
				t.Fatal("next_href without next_marker")
			}
			u, err := url.Parse(*l.Metadata.NextHref)
			if err != nil || !u.IsAbs() || u.Query().Get("limit") != "10" || u.Query().Get("marker") != *l.Metadata.NextMarker {
				t.Fatalf("next_href %q", *l.Metadata.NextHref)
			}
			path = *l.Metadata.NextHref
		}
	}
	if pages != 3 || !reflect.DeepEqual(got, want) {
		t.Fatalf("%d pages, ids %v", pages, got)
	}

	// A marker that is not an id starts at the next id.
	var l api.List[api.ConfigurationValue]
	c.do(http.MethodGet, "/configuration?marker=key10x&limit=2", nil).want(t, http.StatusOK).decode(t, &l)
	if ids := configIDs(l.Values); !reflect.DeepEqual(ids, []string{"key11", "key12"}) {
		t.Fatalf("marker between ids: %v", ids)
	}

	// next_href keeps the other parameters (?tag=).
	sid, _ := c.createSession(30, nil)
	for i := range 5 {
		c.createService(fmt.Sprintf("svc%d", i), sid, []string{"t"}, nil).want(t, http.StatusCreated)
	}
	var sl api.List[api.Service]
	c.do(http.MethodGet, "/services?tag=t&limit=3", nil).want(t, http.StatusOK).decode(t, &sl)
	if sl.Metadata.NextHref == nil {
		t.Fatalf("first page of 5 services with limit 3: no next_href in %+v", sl.Metadata)
	}
	u, err := url.Parse(*sl.Metadata.NextHref)
	if err != nil || u.Query().Get("tag") != "t" {
		t.Fatalf("next_href %q lost the tag", *sl.Metadata.NextHref)
	}
	c.do(http.MethodGet, *sl.Metadata.NextHref, nil).want(t, http.StatusOK).decode(t, &sl)
	if ids := serviceIDs(sl.Values); !reflect.DeepEqual(ids, []string{"svc3", "svc4"}) || sl.Metadata.NextHref != nil {
		t.Fatalf("second page %v %+v", ids, sl.Metadata)
	}

	for _, bad := range []string{"0", "1001", "-1", "abc", "", "1.5"} {
		for _, p := range []string{"/sessions", "/services", "/configuration", "/configuration/key/", "/events", "/views/overview"} {
			f := c.do(http.MethodGet, p+"?limit="+bad, nil).fault(t, http.StatusBadRequest, api.FaultInvalidLimit)
			if !strings.Contains(f.Details, "between 1 and 1000") {
				t.Fatalf("details %q", f.Details)
			}
		}
	}
	for _, good := range []string{"1", "1000"} {
		c.do(http.MethodGet, "/sessions?limit="+good, nil).want(t, http.StatusOK)
	}
}

func TestSessionPagination(t *testing.T) {
	forEachStore(t, testSessionPagination)
}

func testSessionPagination(t *testing.T, st storeKind) {
	reg := st.start(t)
	c := newClient(t, reg, "alice")
	var want []string
	for range 7 {
		id, _ := c.createSession(30, nil)
		want = append(want, id)
	}
	slices.Sort(want)
	for _, p := range []string{"/sessions", "/views/overview"} {
		var got []string
		next := p + "?limit=3"
		for next != "" {
			var l api.List[json.RawMessage]
			c.do(http.MethodGet, next, nil).want(t, http.StatusOK).decode(t, &l)
			for _, raw := range l.Values {
				var v struct {
					ID      string `json:"id"`
					Session struct {
						ID string `json:"id"`
					} `json:"session"`
				}
				_ = json.Unmarshal(raw, &v)
				got = append(got, v.ID+v.Session.ID)
			}
			next = ""
			if l.Metadata.NextHref != nil {
				next = *l.Metadata.NextHref
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s pages: %v, want %v", p, got, want)
		}
	}
}

func TestEventsMarkerAndOrder(t *testing.T) {
	forEachStore(t, testEventsMarkerAndOrder)
}

func testEventsMarkerAndOrder(t *testing.T, st storeKind) {
	reg := st.start(t)
	c := newClient(t, reg, "alice")
	for i := range 12 {
		c.do(http.MethodPut, fmt.Sprintf("/configuration/key%02d", i), `{"value":"v"}`).want(t, http.StatusNoContent)
	}
	var l api.List[api.Event]
	c.do(http.MethodGet, "/events", nil).want(t, http.StatusOK).decode(t, &l)
	if len(l.Values) != 12 {
		t.Fatalf("%d events, want 12", len(l.Values))
	}
	ids := make([]string, len(l.Values))
	for i, e := range l.Values {
		ids[i] = e.ID
		if e.Timestamp <= 0 || e.Type != api.EventConfigurationUpdate {
			t.Fatalf("event %+v", e)
		}
		var ch api.ConfigurationChange
		if err := json.Unmarshal(e.Payload, &ch); err != nil || ch.ConfigurationValueID != fmt.Sprintf("key%02d", i) {
			t.Fatalf("event %d payload %s (insertion order broken?)", i, e.Payload)
		}
	}
	if !slices.IsSorted(ids) {
		t.Fatalf("ids not sorted: %v", ids)
	}
	// marker = id: that event and the newer ones.
	c.do(http.MethodGet, "/events?marker="+ids[5], nil).want(t, http.StatusOK).decode(t, &l)
	if got := eventIDs(l.Values); !reflect.DeepEqual(got, ids[5:]) {
		t.Fatalf("?marker=%s: %v", ids[5], got)
	}
	// Paging with next_marker.
	c.do(http.MethodGet, "/events?limit=5", nil).want(t, http.StatusOK).decode(t, &l)
	if l.Metadata.NextMarker == nil || *l.Metadata.NextMarker != ids[5] {
		t.Fatalf("next_marker %v, want %s", l.Metadata.NextMarker, ids[5])
	}
	// A marker after every event: nothing, and no next.
	c.do(http.MethodGet, "/events?marker="+ids[11]+"z", nil).want(t, http.StatusOK).decode(t, &l)
	if len(l.Values) != 0 || l.Metadata.NextMarker != nil {
		t.Fatalf("marker past the end: %+v", l)
	}
	// Another tenant's feed is its own.
	other := newClient(t, reg, "bob")
	if evs := other.events(""); len(evs) != 0 {
		t.Fatalf("bob sees %d events", len(evs))
	}
}

func eventIDs(evs []api.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.ID)
	}
	return out
}

func TestLimits(t *testing.T) {
	forEachStore(t, testLimits)
}

func testLimits(t *testing.T, st storeKind) {
	reg := st.start(t, registrytest.WithLimits(api.ResourceLimits{Session: 2, Service: 2, ConfigurationValue: 2}))
	c := newClient(t, reg, "alice")
	var lim api.Limits
	c.do(http.MethodGet, "/limits", nil).want(t, http.StatusOK).decode(t, &lim)
	if lim.Resource != (api.ResourceLimits{Session: 2, Service: 2, ConfigurationValue: 2}) {
		t.Fatalf("resource limits %+v", lim.Resource)
	}
	rate, ok := lim.Rate["/.*"]
	if !ok || rate.Limit != 500000 || rate.Window != "24.0 hours" || rate.Used < 1 {
		t.Fatalf("rate %+v", lim.Rate)
	}

	s1, _ := c.createSession(30, nil)
	c.createSession(30, nil)
	f := c.do(http.MethodPost, "/sessions", `{"heartbeat_timeout":30}`).fault(t, http.StatusBadRequest, api.FaultLimitReached)
	if !strings.Contains(f.Details, "2 sessions") {
		t.Fatalf("details %q", f.Details)
	}
	c.createService("aaa", s1, nil, nil).want(t, http.StatusCreated)
	c.createService("bbb", s1, nil, nil).want(t, http.StatusCreated)
	c.createService("ccc", s1, nil, nil).fault(t, http.StatusBadRequest, api.FaultLimitReached)
	c.do(http.MethodPut, "/configuration/one", `{"value":"1"}`).want(t, http.StatusNoContent)
	c.do(http.MethodPut, "/configuration/two", `{"value":"2"}`).want(t, http.StatusNoContent)
	c.do(http.MethodPut, "/configuration/three", `{"value":"3"}`).fault(t, http.StatusBadRequest, api.FaultLimitReached)
	// Overwriting an existing value is not a new one.
	c.do(http.MethodPut, "/configuration/two", `{"value":"22"}`).want(t, http.StatusNoContent)
	// Freed room can be used again.
	c.do(http.MethodDelete, "/sessions/"+s1, nil).want(t, http.StatusNoContent)
	c.createSession(30, nil)

	// Defaults.
	reg2 := st.start(t)
	c2 := newClient(t, reg2, "alice")
	c2.do(http.MethodGet, "/limits", nil).want(t, http.StatusOK).decode(t, &lim)
	if lim.Resource != (api.ResourceLimits{Session: 100, Service: 200, ConfigurationValue: 1000}) {
		t.Fatalf("default limits %+v", lim.Resource)
	}
}

func TestOverview(t *testing.T) {
	forEachStore(t, testOverview)
}

func testOverview(t *testing.T, st storeKind) {
	reg := st.start(t)
	c := newClient(t, reg, "alice")
	s1, _ := c.createSession(30, map[string]string{"k": "v"})
	s2, _ := c.createSession(30, nil)
	c.createService("bbb", s1, nil, nil).want(t, http.StatusCreated)
	c.createService("aaa", s1, []string{"x"}, nil).want(t, http.StatusCreated)
	var l api.List[api.OverviewEntry]
	c.do(http.MethodGet, "/views/overview", nil).want(t, http.StatusOK).decode(t, &l)
	if len(l.Values) != 2 {
		t.Fatalf("overview %+v", l)
	}
	for _, e := range l.Values {
		switch e.Session.ID {
		case s1:
			if got := serviceIDs(e.Services); !reflect.DeepEqual(got, []string{"aaa", "bbb"}) || e.Session.Metadata["k"] != "v" {
				t.Fatalf("entry of s1 %+v", e)
			}
		case s2:
			if e.Services == nil || len(e.Services) != 0 {
				t.Fatalf("entry of s2 %+v, want services []", e)
			}
		default:
			t.Fatalf("unknown session %s", e.Session.ID)
		}
	}
}

func TestRoutingFaults(t *testing.T) {
	forEachStore(t, testRoutingFaults)
}

func testRoutingFaults(t *testing.T, st storeKind) {
	reg := st.start(t)
	c := newClient(t, reg, "alice")
	sid, _ := c.createSession(30, nil)
	root := &client{t: t, hc: http.DefaultClient}
	notFound := []string{reg.AuthURL + "/v1.0", reg.AuthURL + "/v1.0/", reg.AuthURL + "/v2.0/other", reg.AuthURL + "/favicon.ico"}
	for _, u := range notFound {
		root.do(http.MethodGet, u, nil).fault(t, http.StatusNotFound, api.FaultNotFound)
	}
	for _, p := range []string{"/nothing", "/sessions/" + sid + "/other", "/sessions//heartbeat", "/services/a/b", "/views", "/views/other", "/events/x", "/limits/x"} {
		c.do(http.MethodGet, p, nil).fault(t, http.StatusNotFound, api.FaultNotFound)
	}
	methods := []struct{ method, path, allow string }{
		{"DELETE", "/sessions", "GET, POST"},
		{"PATCH", "/sessions/" + sid, "GET, PUT, DELETE"},
		{"GET", "/sessions/" + sid + "/heartbeat", "POST"},
		{"PUT", "/services", "GET, POST"},
		{"POST", "/services/abc", "GET, PUT, DELETE"},
		{"POST", "/configuration", "GET"},
		{"POST", "/configuration/key", "GET, PUT, DELETE"},
		{"DELETE", "/events", "GET"},
		{"POST", "/limits", "GET"},
		{"PUT", "/views/overview", "GET"},
	}
	for _, m := range methods {
		r := c.do(m.method, m.path, nil)
		r.fault(t, http.StatusMethodNotAllowed, api.FaultBadRequest)
		if r.Header.Get("Allow") != m.allow {
			t.Errorf("%s %s: Allow %q, want %q", m.method, m.path, r.Header.Get("Allow"), m.allow)
		}
	}
	// A trailing slash is forgiven outside /configuration.
	c.do(http.MethodGet, "/sessions/", nil).want(t, http.StatusOK)
	c.do(http.MethodGet, "/sessions/"+sid+"/", nil).want(t, http.StatusOK)
}

func TestOldClientHeadersAndKeepAlive(t *testing.T) {
	forEachStore(t, testOldClientHeadersAndKeepAlive)
}

func testOldClientHeadersAndKeepAlive(t *testing.T, st storeKind) {
	reg := st.start(t)
	c := newClient(t, reg, "alice")
	// Content-Type on GET and DELETE with no body, no Accept: JSON anyway.
	r := c.do(http.MethodGet, "/sessions", nil).want(t, http.StatusOK)
	if r.Header.Get("Content-Type") != "application/json" || r.Header.Get("X-Response-Id") == "" {
		t.Fatalf("headers %v", r.Header)
	}
	sid, _ := c.createSession(30, nil)
	// Every response carries a distinct transaction id, 204s included.
	r1 := c.do(http.MethodPut, "/sessions/"+sid, `{"heartbeat_timeout":10}`).want(t, http.StatusNoContent)
	r2 := c.do(http.MethodDelete, "/sessions/"+sid, nil).want(t, http.StatusNoContent)
	if a, b := r1.Header.Get("X-Response-Id"), r2.Header.Get("X-Response-Id"); a == "" || a == b {
		t.Fatalf("transaction ids %q %q", a, b)
	}

	// Heartbeats reuse one connection.
	sid, tok := c.createSession(30, nil)
	var conns int
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: &countingTransport{rt: tr, newConn: &conns}}
	hbc := &client{t: t, base: c.base, token: c.token, hc: hc}
	for range 20 {
		var next api.HeartbeatToken
		hbc.heartbeat(sid, tok).want(t, http.StatusOK).decode(t, &next)
		tok = next.Token
	}
	if conns != 1 {
		t.Fatalf("20 heartbeats used %d connections, want 1", conns)
	}
}

// countingTransport counts the requests that did not reuse a connection.
type countingTransport struct {
	rt      http.RoundTripper
	newConn *int
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	reused := false
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused }}
	resp, err := c.rt.RoundTrip(r.WithContext(httptrace.WithClientTrace(r.Context(), trace)))
	if err == nil && !reused {
		*c.newConn++
	}
	return resp, err
}

func TestOversizedBody(t *testing.T) {
	forEachStore(t, testOversizedBody)
}

func testOversizedBody(t *testing.T, st storeKind) {
	reg := st.start(t)
	c := newClient(t, reg, "alice")
	big := `{"value":"` + strings.Repeat("x", 70<<10) + `"}`
	c.do(http.MethodPut, "/configuration/key", big).fault(t, http.StatusRequestEntityTooLarge, api.FaultRequestTooLarge)
	c.do(http.MethodPost, "/sessions", big).fault(t, http.StatusRequestEntityTooLarge, api.FaultRequestTooLarge)
	// Chunked (no Content-Length) too.
	req, _ := http.NewRequest(http.MethodPost, c.base+"/sessions", &slowReader{n: 70 << 10})
	req.Header.Set("X-Auth-Token", c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked oversized body: %d", resp.StatusCode)
	}
	c.do(http.MethodGet, "/sessions", nil).want(t, http.StatusOK)
}

// slowReader yields n bytes of JSON-ish data without announcing a length.
type slowReader struct{ n int }

func (r *slowReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	k := min(len(p), r.n)
	for i := range k {
		p[i] = ' '
	}
	r.n -= k
	return k, nil
}

// GET /healthz says the process serves, GET /readyz that its store
// answers: 200 on both stores, without a token; /readyz is 503 once the
// store is closed.
func TestHealthAndReadinessForLoadBalancers(t *testing.T) {
	forEachStore(t, func(t *testing.T, st storeKind) {
		srv := st.newServer(t, server.Config{Dev: true})
		h := srv.Handler()
		get := func(path string) int {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			return rec.Code
		}
		if got := get("/healthz"); got != http.StatusOK {
			t.Fatalf("/healthz %d", got)
		}
		if got := get("/readyz"); got != http.StatusOK {
			t.Fatalf("/readyz %d", got)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/readyz", nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Fatalf("POST /readyz %d, want 405", rec.Code)
		}
		srv.Close()
		if got := get("/readyz"); got != http.StatusServiceUnavailable {
			t.Fatalf("/readyz after Close %d, want 503", got)
		}
		if got := get("/healthz"); got != http.StatusOK {
			t.Fatalf("/healthz after Close %d: the process still serves", got)
		}
	})
}
