package packaging_test

import (
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/buildinfo"
	"github.com/sr-wrapper/sr-wrapper/internal/cli"
	"github.com/sr-wrapper/sr-wrapper/internal/linetest"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

// Bounds of the waits. Generous: they only matter when something is
// wrong, and the machine may be compiling next to the tests.
const (
	buildWait = 5 * time.Minute  // one go build, cold cache
	startWait = 20 * time.Second // a process is up, a service registered
	eventWait = 10 * time.Second // something that follows at once
	exitWait  = 30 * time.Second // a process exits after being asked to
)

// testUser and testKey are the credentials the wrapped runs use; the
// registries run in dev mode, where any pair is accepted and the username
// is its own tenant.
const (
	testUser = "ops"
	testKey  = "key"
)

// readRepoFile reads a file of the repository, by its slash path.
func readRepoFile(t *testing.T, root, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatalf("read %s: %v", rel, err)
	}
	return string(b)
}

// goCommand runs the go command in the module root with extra environment
// variables, failing the test with its output if it fails.
func goCommand(t *testing.T, root string, env []string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), buildWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s go %s: %v\n%s", strings.Join(env, " "), strings.Join(args, " "), err, out)
	}
	t.Logf("go %s: %s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
}

// buildStatic builds pkg (a ./relative package of the module) with cgo
// off, as every shipped binary is built, into dir, and returns its path.
// -trimpath matches the Dockerfile and the Makefile, so the compiled
// packages are shared with those builds in Go's cache.
func buildStatic(t *testing.T, root, dir, pkg string) string {
	t.Helper()
	bin := filepath.Join(dir, filepath.Base(pkg))
	goCommand(t, root, []string{"CGO_ENABLED=0"}, "build", "-trimpath", "-o", bin, pkg)
	return bin
}

// hostMachine is the ELF machine of the binaries this host runs.
func hostMachine(t *testing.T) elf.Machine {
	t.Helper()
	switch runtime.GOARCH {
	case "amd64":
		return elf.EM_X86_64
	case "arm64":
		return elf.EM_AARCH64
	}
	testsupport.SkipUnsupported(t, "the packaging tests know the ELF machine of amd64 and arm64 only, not %s", runtime.GOARCH)
	return 0
}

// checkStaticELF reports why path is not a static ELF executable for
// machine: a program interpreter (the dynamic loader), a dynamic segment
// or a needed shared library would each make it fail in an image without
// libc, such as distroless/static or scratch.
func checkStaticELF(path string, machine elf.Machine) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("read ELF %s: %w", path, err)
	}
	defer f.Close()
	if f.Machine != machine {
		return fmt.Errorf("%s: ELF machine %s, want %s", path, f.Machine, machine)
	}
	if f.Type != elf.ET_EXEC {
		return fmt.Errorf("%s: ELF type %s, want an executable (%s)", path, f.Type, elf.ET_EXEC)
	}
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			return fmt.Errorf("%s: has a program interpreter (PT_INTERP): dynamically linked", path)
		case elf.PT_DYNAMIC:
			return fmt.Errorf("%s: has a dynamic segment (PT_DYNAMIC): dynamically linked", path)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("%s: read DT_NEEDED: %w", path, err)
	}
	if len(libs) > 0 {
		return fmt.Errorf("%s: needs shared libraries %v", path, libs)
	}
	return nil
}

// waitLines waits until n lines of l match, and returns the first n of
// them (those found so far with the error).
func waitLines(l *linetest.Lines, timeout time.Duration, n int, match func(string) bool) ([]string, error) {
	deadline := time.Now().Add(timeout)
	var found []string
	from := 0
	for len(found) < n {
		line, err := l.WaitFrom(from, time.Until(deadline), func(x linetest.Line) bool { return match(x.Text) })
		if err != nil {
			return found, err
		}
		found = append(found, line.Text)
		from = line.Index + 1
	}
	return found, nil
}

// waitLine waits for the first line of l that matches.
func waitLine(l *linetest.Lines, timeout time.Duration, match func(string) bool) (string, error) {
	found, err := waitLines(l, timeout, 1, match)
	if err != nil {
		return "", err
	}
	return found[0], nil
}

// hasPrefix matches lines that start with p.
func hasPrefix(p string) func(string) bool {
	return func(s string) bool { return strings.HasPrefix(s, p) }
}

// logMsg matches the JSON log lines whose message is msg.
func logMsg(msg string) func(string) bool {
	return func(s string) bool {
		e := logEntry(s)
		return e != nil && e["msg"] == msg
	}
}

// logEntry decodes a JSON log line, nil for any other line.
func logEntry(s string) map[string]any {
	var e map[string]any
	if json.Unmarshal([]byte(s), &e) != nil {
		return nil
	}
	return e
}

// registryClient is a client of reg with the credentials of the wrapped
// runs, so it sees their tenant.
func registryClient(t *testing.T, reg *registrytest.Registry) *srapi.Client {
	t.Helper()
	return registrytest.NewClient(t, reg.URL, "", testUser, testKey)
}

// waitRegistered waits until the registry holds the service id and
// accept (nil: any) takes it, and returns it. Each look has a context of
// its own.
func waitRegistered(t *testing.T, c *srapi.Client, id string, accept func(*api.Service) error) *api.Service {
	t.Helper()
	var svc *api.Service
	testsupport.Eventually(t, startWait, "service "+id+" registered", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), eventWait)
		defer cancel()
		s, err := c.GetService(ctx, id)
		if err != nil {
			return err
		}
		if accept != nil {
			if err := accept(s); err != nil {
				return err
			}
		}
		svc = s
		return nil
	})
	return svc
}

// checkDeregistered checks, at once, that neither the service nor its
// session is left: the wrapper deletes the session before it exits, so
// nothing may linger until the heartbeat timeout.
func checkDeregistered(t *testing.T, c *srapi.Client, svc *api.Service) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), eventWait)
	defer cancel()
	if s, err := c.GetService(ctx, svc.ID); !srapi.IsNotFound(err) {
		t.Errorf("service %s after the wrapper exited: %+v, %v; want it gone (404)", svc.ID, s, err)
	}
	if s, err := c.GetSession(ctx, svc.SessionID); !srapi.IsNotFound(err) {
		t.Errorf("session %s after the wrapper exited: %+v, %v; want it deleted (404)", svc.SessionID, s, err)
	}
}

// shellWords splits a command line as sh would for the simple forms the
// packaging files use: blanks separate words, '…' and "…" group (with \"
// and \\ inside double quotes), and nothing is expanded. It fails on what
// it does not understand rather than guess.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated \" in %q", s)
			}
			inWord = true
		case c == '\\' || c == '`' || c == '|' || c == '&' || c == ';' || c == '<' || c == '>':
			return nil, fmt.Errorf("%q: %c is beyond this test's simple shell splitting", s, c)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// parseWrapperWithEnv parses and validates a wrapper command line (without
// the program name) the way sr-wrapper does at start, in a process whose
// environment holds exactly env of the SR_* variables, as the unit or
// program section would give it. The environment is the test's own
// (t.Setenv): the flag parser reads SR_REGISTRY_URL, SR_USERNAME and
// SR_DEBUG from the process environment itself, not through getenv.
func parseWrapperWithEnv(t *testing.T, args []string, env map[string]string) (*cli.WrapperConfig, error) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "SR_") {
			t.Setenv(k, "")
			_ = os.Unsetenv(k) // t.Setenv restores it at the end
		}
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	var stdout, stderr strings.Builder
	cfg, err := cli.ParseWrapper(args, buildinfo.Info{Version: "test"}, os.Getenv, &stdout, &stderr)
	if err != nil && stdout.Len()+stderr.Len() > 0 {
		return nil, fmt.Errorf("%w (printed %q)", err, stdout.String()+stderr.String())
	}
	return cfg, err
}
