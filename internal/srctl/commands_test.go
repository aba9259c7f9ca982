package srctl_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/srctl"
)

// timeAndAge matches a time shown with its age.
var timeAndAgeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \((\d+[smhd])+ ago\)$`)

func TestServicesCommandsInBothOutputs(t *testing.T) {
	h := setup(t)
	sid, _ := h.session(30, nil)
	h.service(sid, "web1", []string{"web", "http"}, map[string]string{"port": "80", "dc": "lon"})
	h.service(sid, "db1", []string{"db"}, nil)

	wantRows(t, "services list", table(t, h.ok("services", "list")),
		[]string{"ID", "SESSION", "TAGS", "METADATA"},
		[]string{"db1", sid, "db", "-"},
		[]string{"web1", sid, "web,http", "dc=lon,port=80"})
	sameJSON(t, "services list --output json", h.ok("services", "list", "--output", "json"), h.rawValues("/services"))

	wantRows(t, "services list --tag web", table(t, h.ok("services", "list", "--tag", "web")),
		[]string{"ID", "SESSION", "TAGS", "METADATA"},
		[]string{"web1", sid, "web,http", "dc=lon,port=80"})
	sameJSON(t, "services list --tag web -o json", h.ok("-o", "json", "services", "list", "--tag", "web"), h.rawValues("/services?tag=web"))
	// The server's filter, with --limit, agrees with srctl's own.
	sameJSON(t, "services list --tag web --limit 5", h.ok("-o", "json", "services", "list", "--tag", "web", "--limit", "5"), h.rawValues("/services?tag=web"))
	sameJSON(t, "services list --tag nothing", h.ok("-o", "json", "services", "list", "--tag", "nothing"), []any{})
	wantRows(t, "services list --tag nothing", table(t, h.ok("services", "list", "--tag", "nothing")),
		[]string{"ID", "SESSION", "TAGS", "METADATA"})

	wantRows(t, "services get", table(t, h.ok("services", "get", "web1")),
		[]string{"ID", "SESSION", "TAGS", "METADATA"},
		[]string{"web1", sid, "web,http", "dc=lon,port=80"})
	sameJSON(t, "services get -o json", h.ok("services", "get", "web1", "-o", "json"), h.rawGet("/services/web1"))

	if out := h.ok("services", "rm", "db1"); out != "removed service db1\n" {
		t.Fatalf("services rm: %q", out)
	}
	if out := h.ok("services", "rm", "web1", "-o", "json"); out != "" {
		t.Fatalf("services rm -o json printed %q; want nothing", out)
	}
	sameJSON(t, "services list after rm", h.ok("-o", "json", "services", "list"), []any{})

	r := h.run("services", "get", "web1")
	tenant, err := h.c.TenantID(h.ctx(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`srctl: GET %s/%s/services/web1: 404 notFoundError: Object "Service" with key "web1" does not exist`, h.reg.URL, tenant)
	if r.code != srctl.ExitError || !strings.HasPrefix(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 || r.stdout != "" {
		t.Fatalf("services get of a removed service: exit %d, stdout %q, stderr %q; want exit 1 and one line starting %q", r.code, r.stdout, r.stderr, want)
	}
}

func TestSessionsCommandsInBothOutputs(t *testing.T) {
	h := setup(t)
	quiet, _ := h.session(30, map[string]string{"host": "a", "az": "1"})
	beating, tok := h.session(5, nil)
	if _, err := h.c.Heartbeat(h.ctx(10*time.Second), beating, tok); err != nil {
		t.Fatal(err)
	}

	rows := table(t, h.ok("sessions", "list"))
	if len(rows) != 3 || !slices.Equal(rows[0], []string{"ID", "TIMEOUT", "LAST SEEN", "METADATA"}) {
		t.Fatalf("sessions list: %q", rows)
	}
	byID := map[string][]string{rows[1][0]: rows[1], rows[2][0]: rows[2]}
	if got := byID[quiet]; !slices.Equal(got, []string{quiet, "30s", "never", "az=1,host=a"}) {
		t.Errorf("session without heartbeat: %q", got)
	}
	if got := byID[beating]; len(got) != 4 || got[1] != "5s" || !timeAndAgeRE.MatchString(got[2]) || got[3] != "-" {
		t.Errorf("heartbeated session: %q; want its last heartbeat as local time and age", got)
	}
	sameJSON(t, "sessions list -o json", h.ok("sessions", "list", "-o", "json"), h.rawValues("/sessions"))

	wantRows(t, "sessions get", table(t, h.ok("sessions", "get", quiet)),
		[]string{"ID", "TIMEOUT", "LAST SEEN", "METADATA"},
		[]string{quiet, "30s", "never", "az=1,host=a"})
	sameJSON(t, "sessions get -o json", h.ok("sessions", "get", beating, "-o", "json"), h.rawGet("/sessions/"+beating))

	if r := h.run("sessions", "get", "seNOPE1234"); r.code != srctl.ExitError || !strings.Contains(r.stderr, "404 notFoundError") {
		t.Fatalf("sessions get of an unknown session: %+v", r)
	}
}

func TestConfigCommandsInBothOutputs(t *testing.T) {
	h := setup(t)
	// Ids with and without their leading slash are the same id.
	if out := h.ok("config", "set", "production/cassandra/listen_ip", "10.0.0.5"); out != "set /production/cassandra/listen_ip = \"10.0.0.5\"\n" {
		t.Fatalf("config set: %q", out)
	}
	if out := h.ok("config", "set", "/production/api_url", "http://x", "-o", "json"); out != "" {
		t.Fatalf("config set -o json printed %q", out)
	}
	h.ok("config", "set", "/staging/api_url", "http://y")
	// A value that starts with a dash, after --.
	h.ok("config", "set", "staging/offset", "--", "-1")

	wantRows(t, "config get", table(t, h.ok("config", "get", "/production/cassandra/listen_ip")),
		[]string{"ID", "VALUE"}, []string{"/production/cassandra/listen_ip", "10.0.0.5"})
	sameJSON(t, "config get -o json", h.ok("config", "get", "production/cassandra/listen_ip", "-o", "json"),
		h.rawGet("/configuration/production/cassandra/listen_ip"))
	sameJSON(t, "config get staging/offset", h.ok("config", "get", "staging/offset", "-o", "json"),
		map[string]any{"id": "/staging/offset", "value": "-1"})

	wantRows(t, "config list", table(t, h.ok("config", "list")),
		[]string{"ID", "VALUE"},
		[]string{"/production/api_url", "http://x"},
		[]string{"/production/cassandra/listen_ip", "10.0.0.5"},
		[]string{"/staging/api_url", "http://y"},
		[]string{"/staging/offset", "-1"})
	sameJSON(t, "config list -o json", h.ok("config", "list", "-o", "json"), h.rawValues("/configuration"))
	wantRows(t, "config list production/", table(t, h.ok("config", "list", "production/")),
		[]string{"ID", "VALUE"},
		[]string{"/production/api_url", "http://x"},
		[]string{"/production/cassandra/listen_ip", "10.0.0.5"})
	sameJSON(t, "config list /production/cassandra/ -o json", h.ok("config", "list", "/production/cassandra/", "-o", "json"),
		h.rawValues("/configuration/production/cassandra/"))

	if out := h.ok("config", "rm", "production/api_url"); out != "removed /production/api_url\n" {
		t.Fatalf("config rm: %q", out)
	}
	if r := h.run("config", "get", "production/api_url"); r.code != srctl.ExitError || !strings.Contains(r.stderr, "404 notFoundError") {
		t.Fatalf("config get of a removed value: %+v", r)
	}
}

// TestConfigValueKeepsItsTrailingBlanksInTables: a value is the last
// column, printed as it is, so its trailing blanks reach the reader.
func TestConfigValueKeepsItsTrailingBlanksInTables(t *testing.T) {
	h := setup(t)
	const value = "ends in two blanks  "
	h.ok("config", "set", "production/motd", value)
	want := "ID                VALUE\n/production/motd  " + value + "\n"
	if out := h.ok("config", "get", "production/motd"); out != want {
		t.Fatalf("config get:\n%q\nwant:\n%q", out, want)
	}
	if out := h.ok("config", "list"); out != want {
		t.Fatalf("config list:\n%q\nwant:\n%q", out, want)
	}
}

func TestEventsListInBothOutputs(t *testing.T) {
	h := setup(t)
	sid, _ := h.session(30, nil)
	h.service(sid, "web1", []string{"web"}, nil)
	h.setConfig("/production/db_host", "10.0.0.4")
	h.setConfig("/production/db_host", "10.0.0.5")

	rows := table(t, h.ok("events", "list"))
	if len(rows) != 4 || !slices.Equal(rows[0], []string{"ID", "TIME", "TYPE", "DETAILS"}) {
		t.Fatalf("events list: %q", rows)
	}
	wantDetails := []struct{ typ, details string }{
		{"service.join", "web1 session=" + sid + " tags=web metadata=-"},
		{"configuration_value.update", `/production/db_host: (new) -> "10.0.0.4"`},
		{"configuration_value.update", `/production/db_host: "10.0.0.4" -> "10.0.0.5"`},
	}
	for i, w := range wantDetails {
		row := rows[i+1]
		if len(row) != 4 || !timeAndAgeRE.MatchString(row[1]) || row[2] != w.typ || row[3] != w.details {
			t.Errorf("event %d: %q; want type %s, details %q", i, row, w.typ, w.details)
		}
	}
	feed := h.rawValues("/events")
	sameJSON(t, "events list -o json", h.ok("events", "list", "-o", "json"), feed)

	// --marker includes the event it names, as the API does.
	second := rows[2][0]
	sameJSON(t, "events list --marker", h.ok("events", "list", "--marker", second, "-o", "json"), feed[1:])
	sameJSON(t, "events list --limit 2", h.ok("events", "list", "--limit", "2", "-o", "json"), feed[:2])
}

func TestEventsListSinceFiltersOnTimestamps(t *testing.T) {
	h := setup(t)
	h.setConfig("/old/value_a", "1")
	var first api.Event
	if err := json.Unmarshal([]byte(h.ok("events", "list", "-o", "json", "--limit", "1")), &[]*api.Event{&first}); err != nil {
		t.Fatal(err)
	}
	// The filter is on time: let the clock move a second past the first
	// event before the second one.
	time.Sleep(time.Until(time.UnixMilli(first.Timestamp).Add(time.Second)))
	h.setConfig("/new/value_b", "2")
	var events []api.Event
	if err := json.Unmarshal([]byte(h.ok("events", "list", "-o", "json")), &events); err != nil || len(events) != 2 {
		t.Fatalf("events: %v, %v", events, err)
	}
	// Half a second before the second event: only it is newer.
	since := time.Since(time.UnixMilli(events[1].Timestamp)) + 500*time.Millisecond
	var got []api.Event
	if err := json.Unmarshal([]byte(h.ok("events", "list", "--since", since.String(), "-o", "json")), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != events[1].ID {
		t.Fatalf("events list --since %s: %v; want only %s", since, got, events[1].ID)
	}
	// With a marker --since may reach back further than an hour.
	h.ok("events", "list", "--since", "48h", "--marker", first.ID)
}

func TestLimitsAndOverviewInBothOutputs(t *testing.T) {
	h := setup(t)
	s1, _ := h.session(30, nil)
	s2, _ := h.session(10, nil)
	h.service(s1, "web1", []string{"web"}, map[string]string{"port": "80"})
	h.service(s1, "web2", nil, nil)

	rows := table(t, h.ok("limits"))
	wantRows(t, "limits resources", rows[:4],
		[]string{"RESOURCE", "LIMIT"},
		[]string{"session", "100"},
		[]string{"service", "200"},
		[]string{"configuration_value", "1000"})
	if len(rows) != 6 || !slices.Equal(rows[4], []string{"RATE", "USED", "LIMIT", "WINDOW"}) || rows[5][0] != "/.*" || rows[5][2] != "500000" || rows[5][3] != "24.0 hours" {
		t.Fatalf("limits rate: %q", rows[4:])
	}
	var limits api.Limits
	if err := json.Unmarshal([]byte(h.ok("limits", "-o", "json")), &limits); err != nil {
		t.Fatal(err)
	}
	if limits.Resource != (api.ResourceLimits{Session: 100, Service: 200, ConfigurationValue: 1000}) || limits.Rate["/.*"].Limit != 500000 {
		t.Fatalf("limits -o json: %+v", limits)
	}
	raw := h.rawGet("/limits").(map[string]any)
	var gotRaw map[string]any
	if err := json.Unmarshal([]byte(h.ok("limits", "-o", "json")), &gotRaw); err != nil {
		t.Fatal(err)
	}
	// Every call counts against the rate limit: compare all but "used".
	for _, m := range []map[string]any{raw, gotRaw} {
		delete(m["rate"].(map[string]any)["/.*"].(map[string]any), "used")
	}
	sameJSON(t, "limits -o json", mustJSON(t, gotRaw), raw)

	rows = table(t, h.ok("overview"))
	if len(rows) != 4 || !slices.Equal(rows[0], []string{"SESSION", "TIMEOUT", "LAST SEEN", "SERVICE", "TAGS", "METADATA"}) {
		t.Fatalf("overview: %q", rows)
	}
	want := map[string][]string{
		"web1": {s1, "30s", "never", "web1", "web", "port=80"},
		"web2": {s1, "30s", "never", "web2", "-", "-"},
		"-":    {s2, "10s", "never", "-", "-", "-"},
	}
	for _, row := range rows[1:] {
		if len(row) < 4 || !slices.Equal(row, want[row[3]]) {
			t.Errorf("overview row %q; want one of %q", row, want)
		}
	}
	sameJSON(t, "overview -o json", h.ok("overview", "-o", "json"), h.rawValues("/views/overview"))
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestListsFollowPaginationToTheEnd lists more than one page of every kind
// of list, at the server's default page size (100) and at a small one.
func TestListsFollowPaginationToTheEnd(t *testing.T) {
	h := setup(t)
	var sessions []string
	for range 3 {
		id, _ := h.session(30, nil)
		sessions = append(sessions, id)
	}
	const nServices = 130
	for i := range nServices {
		h.service(sessions[i%3], fmt.Sprintf("svc-%03d", i), []string{"t" + fmt.Sprint(i%2)}, nil)
	}
	for i := range 7 {
		h.setConfig(fmt.Sprintf("/nsp/key_%02d", i), "v")
	}

	// Default page size: 130 services are two pages.
	var services []api.Service
	if err := json.Unmarshal([]byte(h.ok("services", "list", "-o", "json")), &services); err != nil {
		t.Fatal(err)
	}
	if len(services) != nServices || services[0].ID != "svc-000" || services[nServices-1].ID != fmt.Sprintf("svc-%03d", nServices-1) {
		t.Fatalf("services list: %d services, want %d in order", len(services), nServices)
	}
	if rows := table(t, h.ok("services", "list")); len(rows) != nServices+1 {
		t.Fatalf("services list table: %d rows, want %d", len(rows), nServices+1)
	}
	if rows := table(t, h.ok("services", "list", "--tag", "t1")); len(rows) != nServices/2+1 {
		t.Fatalf("services list --tag t1: %d rows, want %d", len(rows), nServices/2+1)
	}

	// Small pages, every list: the whole list, in order.
	lists := []struct {
		args []string
		path string
	}{
		{[]string{"services", "list"}, "/services"},
		{[]string{"services", "list", "--limit", "1000"}, "/services"},
		{[]string{"sessions", "list"}, "/sessions"},
		{[]string{"overview"}, "/views/overview"},
		{[]string{"config", "list"}, "/configuration"},
		{[]string{"config", "list", "nsp/"}, "/configuration/nsp/"},
		{[]string{"events", "list"}, "/events"},
	}
	for _, l := range lists {
		args := append([]string{"--page-size", "2", "-o", "json"}, l.args...)
		sameJSON(t, strings.Join(l.args, " ")+" --page-size 2", h.ok(args...), h.rawValues(l.path))
	}

	// --limit stops after N, across pages.
	for _, n := range []int{1, 3, 5, 101} {
		var got []api.Service
		if err := json.Unmarshal([]byte(h.ok("services", "list", "-o", "json", "--page-size", "2", "--limit", fmt.Sprint(n))), &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != n || got[n-1].ID != fmt.Sprintf("svc-%03d", n-1) {
			t.Fatalf("--limit %d: got %d services", n, len(got))
		}
	}
	if rows := table(t, h.ok("events", "list", "--page-size", "3", "--limit", "7")); len(rows) != 8 {
		t.Fatalf("events list --limit 7: %d rows", len(rows))
	}
}

// TestBadInputIsAUsageErrorAndSendsNothing: each bad input exits 2 with one
// line naming the problem, and no request reaches the registry (the fault
// proxy in front of it counts them).
func TestBadInputIsAUsageErrorAndSendsNothing(t *testing.T) {
	h, p, proxyURL := proxiedHarness(t)
	connArgs := []string{"--registry", proxyURL, "--username", h.user, "--api-key", testKey}
	tests := []struct {
		name string
		args []string
		want string // in the one line on stderr
	}{
		{"unknown command", []string{"bogus"}, "unexpected argument bogus"},
		{"no command", nil, `expected one of "services"`},
		{"unknown subcommand", []string{"services", "frobnicate"}, "services: unexpected argument frobnicate"},
		{"missing service id", []string{"services", "get"}, `services get: expected "<id>"`},
		{"missing config value", []string{"config", "set", "production/db_host"}, `config set: expected "<value>"`},
		{"bad output", []string{"--output", "xml", "limits"}, `--output must be one of "table","json" but got "xml"`},
		{"negative limit", []string{"--limit=-1", "services", "list"}, "--limit: must be 0 (all) or more, got -1"},
		{"negative limit as two words", []string{"--limit", "-1", "services", "list"}, "--limit"},
		{"page size too big", []string{"--page-size", "1001", "services", "list"}, "--page-size"},
		{"bad service id", []string{"services", "get", "no spaces allowed"}, "ID: must match"},
		{"bad session id", []string{"sessions", "get", "se0123456789abcdef"}, "ID: must be 1..15 characters"},
		{"bad config id", []string{"config", "get", "production/db/host"}, "ID: must match"},
		{"config id that is a namespace", []string{"config", "get", "production/"}, "makes it a namespace"},
		{"config value too long", []string{"config", "set", "production/db_host", strings.Repeat("x", 1025)}, "VALUE: must be 1..1024 characters"},
		{"namespace without its slash", []string{"config", "list", "production"}, `NAMESPACE: "production" must end in a slash`},
		{"since beyond the feed", []string{"events", "list", "--since", "2h"}, "--since: without --marker the feed holds only the last hour"},
		{"bad since", []string{"events", "list", "--since", "soon"}, "--since"},
		{"follow interval too short", []string{"events", "follow", "--interval", "1ms"}, "--interval"},
		{"tag too long", []string{"services", "list", "--tag", strings.Repeat("t", 56)}, "--tag: must be 1..55 characters"},
		{"etcd registry", []string{"--registry", "etcd://127.0.0.1:2379", "services", "list"}, "srctl speaks the Service Registry API"},
		{"unknown scheme", []string{"--registry", "ftp://x", "services", "list"}, "--registry: unknown scheme"},
		{"both key flags", []string{"--api-key-file", "/nonexistent", "services", "list"}, "--api-key and --api-key-file: give one, not both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(slices.Clone(connArgs), tt.args...)
			// The registry flag given last wins with kong: let the
			// test's own --registry replace the proxy's.
			r := h.runRaw(args...)
			if r.code != srctl.ExitUsage || r.stdout != "" || !strings.HasPrefix(r.stderr, "srctl: ") ||
				strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 2 and one line with %q", r.code, r.stdout, r.stderr, tt.want)
			}
			if n := p.Requests(); n != 0 {
				t.Fatalf("%d requests reached the registry; want none", n)
			}
		})
	}
	t.Run("missing username", func(t *testing.T) {
		r := h.runRaw("--registry", proxyURL, "--api-key", testKey, "limits")
		if r.code != srctl.ExitUsage || !strings.Contains(r.stderr, "--username: required") {
			t.Fatalf("%+v", r)
		}
		if n := p.Requests(); n != 0 {
			t.Fatalf("%d requests reached the registry; want none", n)
		}
	})
	// Nothing reached the registry: no usage error wrote anything.
	sameJSON(t, "configuration after bad input", h.ok("config", "list", "-o", "json"), []any{})
}

func TestHelpOnEveryCommandHasAnExample(t *testing.T) {
	h := setup(t)
	commands := [][]string{
		{"services", "list"}, {"services", "get"}, {"services", "rm"},
		{"sessions", "list"}, {"sessions", "get"},
		{"events", "list"}, {"events", "follow"},
		{"config", "list"}, {"config", "get"}, {"config", "set"}, {"config", "rm"},
		{"limits"}, {"overview"},
	}
	for _, c := range commands {
		r := h.runRaw(append(c, "--help")...)
		want := "Usage: srctl " + strings.Join(c, " ")
		if r.code != 0 || !strings.Contains(r.stdout, want) || !strings.Contains(r.stdout, "Example") ||
			!strings.Contains(r.stdout, "srctl "+strings.Join(c, " ")) {
			t.Errorf("%s --help: exit %d, output:\n%s", c, r.code, r.stdout)
		}
	}
	r := h.runRaw("--help")
	if r.code != 0 || !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "Exit status") {
		t.Errorf("--help: exit %d, output:\n%s", r.code, r.stdout)
	}
	if strings.Contains(r.stdout, "page-size") || strings.Contains(r.stdout, "etcd") {
		t.Errorf("--help shows a hidden or etcd flag:\n%s", r.stdout)
	}
	r = h.runRaw("--version")
	if r.code != 0 || r.stdout != "srctl v9.9.9-test (commit abc, built today)\n" {
		t.Errorf("--version: exit %d, %q", r.code, r.stdout)
	}
}

// TestAPIKeyIsNeverPrinted runs commands that succeed and fail, with
// --debug, and looks for the key everywhere.
func TestAPIKeyIsNeverPrinted(t *testing.T) {
	h := setup(t)
	runs := [][]string{
		{"--debug", "services", "list"},
		{"--debug", "services", "get", "nosuchservice"},
		{"--debug", "config", "set", "production/db_host", "x"},
		{"--log-level", "debug", "--debug", "-o", "json", "limits"},
	}
	for _, args := range runs {
		r := h.run(args...)
		if strings.Contains(r.stdout+r.stderr, testKey) {
			t.Fatalf("srctl %s printed the API key:\n%s\n%s", args, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stderr, "http transaction") {
			t.Errorf("srctl %s: no debug dump on stderr:\n%s", args, r.stderr)
		}
	}
	// No registry at all: the transport error is printed, the key is not.
	r := h.runRaw("--registry", "http://127.0.0.1:1/v1.0", "--username", "u", "--api-key", testKey, "sessions", "list")
	if r.code != srctl.ExitError || strings.Contains(r.stderr, testKey) {
		t.Fatalf("unreachable registry: %+v", r)
	}
}
