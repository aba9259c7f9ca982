package server_test

// The old clients of the API, unchanged, against a real server on
// loopback: the drivers in testdata/oldclients call each client's own
// functions and print one JSON line per call; these tests read the lines
// and check the registry's state. What each client needs is pinned in
// testdata/oldclients (README.md there says what runs where). A client
// that this machine cannot install skips with the reason, and runs from
// $SR_OLDCLIENTS_DIR when that holds a copy installed by hand.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

const oldClientsDir = "../../testdata/oldclients"

// handInstalled is where $SR_OLDCLIENTS_DIR keeps a copy of a client
// (sub is e.g. "node/client-ks0.3.0/node_modules"), or "".
func handInstalled(sub string) string {
	root := os.Getenv("SR_OLDCLIENTS_DIR")
	if root == "" {
		return ""
	}
	p := filepath.Join(root, sub)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// needCommand skips the test when name is not on PATH.
func needCommand(t *testing.T, name, why string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		testsupport.SkipUnsupported(t, "%s not found (%s); scripts/test-deps.sh installs it when run as root", name, why)
	}
	return p
}

// npmUnreachable matches npm's errors for a registry it cannot reach.
var npmUnreachable = regexp.MustCompile(`ENOTFOUND|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EAI_AGAIN|ENETUNREACH|network`)

// npmNotServed matches npm's errors for a package or version that the
// registry it reached does not have.
var npmNotServed = regexp.MustCompile(`E404|ETARGET|No matching version`)

// npmInstall installs the package.json (and package-lock.json, when there
// is one) of testdata/oldclients/<pkg> into a fresh directory and returns
// its node_modules. It skips the test when the registry cannot be reached
// or does not serve a pinned package.
func npmInstall(t *testing.T, pkg string) (string, error) {
	t.Helper()
	npm := needCommand(t, "npm", "Debian's npm, for the Node.js clients")
	dir := t.TempDir()
	src := filepath.Join(oldClientsDir, pkg)
	args := []string{"install", "--no-package-lock"}
	for _, f := range []string{"package.json", "package-lock.json"} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if errors.Is(err, os.ErrNotExist) && f == "package-lock.json" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if f == "package-lock.json" {
			args = []string{"ci"}
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args = append(args, "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", &npmError{pkg: pkg, args: args, err: err, out: string(out)}
	}
	return filepath.Join(dir, "node_modules"), nil
}

type npmError struct {
	pkg  string
	args []string
	err  error
	out  string
}

func (e *npmError) Error() string {
	return "npm " + strings.Join(e.args, " ") + " of testdata/oldclients/" + e.pkg + ": " + e.err.Error() + "\n" + e.out
}

// firstLines keeps the start of npm's output for a skip message.
func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// stepLine is one line of a driver's output.
type stepLine struct {
	Step   string          `json:"step"`
	Result json.RawMessage `json:"result"`
	Error  string          `json:"error"`
	Crash  string          `json:"crash"`
}

// runDriver runs a driver to its end (two minutes at most, the caller's
// context) and returns its steps by name; any failure of the driver fails
// the test with its output. When the driver asks for a restart of the
// registry, runDriver restarts reg and tells the driver to go on.
func runDriver(t *testing.T, cmd *exec.Cmd, reg *registrytest.Registry) map[string]json.RawMessage {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	steps := map[string]json.RawMessage{}
	var failed *stepLine
	var printed strings.Builder
	sc := bufio.NewScanner(stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		printed.WriteString(sc.Text() + "\n")
		var l stepLine
		if jerr := json.Unmarshal(sc.Bytes(), &l); jerr != nil {
			t.Errorf("driver printed %q: %v", sc.Text(), jerr)
			continue
		}
		if l.Error != "" || l.Crash != "" {
			failed = &l
			continue
		}
		steps[l.Step] = l.Result
		if l.Step == "restart wanted" {
			reg.Restart()
			if _, err := io.WriteString(stdin, "go\n"); err != nil {
				t.Errorf("tell the driver the registry restarted: %v", err)
			}
		}
	}
	_ = stdin.Close()
	err = cmd.Wait()
	switch {
	case failed != nil:
		t.Fatalf("the client failed at %s: %s%s\nstderr:\n%s", failed.Step, failed.Error, failed.Crash, stderr.String())
	case err != nil:
		t.Fatalf("driver: %v\nstdout:\n%s\nstderr:\n%s", err, printed.String(), stderr.String())
	case steps["done"] == nil:
		t.Fatalf("driver stopped before the end\nstdout:\n%s\nstderr:\n%s", printed.String(), stderr.String())
	}
	return steps
}

// want decodes a step's result into v and compares it with w.
func want[T any](t *testing.T, steps map[string]json.RawMessage, step string, w T) {
	t.Helper()
	var got T
	if err := json.Unmarshal(steps[step], &got); err != nil || !reflect.DeepEqual(got, w) {
		t.Errorf("%s gave %s, want %+v", step, steps[step], w)
	}
}

// driverEnv is the environment of a driver run as user against reg.
func driverEnv(reg *registrytest.Registry, user string) []string {
	return append(os.Environ(),
		"SR_URL="+reg.URL,
		"SR_AUTH_URL="+reg.AuthURL+"/v2.0",
		"SR_USER="+user,
		"SR_KEY=any-key",
	)
}

// checkStateAfterDriver checks what every driver leaves behind, as user,
// with service ids prefix-svc-1, -2 and -doomed (whose session expired).
func checkStateAfterDriver(t *testing.T, reg *registrytest.Registry, user, prefix string) {
	t.Helper()
	c := newClient(t, reg, user)
	var cl api.List[api.ConfigurationValue]
	c.do(http.MethodGet, "/configuration", nil).want(t, http.StatusOK).decode(t, &cl)
	if w := []api.ConfigurationValue{{ID: "/production/cassandra/listen_ip", Value: "10.0.0.5"}, {ID: "configId", Value: "v1"}}; !reflect.DeepEqual(cl.Values, w) {
		t.Errorf("configuration after the client: %+v, want %+v", cl.Values, w)
	}
	var sl api.List[api.Service]
	c.do(http.MethodGet, "/services", nil).want(t, http.StatusOK).decode(t, &sl)
	if len(sl.Values) != 0 {
		t.Errorf("services after the client removed them: %+v", sl.Values)
	}
	var joined []string
	for _, e := range eventsOfType(c.events(""), api.EventServiceJoin) {
		var s api.Service
		_ = json.Unmarshal(e.Payload, &s)
		joined = append(joined, s.ID)
	}
	if w := []string{prefix + "-svc-1", prefix + "-svc-2", prefix + "-svc-doomed"}; !reflect.DeepEqual(joined, w) {
		t.Errorf("service.join events for %v, want %v", joined, w)
	}
}

// TestOldNodeKeystoneClients: both keystone-client versions that
// service-registry-client 0.1.13 installs with find the tenant in the
// catalog and can read the token's expiry.
func TestOldNodeKeystoneClients(t *testing.T) {
	forEachStore(t, testOldNodeKeystoneClients)
}

func testOldNodeKeystoneClients(t *testing.T, st storeKind) {
	node := needCommand(t, "node", "Debian's nodejs, for the Node.js clients")
	modules, err := npmInstall(t, "node/keystone")
	if err != nil {
		var ne *npmError
		if errors.As(err, &ne) && npmUnreachable.MatchString(ne.out) {
			t.Skipf("the npm registry cannot be reached: %s", firstLines(ne.out, 3))
		}
		t.Fatal(err)
	}
	reg := st.start(t)
	id := reg.Authenticate(t, "node-keystone")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(oldClientsDir, "node", "keystone", "keystone.js"))
	cmd.Env = append(driverEnv(reg, "node-keystone"), "NODE_PATH="+modules)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("keystone.js: %v\n%s", err, out)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r struct {
			Version, Error string
			TenantID       *string `json:"tenantId"`
			Token          string
			ExpiresMs      *int64 `json:"expiresMs"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil || r.Error != "" {
			t.Fatalf("keystone.js printed %q (%v)", line, err)
		}
		seen[r.Version] = true
		if r.TenantID == nil || *r.TenantID != id.TenantID {
			t.Errorf("keystone-client %s reads tenant %v from the catalog, want %s: the client would call /v1.0/undefined", r.Version, r.TenantID, id.TenantID)
		}
		if r.Token != id.Token || r.ExpiresMs == nil || time.Until(time.UnixMilli(*r.ExpiresMs)) < 23*time.Hour {
			t.Errorf("keystone-client %s: token %q expiring at %v, want %q about 24h ahead", r.Version, r.Token, r.ExpiresMs, id.Token)
		}
	}
	if !seen["0.3.0"] || !seen["0.3.1"] {
		t.Fatalf("versions run: %v\n%s", seen, out)
	}
}

// TestOldNodeClient runs service-registry-client 0.1.13 with each
// keystone-client through sessions, heartbeats (its calls and its
// HeartBeater), services, configuration, events, views and limits.
func TestOldNodeClient(t *testing.T) {
	forEachStore(t, testOldNodeClient)
}

func testOldNodeClient(t *testing.T, st storeKind) {
	node := needCommand(t, "node", "Debian's nodejs, for the Node.js clients")
	for _, ks := range []string{"0.3.0", "0.3.1"} {
		t.Run("keystone-client "+ks, func(t *testing.T) {
			pkg := "node/client-ks" + ks
			modules, err := npmInstall(t, pkg)
			if err != nil {
				var ne *npmError
				if !errors.As(err, &ne) {
					t.Fatal(err)
				}
				if modules = handInstalled(pkg + "/node_modules"); modules == "" {
					switch {
					case npmUnreachable.MatchString(ne.out):
						t.Skipf("the npm registry cannot be reached, and $SR_OLDCLIENTS_DIR/%s/node_modules holds no copy: %s", pkg, firstLines(ne.out, 3))
					case npmNotServed.MatchString(ne.out):
						t.Skipf("the npm registry reached from here does not serve a version that testdata/oldclients/%s/package.json pins, "+
							"and $SR_OLDCLIENTS_DIR/%s/node_modules holds no copy installed by hand (testdata/oldclients/README.md); npm says:\n%s",
							pkg, pkg, firstLines(ne.out, 3))
					}
					t.Fatal(err)
				}
				t.Logf("npm could not install %s; using the copy in %s", pkg, modules)
			}
			reg := st.start(t)
			user := "node-client-" + ks
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, filepath.Join(oldClientsDir, "node", "client.js"))
			cmd.Env = append(driverEnv(reg, user), "NODE_PATH="+modules)
			steps := runDriver(t, cmd, reg)
			want(t, steps, "versions", []map[string]string{{"service-registry-client": "0.1.13", "keystone-client": ks}})

			var created []json.RawMessage
			_ = json.Unmarshal(steps["sessions.create"], &created)
			var sid string
			if len(created) == 0 || json.Unmarshal(created[0], &sid) != nil || !strings.HasPrefix(sid, "se") {
				t.Fatalf("sessions.create gave %s", steps["sessions.create"])
			}
			want(t, steps, "sessions.update", []string{sid})
			want(t, steps, "services.create", []string{"node-svc-1"})
			want(t, steps, "services.register", []string{"node-svc-2"})
			want(t, steps, "services.update", []string{"node-svc-1"})
			want(t, steps, "configuration.get configId", []string{"v1"})
			want(t, steps, "configuration.get /production/cassandra/listen_ip", []string{"10.0.0.5"})
			var lists [][]json.RawMessage
			_ = json.Unmarshal(steps["configuration.listForNamespace production"], &lists)
			if len(lists) == 0 || len(lists[0]) != 2 {
				t.Errorf("listForNamespace production gave %s, want the two /production/cassandra values", steps["configuration.listForNamespace production"])
			}
			want(t, steps, "heartbeater", []any{2.0, mustLastSeen(t, steps)})
			want(t, steps, "events poller", []string{"node-svc-doomed"})
			want(t, steps, "configuration.get after restart", []string{"v1"})
			want(t, steps, "configuration.list limit 1", []any{[]any{map[string]any{"id": "/production/cassandra/listen_ip", "value": "10.0.0.5"}}, "configId"})
			want(t, steps, "configuration.list marker", []any{[]any{map[string]any{"id": "configId", "value": "v1"}}, nil})

			c := newClient(t, reg, user)
			var s api.Session
			c.do(http.MethodGet, "/sessions/"+sid, nil).want(t, http.StatusOK).decode(t, &s)
			if s.HeartbeatTimeout != 20 || s.Metadata["client"] != "node" {
				t.Errorf("session after the client's update: %+v", s)
			}
			checkStateAfterDriver(t, reg, user, "node")
		})
	}
}

// mustLastSeen is the last_seen the heartbeater step reports, which only
// has to be a number.
func mustLastSeen(t *testing.T, steps map[string]json.RawMessage) any {
	t.Helper()
	var r []any
	if err := json.Unmarshal(steps["heartbeater"], &r); err != nil || len(r) != 2 {
		t.Fatalf("heartbeater gave %s", steps["heartbeater"])
	}
	if _, ok := r[1].(float64); !ok {
		t.Fatalf("heartbeater gave %s: last_seen must be a number", steps["heartbeater"])
	}
	return r[1]
}

// TestOldPythonClient runs the Python client (service-registry 0.1.9 on
// apache-libcloud 0.12.1) on Debian's Python through the same calls.
func TestOldPythonClient(t *testing.T) {
	forEachStore(t, testOldPythonClient)
}

func testOldPythonClient(t *testing.T, st storeKind) {
	lib := handInstalled("python")
	if lib == "" {
		t.Skip("python-service-registry 0.1.9 and apache-libcloud 0.12.1 cannot be installed on this machine: " +
			"PyPI is not reachable from it and Debian packages neither (python3-libcloud is 3.4.1). " +
			"To run this test, put both packages (service_registry/ and libcloud/) in $SR_OLDCLIENTS_DIR/python")
	}
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		python = needCommand(t, "python3", "Debian's python3, for the Python client")
	}
	if out, err := exec.Command(python, "-c", "import requests, dateutil").CombinedOutput(); err != nil {
		t.Skipf("%s lacks what the Python client imports (Debian: python3-requests python3-dateutil): %s", python, out)
	}
	reg := st.start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, filepath.Join(oldClientsDir, "python", "client.py"))
	cmd.Env = append(driverEnv(reg, "python-client"), "PYTHONPATH="+lib)
	steps := runDriver(t, cmd, reg)
	want(t, steps, "versions", map[string]string{"service_registry": "0.1.9", "libcloud": "0.12.1"})

	var created []json.RawMessage
	_ = json.Unmarshal(steps["sessions.create"], &created)
	var sid string
	if len(created) < 2 || json.Unmarshal(created[1], &sid) != nil || !strings.HasPrefix(sid, "se") {
		t.Fatalf("sessions.create gave %s", steps["sessions.create"])
	}
	want(t, steps, "sessions.update", true)
	want(t, steps, "services.create", "py-svc-1")
	want(t, steps, "services.register", "py-svc-2")
	want(t, steps, "configuration.get configId", api.ConfigurationValue{ID: "configId", Value: "v1"})
	want(t, steps, "configuration.get /production/cassandra/listen_ip", api.ConfigurationValue{ID: "/production/cassandra/listen_ip", Value: "10.0.0.5"})
	var ns api.List[api.ConfigurationValue]
	if err := json.Unmarshal(steps["configuration.list_for_namespace production"], &ns); err != nil || len(ns.Values) != 2 {
		t.Errorf("list_for_namespace production gave %s, want the two /production/cassandra values", steps["configuration.list_for_namespace production"])
	}
	want(t, steps, "heartbeater", []any{2.0, mustLastSeen(t, steps)})
	want(t, steps, "events after expiry", []string{"py-svc-doomed"})
	want(t, steps, "configuration.get after restart", api.ConfigurationValue{ID: "configId", Value: "v1"})
	var p1, p2 api.List[api.ConfigurationValue]
	_ = json.Unmarshal(steps["configuration.list limit 1"], &p1)
	_ = json.Unmarshal(steps["configuration.list marker"], &p2)
	if ids1, ids2 := configIDs(p1.Values), configIDs(p2.Values); !reflect.DeepEqual(ids1, []string{"/production/cassandra/listen_ip"}) || !reflect.DeepEqual(ids2, []string{"configId"}) {
		t.Errorf("pages of one: %v then %v, want [/production/cassandra/listen_ip] then [configId]", ids1, ids2)
	}
	checkStateAfterDriver(t, reg, "python-client", "py")
}
