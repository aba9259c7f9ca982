package packaging_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/signals"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

const supervisordExample = "packaging/supervisord/sr-wrapper-web.conf"

// TestSupervisordStopReachesChildAndDeregisters runs the example program
// section itself under Debian's supervisord — only the paths, the
// registry URL and the program (fakeproc for python3) substituted — and
// checks what README.md promises: "supervisorctl stop" reaches the
// program through the wrapper, the service is deregistered, and
// supervisord sees the program's own exit status, both for a stop and
// for a program that exits by itself.
func TestSupervisordStopReachesChildAndDeregisters(t *testing.T) {
	sv := requireSupervisord(t)
	root := testsupport.ModuleRoot(t)
	bins := t.TempDir()
	wrapper := buildStatic(t, root, bins, "./cmd/sr-wrapper")
	fakeproc := buildStatic(t, root, bins, "./testdata/fakeproc")
	example := readRepoFile(t, root, supervisordExample)

	t.Run("supervisorctl stop: TERM reaches the child, deregistered, exit status 0", func(t *testing.T) {
		reg := registrytest.Start(t)
		c := registryClient(t, reg)
		run := sv.start(t, example, wrapper, reg, fakeproc+" --ready --report-signals --exit-on-term 0")
		svc := waitRegistered(t, c, run.serviceID, nil)
		run.waitStatus(t, "RUNNING")

		out, err := run.ctl("stop", "web")
		if err != nil || !strings.Contains(out, "web: stopped") {
			t.Fatalf("supervisorctl stop web: %v: %s", err, out)
		}
		// supervisorctl returns once supervisord has seen the wrapper
		// exit, and the wrapper deregisters before it exits.
		checkDeregistered(t, c, svc)
		run.waitProgramLog(t, "the child got TERM", "signal SIGTERM")
		run.waitProgramLog(t, "the wrapper deregistered", `"msg":"deregistered"`)
		run.waitStatus(t, "STOPPED")
		run.waitSupervisordLog(t, "supervisord saw the child's exit status", "stopped: web (exit status 0)")
	})

	t.Run("the child exits 3 by itself: not expected, restarted", func(t *testing.T) {
		reg := registrytest.Start(t)
		c := registryClient(t, reg)
		run := sv.start(t, example, wrapper, reg, fakeproc+" --ready --exit-on-term 3")
		svc := waitRegistered(t, c, run.serviceID, nil)
		run.waitStatus(t, "RUNNING")

		// The child ends by itself: neither supervisord nor the wrapper
		// is asked to stop anything (the TERM goes to the child alone,
		// which answers it with exit code 3, as a crash would end it).
		childPID := run.childPID(t)
		if err := syscall.Kill(childPID, syscall.SIGTERM); err != nil {
			t.Fatalf("TERM to the child %d: %v", childPID, err)
		}
		run.waitSupervisordLog(t, "supervisord saw the child's exit status", "exited: web (exit status 3; not expected)")
		// The wrapper exited after deregistering: the old session is gone
		// at once, not after the heartbeat timeout.
		ctx, cancel := context.WithTimeout(context.Background(), eventWait)
		s, err := c.GetSession(ctx, svc.SessionID)
		cancel()
		if !srapi.IsNotFound(err) {
			t.Errorf("session %s after the wrapper exited: %+v, %v; want it deleted (404)", svc.SessionID, s, err)
		}
		// autorestart=unexpected: supervisord starts it again, and the
		// service comes back with a new session.
		run.waitSupervisordLog(t, "supervisord restarted the program", "spawned: 'web'", "spawned: 'web'")
		waitRegistered(t, c, svc.ID, func(s *api.Service) error {
			if s.SessionID == svc.SessionID {
				return fmt.Errorf("still the old session %s", s.SessionID)
			}
			return nil
		})
	})
}

// TestSupervisordExampleSettings checks the example program section
// against the wrapper without running supervisord: its command parses
// and validates with the wrapper's own flag parser, and supervisord's stop
// settings leave room for the wrapper's stop sequence.
func TestSupervisordExampleSettings(t *testing.T) {
	root := testsupport.ModuleRoot(t)
	sections, err := parseSupervisorConf(readRepoFile(t, root, supervisordExample))
	if err != nil {
		t.Fatalf("%s: %v", supervisordExample, err)
	}
	prog, ok := sections["program:web"]
	if !ok || len(sections) != 1 {
		t.Fatalf("%s: sections %v, want [program:web] alone (a conf.d include)", supervisordExample, slices.Collect(maps.Keys(sections)))
	}
	env, err := parseSupervisorEnv(prog["environment"])
	if err != nil {
		t.Fatalf("environment=: %v", err)
	}
	keyFile := filepath.Join(t.TempDir(), "api-key")
	if err := os.WriteFile(keyFile, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	command := strings.ReplaceAll(prog["command"], "%(host_node_name)s", "host1")
	command = strings.ReplaceAll(command, "/etc/sr-wrapper/api-key", keyFile)
	argv, err := shellWords(command)
	if err != nil {
		t.Fatalf("command=: %v", err)
	}
	if len(argv) == 0 || filepath.Base(argv[0]) != "sr-wrapper" {
		t.Fatalf("command= runs %q, want sr-wrapper", argv)
	}
	cfg, err := parseWrapperWithEnv(t, argv[1:], env)
	if err != nil {
		t.Fatalf("command= does not validate with sr-wrapper's parser: %v\nargv: %q", err, argv)
	}
	if cfg.Service.ID != "host1-web" {
		t.Errorf("service id %q, want host1-web", cfg.Service.ID)
	}

	stopSig, err := signals.Parse(prog["stopsignal"])
	if err != nil {
		t.Fatalf("stopsignal=%s: %v", prog["stopsignal"], err)
	}
	if stopSig != syscall.SIGTERM && stopSig != syscall.SIGINT && stopSig != syscall.SIGQUIT {
		t.Errorf("stopsignal=%s: the wrapper deregisters and stops the program on TERM, INT or QUIT only", prog["stopsignal"])
	}
	wait, err := strconv.Atoi(prog["stopwaitsecs"])
	if err != nil {
		t.Fatalf("stopwaitsecs=%q: %v", prog["stopwaitsecs"], err)
	}
	if need := cfg.DrainDelay + cfg.StopTimeout; time.Duration(wait)*time.Second <= need {
		t.Errorf("stopwaitsecs=%d is not longer than --drain-delay + --stop-timeout (%s): supervisord's SIGKILL would hit the wrapper first and leave the program running", wait, need)
	}
	if v := prog["autorestart"]; v != "unexpected" {
		t.Errorf("autorestart=%s, the README promises unexpected", v)
	}
	if _, err := strconv.Atoi(prog["exitcodes"]); err != nil {
		t.Errorf("exitcodes=%q: want the program's expected exit code", prog["exitcodes"])
	}
}

// supervisor holds the paths of Debian's supervisord and supervisorctl.
type supervisor struct {
	supervisord, supervisorctl string
}

func requireSupervisord(t *testing.T) supervisor {
	t.Helper()
	var sv supervisor
	var err error
	if sv.supervisord, err = exec.LookPath("supervisord"); err != nil {
		testsupport.SkipUnsupported(t, "needs supervisord (Debian's supervisor package; scripts/test-deps.sh installs it as root): %v", err)
	}
	if sv.supervisorctl, err = exec.LookPath("supervisorctl"); err != nil {
		testsupport.SkipUnsupported(t, "needs supervisorctl (Debian's supervisor package): %v", err)
	}
	return sv
}

// svRun is one supervisord in the foreground, in a directory of its own.
type svRun struct {
	sv         supervisor
	conf       string
	log        string // supervisord's own log
	programLog string // stdout_logfile of [program:web]: wrapper and child
	serviceID  string
	exited     chan struct{}
}

// start writes a supervisord configuration of its own (socket, pidfile,
// logs in a fresh directory) around the example's [program:web], with
// the example's paths replaced by the built wrapper, a temporary API key
// file and log, reg's URL, and program instead of python3; then runs
// supervisord in the foreground until the test ends.
func (sv supervisor) start(t *testing.T, example, wrapper string, reg *registrytest.Registry, program string) *svRun {
	t.Helper()
	// A short directory: the unix socket's path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "svd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	run := &svRun{
		sv:         sv,
		conf:       filepath.Join(dir, "supervisord.conf"),
		log:        filepath.Join(dir, "supervisord.log"),
		programLog: filepath.Join(dir, "web.log"),
		exited:     make(chan struct{}),
	}
	keyFile := filepath.Join(dir, "api-key")
	if err := os.WriteFile(keyFile, []byte(testKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	run.serviceID = host + "-web"
	replacements := []struct{ old, new string }{
		{"/usr/local/bin/sr-wrapper ", wrapper + " "},
		{"--api-key-file=/etc/sr-wrapper/api-key", "--api-key-file=" + keyFile},
		{"/usr/bin/python3 -m http.server 8080", program},
		{`SR_REGISTRY_URL="http://registry.internal:8181/v1.0"`, `SR_REGISTRY_URL="` + reg.URL + `"`},
		{`SR_USERNAME="ops"`, `SR_USERNAME="` + testUser + `"`},
		{"stdout_logfile=/var/log/supervisor/web.log", "stdout_logfile=" + run.programLog},
	}
	if err := api.ValidateServiceID(run.serviceID); err != nil {
		// %(host_node_name)s is what a real machine would use; this
		// one's name does not make a valid service id.
		t.Logf("host name %q does not make a valid service id (%v): using pkgtest-web", host, err)
		run.serviceID = "pkgtest-web"
		replacements = append(replacements, struct{ old, new string }{"%(host_node_name)s-web", run.serviceID})
	}
	program, err = substitute(example, replacements)
	if err != nil {
		t.Fatalf("%s: %v", supervisordExample, err)
	}

	conf := fmt.Sprintf(`; Written by internal/packaging's test: its own socket, pidfile and logs.
[unix_http_server]
file=%[1]s/supervisor.sock
chmod=0700

[supervisord]
nodaemon=true
logfile=%[1]s/supervisord.log
pidfile=%[1]s/supervisord.pid
childlogdir=%[1]s
loglevel=info

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://%[1]s/supervisor.sock

; From here on: %[2]s as shipped, paths substituted.
%[3]s`, dir, supervisordExample, program)
	if err := os.WriteFile(run.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(sv.supervisord, "--nodaemon", "--configuration", run.conf)
	out, err := os.Create(filepath.Join(dir, "supervisord.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start supervisord: %v", err)
	}
	go func() {
		_ = cmd.Wait()
		close(run.exited)
	}()
	t.Cleanup(func() {
		// TERM: supervisord stops its programs the configured way, then
		// exits.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-run.exited:
		case <-time.After(exitWait):
			t.Errorf("supervisord did not exit within %s of TERM", exitWait)
			_ = cmd.Process.Kill()
			<-run.exited
		}
		if t.Failed() {
			for _, f := range []string{run.conf, filepath.Join(dir, "supervisord.out"), run.log, run.programLog} {
				b, _ := os.ReadFile(f)
				t.Logf("%s:\n%s", f, b)
			}
		}
	})
	return run
}

// substitute applies each replacement, which must match exactly once:
// when the example changes, the test says what it no longer finds.
func substitute(s string, replacements []struct{ old, new string }) (string, error) {
	for _, r := range replacements {
		if n := strings.Count(s, r.old); n != 1 {
			return "", fmt.Errorf("contains %q %d times, want once: update the test with the example", r.old, n)
		}
		s = strings.Replace(s, r.old, r.new, 1)
	}
	return s, nil
}

// ctl runs supervisorctl against this supervisord.
func (r *svRun) ctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), exitWait)
	defer cancel()
	out, err := exec.CommandContext(ctx, r.sv.supervisorctl, append([]string{"--configuration", r.conf}, args...)...).CombinedOutput()
	return string(out), err
}

// waitStatus waits until supervisorctl reports the program in state.
func (r *svRun) waitStatus(t *testing.T, state string) {
	t.Helper()
	testsupport.Eventually(t, startWait, "supervisorctl status web: "+state, func() error {
		// status exits non-zero for a program that is not running.
		out, _ := r.ctl("status", "web")
		if f := strings.Fields(out); len(f) >= 2 && f[0] == "web" && f[1] == state {
			return nil
		}
		return fmt.Errorf("status: %q", out)
	})
}

// waitSupervisordLog waits until supervisord's log holds each of lines,
// in order (a line given twice must occur twice).
func (r *svRun) waitSupervisordLog(t *testing.T, what string, lines ...string) {
	t.Helper()
	waitFileLines(t, r.log, what, lines...)
}

// waitProgramLog is waitSupervisordLog for the program's stdout_logfile.
func (r *svRun) waitProgramLog(t *testing.T, what string, lines ...string) {
	t.Helper()
	waitFileLines(t, r.programLog, what, lines...)
}

func waitFileLines(t *testing.T, path, what string, lines ...string) {
	t.Helper()
	testsupport.Eventually(t, startWait, what, func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rest := string(b)
		for _, l := range lines {
			i := strings.Index(rest, l)
			if i < 0 {
				return fmt.Errorf("%s has no %q (yet)", path, l)
			}
			rest = rest[i+len(l):]
		}
		return nil
	})
}

var readyLine = regexp.MustCompile(`(?m)^ready pid=(\d+)$`)

// childPID is the pid of the wrapped child, from its "ready" line.
func (r *svRun) childPID(t *testing.T) int {
	t.Helper()
	var pid int
	testsupport.Eventually(t, startWait, "the child's ready line", func() error {
		b, err := os.ReadFile(r.programLog)
		if err != nil {
			return err
		}
		m := readyLine.FindSubmatch(b)
		if m == nil {
			return fmt.Errorf("no ready line in %s", r.programLog)
		}
		pid, err = strconv.Atoi(string(m[1]))
		return err
	})
	return pid
}

// parseSupervisorConf reads a supervisord configuration as supervisord's
// parser does for the forms the example uses: [section], key=value,
// indented lines continuing the value before (joined with a newline),
// whole-line comments starting with ; or #, inline comments after " ;".
func parseSupervisorConf(text string) (map[string]map[string]string, error) {
	sections := map[string]map[string]string{}
	var cur map[string]string
	var lastKey string
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed[0] == ';' || trimmed[0] == '#' {
			continue
		}
		if j := strings.Index(line, " ;"); j >= 0 {
			line = line[:j]
			trimmed = strings.TrimSpace(line)
		}
		switch {
		case line[0] == ' ' || line[0] == '\t':
			if cur == nil || lastKey == "" {
				return nil, fmt.Errorf("line %d: continuation of nothing", i+1)
			}
			cur[lastKey] += "\n" + trimmed
		case strings.HasPrefix(trimmed, "[") && strings.HasSuffix(trimmed, "]"):
			name := trimmed[1 : len(trimmed)-1]
			cur = map[string]string{}
			sections[name] = cur
			lastKey = ""
		default:
			k, v, ok := strings.Cut(trimmed, "=")
			if !ok || cur == nil {
				return nil, fmt.Errorf("line %d: %q is not key=value inside a section", i+1, trimmed)
			}
			lastKey = strings.TrimSpace(k)
			cur[lastKey] = strings.TrimSpace(v)
		}
	}
	return sections, nil
}

// parseSupervisorEnv reads environment=KEY="value",KEY2="value2".
func parseSupervisorEnv(s string) (map[string]string, error) {
	env := map[string]string{}
	for s != "" {
		k, rest, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want KEY=value", s)
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				return nil, fmt.Errorf("%q: unterminated quote", rest)
			}
			v, rest = rest[1:1+end], rest[2+end:]
		} else {
			v, rest, _ = strings.Cut(rest, ",")
			rest = "," + rest
		}
		env[strings.TrimSpace(k)] = v
		s = strings.TrimPrefix(strings.TrimSpace(rest), ",")
	}
	return env, nil
}
