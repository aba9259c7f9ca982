package server_test

import (
	"net/http"
	"reflect"
	"slices"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
)

// state is what must survive a restart.
type state struct {
	config   []api.ConfigurationValue
	services []api.Service
	sessions []string
	events   []api.Event
}

func snapshot(t *testing.T, c *client) state {
	t.Helper()
	var s state
	var cl api.List[api.ConfigurationValue]
	c.do(http.MethodGet, "/configuration", nil).want(t, http.StatusOK).decode(t, &cl)
	s.config = cl.Values
	var sl api.List[api.Service]
	c.do(http.MethodGet, "/services", nil).want(t, http.StatusOK).decode(t, &sl)
	s.services = sl.Values
	var ses api.List[api.Session]
	c.do(http.MethodGet, "/sessions", nil).want(t, http.StatusOK).decode(t, &ses)
	for _, x := range ses.Values {
		s.sessions = append(s.sessions, x.ID)
	}
	s.events = c.events("")
	return s
}

func TestStateSurvivesRestartOfTheBinary(t *testing.T) {
	bin := registrytest.BuildBinary(t, registrytest.RegistryPackage)
	forEachStore(t, func(t *testing.T, st storeKind) { testStateSurvivesRestartOfTheBinary(t, st, bin) })
}

func testStateSurvivesRestartOfTheBinary(t *testing.T, st storeKind, bin string) {
	tests := []struct {
		name string
		stop func(t *testing.T, p *registrytest.Process)
	}{
		{"SIGTERM", func(t *testing.T, p *registrytest.Process) {
			if code := p.Terminate(); code != 0 {
				t.Fatalf("exit code after SIGTERM = %d, want 0", code)
			}
		}},
		// SIGKILL right after the last successful reply: what was answered
		// must be on disk.
		{"SIGKILL", func(t *testing.T, p *registrytest.Process) { p.Kill9() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := registrytest.StartProcess(t, bin, st.args(t)...)
			c := clientOf(t, p.Authenticate(t, "alice"))
			sid, tok := c.createSession(30, map[string]string{"host": "h1"})
			c.createService("web-1", sid, []string{"www"}, map[string]string{"port": "80"}).want(t, http.StatusCreated)
			c.createService("web-2", sid, nil, nil).want(t, http.StatusCreated)
			c.do(http.MethodPut, "/configuration/production/dbs/host", `{"value":"db1"}`).want(t, http.StatusNoContent)
			c.do(http.MethodPut, "/configuration/api_key", `{"value":"k1"}`).want(t, http.StatusNoContent)
			c.do(http.MethodDelete, "/configuration/api_key", nil).want(t, http.StatusNoContent)
			gone, _ := c.createSession(30, nil)
			c.do(http.MethodDelete, "/sessions/"+gone, nil).want(t, http.StatusNoContent)
			c.do(http.MethodDelete, "/services/web-2", nil).want(t, http.StatusNoContent)
			c.do(http.MethodPut, "/configuration/last", `{"value":"written just before the stop"}`).want(t, http.StatusNoContent)
			before := snapshot(t, c)

			tc.stop(t, p)
			p.Restart()

			if st.etcd {
				// Tokens are in etcd too.
				c.do(http.MethodGet, "/sessions", nil).want(t, http.StatusOK)
			} else {
				// Tokens lived in memory: 401, then a new one works.
				c.do(http.MethodGet, "/sessions", nil).fault(t, http.StatusUnauthorized, api.FaultUnauthorized)
				c = clientOf(t, p.Authenticate(t, "alice"))
			}
			after := snapshot(t, c)
			if !reflect.DeepEqual(after.config, before.config) {
				t.Errorf("configuration %+v, want %+v", after.config, before.config)
			}
			if !reflect.DeepEqual(after.services, before.services) {
				t.Errorf("services %+v, want %+v", after.services, before.services)
			}
			if !reflect.DeepEqual(after.sessions, []string{sid}) {
				t.Errorf("sessions %v, want [%s]", after.sessions, sid)
			}
			if len(before.events) != 6 || !reflect.DeepEqual(eventIDs(after.events), eventIDs(before.events)) {
				t.Errorf("events %v, want the 6 of before %v", eventIDs(after.events), eventIDs(before.events))
			}
			// The restored session keeps heartbeating with its old token
			// (bbolt: any token, its chain was lost; etcd: its chain).
			c.heartbeat(sid, tok).want(t, http.StatusOK)

			// New events sort after the old ones: no id collision.
			c.do(http.MethodPut, "/configuration/after", `{"value":"v"}`).want(t, http.StatusNoContent)
			ids := eventIDs(c.events(""))
			if len(ids) != 7 || !slices.IsSorted(ids) || ids[6] <= before.events[5].ID {
				t.Errorf("event ids after restart %v", ids)
			}
		})
	}
}
