package server_test

// Conformance with the hosted service and its old clients: each test pins a
// piece of the wire format that one of the old clients (Node.js with
// keystone-client 0.3.0/0.3.1, Python with libcloud 0.12.1, Java 1.2)
// depends on. Where the client itself can run here, oldclients_test.go runs
// it too.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/server"
)

// Clients build the URL of a value as "/configuration/" + id and expect the
// id back exactly as they wrote it.
func TestConfigurationIDsComeBackAsWritten(t *testing.T) {
	forEachStore(t, testConfigurationIDsComeBackAsWritten)
}

func testConfigurationIDsComeBackAsWritten(t *testing.T, st storeKind) {
	reg := st.start(t)
	c := newClient(t, reg, "alice")
	tests := []struct {
		put    string // the path below the tenant
		id     string // what every reply must call it
		alsoAt string // another path that names the same value
	}{
		{"/configuration/configId", "configId", ""},
		{"/configuration//api_key", "/api_key", ""},
		{"/configuration//production/cassandra/listen_ip", "/production/cassandra/listen_ip", "/configuration/production/cassandra/listen_ip"},
		{"/configuration/production/web/port", "/production/web/port", "/configuration//production/web/port"},
	}
	for i, tc := range tests {
		c.do(http.MethodPut, tc.put, api.SetConfigurationRequest{Value: strconv.Itoa(i)}).want(t, http.StatusNoContent)
	}
	for i, tc := range tests {
		for _, p := range []string{tc.put, tc.alsoAt} {
			if p == "" {
				continue
			}
			var v api.ConfigurationValue
			c.do(http.MethodGet, p, nil).want(t, http.StatusOK).decode(t, &v)
			if want := (api.ConfigurationValue{ID: tc.id, Value: strconv.Itoa(i)}); v != want {
				t.Errorf("GET %s = %+v, want %+v", p, v, want)
			}
		}
	}
	// "api_key" and "/api_key" are two ids.
	c.do(http.MethodGet, "/configuration/api_key", nil).fault(t, http.StatusNotFound, api.FaultNotFound)

	lists := []struct {
		path string
		want []string
	}{
		{"/configuration", []string{"/api_key", "/production/cassandra/listen_ip", "/production/web/port", "configId"}},
		{"/configuration/", []string{"/api_key", "/production/cassandra/listen_ip", "/production/web/port", "configId"}},
		{"/configuration//", []string{"/api_key", "/production/cassandra/listen_ip", "/production/web/port", "configId"}},
		{"/configuration/production/", []string{"/production/cassandra/listen_ip", "/production/web/port"}},
		{"/configuration//production/", []string{"/production/cassandra/listen_ip", "/production/web/port"}},
		{"/configuration//production/cassandra/", []string{"/production/cassandra/listen_ip"}},
	}
	for _, tc := range lists {
		var l api.List[api.ConfigurationValue]
		c.do(http.MethodGet, tc.path, nil).want(t, http.StatusOK).decode(t, &l)
		if got := configIDs(l.Values); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("GET %s = %v, want %v", tc.path, got, tc.want)
		}
	}

	for _, tc := range tests {
		c.do(http.MethodDelete, tc.put, nil).want(t, http.StatusNoContent)
	}
	var updated, removed []string
	for _, e := range c.events("") {
		var ch api.ConfigurationChange
		if err := json.Unmarshal(e.Payload, &ch); err != nil {
			t.Fatalf("event %s: %v", e.Payload, err)
		}
		switch e.Type {
		case api.EventConfigurationUpdate:
			updated = append(updated, ch.ConfigurationValueID)
		case api.EventConfigurationRemove:
			removed = append(removed, ch.ConfigurationValueID)
		}
	}
	var want []string
	for _, tc := range tests {
		want = append(want, tc.id)
	}
	if !reflect.DeepEqual(updated, want) || !reflect.DeepEqual(removed, want) {
		t.Fatalf("events name update %v and remove %v, want %v for both", updated, removed, want)
	}
}

// Python's urllib and requests send the whole body before reading the
// reply: they must read the 413, not a connection reset; and so must they
// read any other refusal that comes before the body is read (a chunked
// body's size is known only once read, after the token is checked).
func TestOversizedBodyIsAnsweredToClientsThatSendItAll(t *testing.T) {
	forEachStore(t, testOversizedBodyIsAnsweredToClientsThatSendItAll)
}

func testOversizedBodyIsAnsweredToClientsThatSendItAll(t *testing.T, st storeKind) {
	reg := st.start(t)
	id := reg.Authenticate(t, "alice")
	tests := []struct {
		name    string
		chunked bool
		token   string
		status  int
		fault   string
	}{
		{"content-length", false, id.Token, http.StatusRequestEntityTooLarge, api.FaultRequestTooLarge},
		{"chunked", true, id.Token, http.StatusRequestEntityTooLarge, api.FaultRequestTooLarge},
		// The size is checked first: 413 rather than 401.
		{"unknown token", false, "not-a-token", http.StatusRequestEntityTooLarge, api.FaultRequestTooLarge},
		// Of a chunked body, it cannot be.
		{"chunked, unknown token", true, "not-a-token", http.StatusUnauthorized, api.FaultUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			size := 4 << 20
			if tc.status != http.StatusRequestEntityTooLarge {
				size = 8 << 20 // more than the sockets buffer, less than lingerBytes
			}
			body := bigValue(size)
			framing := fmt.Sprintf("Content-Length: %d", len(body))
			if tc.chunked {
				body, framing = chunked(body), "Transfer-Encoding: chunked"
			}
			conn, err := net.Dial("tcp", reg.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
			head := fmt.Sprintf("PUT /v1.0/%s/configuration/key HTTP/1.1\r\nHost: %s\r\nX-Auth-Token: %s\r\nContent-Type: application/json\r\n%s\r\n\r\n",
				id.TenantID, reg.Addr, tc.token, framing)
			// All of it first, as those clients do; only then read.
			if _, err := conn.Write(append([]byte(head), body...)); err != nil {
				t.Fatalf("writing the %d-byte request: %v (the server reset the connection before reading it)", len(body), err)
			}
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("reading the reply: %v", err)
			}
			defer resp.Body.Close()
			data, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("reading the reply's body: %v", err)
			}
			var f api.Fault
			if resp.StatusCode != tc.status || json.Unmarshal(data, &f) != nil || f.Type != tc.fault {
				t.Fatalf("reply %d %s, want %d %s", resp.StatusCode, data, tc.status, tc.fault)
			}
			if !resp.Close {
				t.Fatalf("%d without Connection: close (headers %v)", tc.status, resp.Header)
			}
			// The server read the body and closed cleanly. Closing on
			// unread data sends a reset instead, and a reset that comes
			// while the client is still sending (a slower link, a bigger
			// body) destroys the 413 before the client reads it.
			if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
				t.Fatalf("after the %d: %q, %v; want a clean close (the server must read the body it refused)", tc.status, rest, err)
			}
		})
	}
	// A client that asks before sending (curl's Expect: 100-continue) gets
	// the 413 at once, and the server waits for no body.
	t.Run("100-continue", func(t *testing.T) {
		conn, err := net.Dial("tcp", reg.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(conn, "PUT /v1.0/%s/configuration/key HTTP/1.1\r\nHost: %s\r\nX-Auth-Token: %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n",
			id.TenantID, reg.Addr, id.Token, 4<<20)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("reply %v, %v; want 413 without 100 Continue", resp, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
			t.Fatalf("after the 413: %q, %v; want the connection closed", rest, err)
		}
	})
	// The value was not written, and the server still serves.
	c := clientOf(t, id)
	c.do(http.MethodGet, "/configuration/key", nil).fault(t, http.StatusNotFound, api.FaultNotFound)
}

// bigValue is a configuration body of n bytes.
func bigValue(n int) []byte {
	return []byte(`{"value":"` + strings.Repeat("x", n-len(`{"value":""}`)) + `"}`)
}

// chunked encodes b as HTTP/1.1 chunks of 64 KiB.
func chunked(b []byte) []byte {
	var out []byte
	for len(b) > 0 {
		k := min(len(b), 64<<10)
		out = append(out, fmt.Sprintf("%x\r\n", k)...)
		out = append(out, b[:k]...)
		out = append(out, "\r\n"...)
		b = b[k:]
	}
	return append(out, "0\r\n\r\n"...)
}

// The Node.js client reads Location on the reply to its updates and throws
// inside its HTTP callback without it.
func TestUpdatesAnswerLocation(t *testing.T) {
	forEachStore(t, testUpdatesAnswerLocation)
}

func testUpdatesAnswerLocation(t *testing.T, st storeKind) {
	reg := st.start(t)
	c := newClient(t, reg, "alice")
	sid, _ := c.createSession(30, nil)
	c.createService("web-1", sid, nil, nil).want(t, http.StatusCreated)
	tests := []struct{ path, body string }{
		{"/sessions/" + sid, `{"heartbeat_timeout":20}`},
		{"/services/web-1", `{"tags":["www"]}`},
	}
	for _, tc := range tests {
		r := c.do(http.MethodPut, tc.path, tc.body).want(t, http.StatusNoContent)
		if got, want := r.Header.Get("Location"), c.base+tc.path; got != want {
			t.Errorf("PUT %s: Location %q, want %q", tc.path, got, want)
		}
	}
}

// expiresLayout is how Rackspace wrote token.expires
// ("2012-09-14T10:04:52.000-05:00") and the only form the Java client
// reads: it rewrites "-0H:00" to "-0H00" and parses an RFC 822 zone, so
// "Z", "+00:00" or "+01:00" leave it with a null expiry.
var expiresLayout = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}-0\d:00$`)

func TestTokenExpiresHasANumericOffsetTheJavaClientReads(t *testing.T) {
	forEachStore(t, testTokenExpiresHasANumericOffsetTheJavaClientReads)
}

func testTokenExpiresHasANumericOffsetTheJavaClientReads(t *testing.T, st storeKind) {
	reg := st.start(t)
	var ar api.AuthResponse
	postTokens(t, reg.AuthURL, `{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":"alice","apiKey":"k"}}}`).want(t, http.StatusOK).decode(t, &ar)
	exp := ar.Access.Token.Expires
	if !expiresLayout.MatchString(exp) {
		t.Fatalf("token.expires %q, want the form 2012-09-14T10:04:52.000-05:00", exp)
	}
	rfc, err := time.Parse(time.RFC3339, exp)
	if err != nil {
		t.Fatalf("token.expires %q is not RFC 3339: %v", exp, err)
	}
	// What the Java client does with it, in Go terms.
	javaForm := regexp.MustCompile(`-0(\d):00$`).ReplaceAllString(exp, "-0${1}00")
	java, err := time.Parse("2006-01-02T15:04:05.000-0700", javaForm)
	if err != nil || !java.Equal(rfc) {
		t.Fatalf("as the Java client reads it (%q): %v, %v; want %v", javaForm, java, err, rfc)
	}
	if d := time.Until(rfc); d < 23*time.Hour || d > 25*time.Hour {
		t.Fatalf("token expires in %s, want about 24h", d)
	}
}

// The Java client reads token.tenant into a map of 32-bit integers: both
// its id and its name must be numbers below 2^31.
func TestDevTenantIDsFitIn32Bits(t *testing.T) {
	forEachStore(t, testDevTenantIDsFitIn32Bits)
}

func testDevTenantIDsFitIn32Bits(t *testing.T, st storeKind) {
	reg := st.start(t)
	for _, u := range []string{"bob", "user@example.com", "a/b c"} {
		var ar api.AuthResponse
		postTokens(t, reg.AuthURL, `{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":"`+u+`","apiKey":"k"}}}`).want(t, http.StatusOK).decode(t, &ar)
		for field, v := range map[string]string{"id": ar.Access.Token.Tenant.ID, "name": ar.Access.Token.Tenant.Name} {
			if _, err := strconv.ParseInt(v, 10, 32); err != nil {
				t.Errorf("token.tenant.%s of %q is %q: not a 32-bit integer", field, u, v)
			}
		}
	}
	for i := range 20000 {
		u := "user-" + strconv.Itoa(i)
		id := server.DevTenantID(u)
		n, err := strconv.ParseInt(id, 10, 32)
		if err != nil || n < 1_000_000_000 || n >= 1<<31-1 || id != strconv.FormatInt(n, 10) {
			t.Fatalf("DevTenantID(%q) = %q: want ten digits below 2147483647", u, id)
		}
	}
}

// Each old client finds the tenant id in the service catalog by its own
// rule; every rule must give the token's tenant.
func TestCatalogGivesTheTenantToEveryOldClient(t *testing.T) {
	forEachStore(t, testCatalogGivesTheTenantToEveryOldClient)
}

func testCatalogGivesTheTenantToEveryOldClient(t *testing.T, st storeKind) {
	reg := st.start(t)
	var raw struct {
		Access struct {
			Token struct {
				Tenant struct{ ID string } `json:"tenant"`
			} `json:"token"`
			ServiceCatalog []struct {
				Name      string           `json:"name"`
				Type      string           `json:"type"`
				Endpoints []map[string]any `json:"endpoints"`
			} `json:"serviceCatalog"`
		} `json:"access"`
	}
	postTokens(t, reg.AuthURL, `{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":"bob","apiKey":"k"}}}`).want(t, http.StatusOK).decode(t, &raw)
	tenant := raw.Access.Token.Tenant.ID
	catalog := raw.Access.ServiceCatalog

	// keystone-client 0.3.0 (Node.js): the last entry with one of these
	// names, endpoints[0].tenantId; 0.3.1 added cloudServersOpenStack.
	keystone := func(names ...string) any {
		var id any
		for _, e := range catalog {
			for _, n := range names {
				if e.Name == n && len(e.Endpoints) > 0 {
					id = e.Endpoints[0]["tenantId"]
				}
			}
		}
		return id
	}
	// libcloud 0.12.1's Rackspace driver (Python): type compute, name
	// cloudServers, the one endpoint without a region; the tenant is the
	// last path segment of its publicURL.
	libcloud := func() any {
		var urls []any
		for _, e := range catalog {
			if e.Type != "compute" || e.Name != "cloudServers" {
				continue
			}
			for _, ep := range e.Endpoints {
				if _, hasRegion := ep["region"]; !hasRegion {
					urls = append(urls, ep["publicURL"])
				}
			}
		}
		if len(urls) != 1 {
			return fmt.Sprintf("%d endpoints without region", len(urls))
		}
		u, _ := urls[0].(string)
		if !strings.HasPrefix(u, reg.URL+"/") {
			return "publicURL " + u + " is not below the registry's URL"
		}
		return u[strings.LastIndex(u, "/")+1:]
	}
	got := map[string]any{
		"keystone-client 0.3.0": keystone("cloudServers", "cloudServersLegacy"),
		"keystone-client 0.3.1": keystone("cloudServers", "cloudServersLegacy", "cloudServersOpenStack"),
		"libcloud 0.12.1":       libcloud(),
	}
	for client, id := range got {
		if id != tenant {
			t.Errorf("%s reads tenant %v, want %q; catalog %+v", client, id, tenant, catalog)
		}
	}
}
