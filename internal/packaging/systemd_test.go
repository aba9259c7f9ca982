package packaging_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/signals"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

const systemdExample = "packaging/systemd/sr-wrapper-apache.service"

// TestSystemdExampleUnit checks the example unit against what README.md
// promises and against the wrapper itself. No systemd runs here, so it
// reads the unit as systemd would (sections, continuation lines,
// specifiers) and checks the settings; the sd_notify protocol behind
// Type=notify is tested for real in internal/wrapper and internal/sdnotify.
func TestSystemdExampleUnit(t *testing.T) {
	root := testsupport.ModuleRoot(t)
	unit, err := parseUnit(readRepoFile(t, root, systemdExample))
	if err != nil {
		t.Fatalf("%s: %v", systemdExample, err)
	}
	svc := unit["Service"]
	if svc == nil {
		t.Fatalf("%s: no [Service] section", systemdExample)
	}

	for _, want := range []struct{ key, value, why string }{
		{"Type", "notify", "the wrapper sends READY=1 once the child runs and the service is registered"},
		{"KillMode", "mixed", "TERM to the wrapper alone, so that it deregisters before the program hears of the stop"},
		{"Restart", "on-failure", "the wrapper exits with the program's status: a crash restarts, a clean stop does not"},
	} {
		if got := svc.last(want.key); got != want.value {
			t.Errorf("%s=%q, want %q: %s", want.key, got, want.value, want.why)
		}
	}
	if got := svc.last("NotifyAccess"); got != "" && got != "main" {
		t.Errorf("NotifyAccess=%s, want main (or unset): the wrapper, the main process, speaks for the unit, and its child never sees NOTIFY_SOCKET", got)
	}

	// ExecStart parses and validates with the wrapper's own flag parser,
	// in the environment the unit gives it.
	env := map[string]string{}
	for _, e := range svc.all("Environment") {
		words, err := shellWords(e)
		if err != nil {
			t.Fatalf("Environment=%s: %v", e, err)
		}
		for _, w := range words {
			k, v, ok := strings.Cut(w, "=")
			if !ok {
				t.Fatalf("Environment=%s: %q is not NAME=value", e, w)
			}
			env[k] = v
		}
	}
	execStart, err := unitCommand(svc.last("ExecStart"), "web-01")
	if err != nil {
		t.Fatalf("ExecStart: %v", err)
	}
	if len(execStart) == 0 || filepath.Base(execStart[0]) != "sr-wrapper" {
		t.Fatalf("ExecStart runs %q, want sr-wrapper", execStart)
	}
	keyFile := filepath.Join(t.TempDir(), "api-key")
	if err := os.WriteFile(keyFile, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := make([]string, 0, len(execStart)-1)
	sawKeyFile := false
	for _, a := range execStart[1:] {
		if strings.HasPrefix(a, "--api-key-file=") {
			a, sawKeyFile = "--api-key-file="+keyFile, true
		}
		args = append(args, a)
	}
	if !sawKeyFile {
		t.Errorf("ExecStart has no --api-key-file: the unit's comments promise the key is kept out of the command line and the unit")
	}
	cfg, err := parseWrapperWithEnv(t, args, env)
	if err != nil {
		t.Fatalf("ExecStart does not validate with sr-wrapper's parser: %v\nargv: %q", err, execStart)
	}
	if cfg.Service.ID != "web-01-apache" {
		t.Errorf("service id %q, want web-01-apache (%%H-apache)", cfg.Service.ID)
	}
	if cfg.StopSignal != syscall.SIGWINCH {
		t.Errorf("--stop-signal is %s, want SIGWINCH, Apache's graceful stop", signals.Name(cfg.StopSignal))
	}
	if len(cfg.Command) == 0 || cfg.Command[0] != "/usr/sbin/apachectl" {
		t.Errorf("wrapped command %q, want /usr/sbin/apachectl ...", cfg.Command)
	}

	// systemd's stop deadline leaves the wrapper's stop sequence room to
	// run to its end.
	stop, err := timespan(svc.last("TimeoutStopSec"))
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	if need := cfg.DrainDelay + cfg.StopTimeout; stop <= need {
		t.Errorf("TimeoutStopSec=%s is not longer than --drain-delay + --stop-timeout (%s): systemd would SIGKILL the cgroup before the wrapper's own SIGKILL",
			stop, need)
	}

	// The watchdog: long enough that a busy machine never starves it,
	// and a watchdog timeout restarts the unit.
	wd, err := timespan(svc.last("WatchdogSec"))
	if err != nil {
		t.Errorf("WatchdogSec: %v; want it set: the wrapper pings systemd's watchdog from its supervising loop", err)
	} else if wd < 10*time.Second {
		t.Errorf("WatchdogSec=%s; want 10s or more, so that a loaded machine does not make a working wrapper miss a ping", wd)
	}
	if r := svc.last("Restart"); r != "on-failure" && r != "on-watchdog" && r != "on-abnormal" && r != "always" {
		t.Errorf("Restart=%s does not restart the unit after a watchdog timeout", r)
	}

	// systemctl reload: HUP to the wrapper, which forwards it.
	reload, err := unitCommand(svc.last("ExecReload"), "web-01")
	if err != nil {
		t.Fatalf("ExecReload: %v", err)
	}
	if len(reload) != 3 || filepath.Base(reload[0]) != "kill" || reload[1] != "-HUP" || reload[2] != "$MAINPID" {
		t.Errorf("ExecReload=%q, want kill -HUP $MAINPID", reload)
	}
	if !slices.Contains(signals.Forwarded(), os.Signal(syscall.SIGHUP)) {
		t.Error("the wrapper does not forward SIGHUP: ExecReload would not reach the program")
	}

	// The README's excerpt says the same as the unit.
	excerpt, err := readmeSystemdExcerpt(readRepoFile(t, root, "README.md"))
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	for _, key := range []string{"Type", "WatchdogSec", "KillMode", "TimeoutStopSec", "ExecReload", "Restart"} {
		if got, want := excerpt[key], svc.last(key); got != want {
			t.Errorf("README's systemd excerpt has %s=%q, the unit %q", key, got, want)
		}
	}
}

// unitSection is one section of a unit file: each key's values in order
// (a key may repeat, as Environment= does).
type unitSection map[string][]string

func (s unitSection) all(key string) []string { return s[key] }

// last is the value systemd uses for a key that does not accumulate.
func (s unitSection) last(key string) string {
	if v := s[key]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

// parseUnit reads a unit file as systemd does for the forms the example
// uses: [Section], Key=Value, comment lines starting with # or ;, and a
// line ending in a backslash continued by the next (comment lines between
// are skipped). systemd has no inline comments: a # after a value is part
// of it.
func parseUnit(text string) (map[string]unitSection, error) {
	sections := map[string]unitSection{}
	var cur unitSection
	var pending strings.Builder
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" && pending.Len() == 0 {
			continue
		}
		if strings.HasPrefix(trimmed, "#") || strings.HasPrefix(trimmed, ";") {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			pending.WriteString(strings.TrimSuffix(trimmed, "\\"))
			pending.WriteByte(' ')
			continue
		}
		pending.WriteString(trimmed)
		full := pending.String()
		pending.Reset()
		if strings.HasPrefix(full, "[") && strings.HasSuffix(full, "]") {
			cur = unitSection{}
			sections[full[1:len(full)-1]] = cur
			continue
		}
		k, v, ok := strings.Cut(full, "=")
		if !ok || cur == nil {
			return nil, fmt.Errorf("line %d: %q is not Key=Value inside a section", i+1, full)
		}
		k = strings.TrimSpace(k)
		cur[k] = append(cur[k], strings.TrimSpace(v))
	}
	if pending.Len() > 0 {
		return nil, fmt.Errorf("the file ends in a continuation line")
	}
	return sections, nil
}

// unitCommand splits an Exec*= command line into words and expands the
// specifiers, with host as %H; it fails on a specifier or an environment
// variable it does not expand (except $MAINPID as a whole word, which
// systemd expands at run time), rather than check something else than
// what systemd would run.
func unitCommand(line, host string) ([]string, error) {
	line = strings.TrimLeft(line, "@-:+!")
	words, err := shellWords(line)
	if err != nil {
		return nil, err
	}
	for i, w := range words {
		var b strings.Builder
		for j := 0; j < len(w); j++ {
			if w[j] != '%' {
				b.WriteByte(w[j])
				continue
			}
			if j+1 >= len(w) {
				return nil, fmt.Errorf("%q: %% at the end", w)
			}
			j++
			switch w[j] {
			case 'H':
				b.WriteString(host)
			case '%':
				b.WriteByte('%')
			default:
				return nil, fmt.Errorf("%q: specifier %%%c is not one this test expands", w, w[j])
			}
		}
		words[i] = b.String()
		if strings.Contains(words[i], "$") && words[i] != "$MAINPID" {
			return nil, fmt.Errorf("%q: environment variables are not expanded by this test", w)
		}
	}
	return words, nil
}

// timespan parses a systemd time span: a bare number of seconds, or
// numbers with units (us, ms, s, min, h...), summed: "1min 30s".
func timespan(s string) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("not set (systemd's default, 90s, would apply)")
	}
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	units := map[string]time.Duration{
		"us": time.Microsecond, "ms": time.Millisecond,
		"s": time.Second, "sec": time.Second, "second": time.Second, "seconds": time.Second,
		"m": time.Minute, "min": time.Minute, "minute": time.Minute, "minutes": time.Minute,
		"h": time.Hour, "hr": time.Hour, "hour": time.Hour, "hours": time.Hour,
	}
	var total time.Duration
	rest := strings.TrimSpace(s)
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil {
			return 0, fmt.Errorf("%q: want numbers with units", s)
		}
		rest = strings.TrimLeft(rest[i:], " ")
		j := 0
		for j < len(rest) && rest[j] >= 'a' && rest[j] <= 'z' {
			j++
		}
		unit, ok := units[rest[:j]]
		if !ok {
			return 0, fmt.Errorf("%q: unknown unit %q", s, rest[:j])
		}
		total += time.Duration(n) * unit
		rest = strings.TrimLeft(rest[j:], " ")
	}
	return total, nil
}

// readmeSystemdExcerpt reads the Key=Value lines of the first ini block
// under README.md's "## systemd" heading, without the annotations the
// README puts after a #.
func readmeSystemdExcerpt(readme string) (map[string]string, error) {
	_, section, ok := strings.Cut(readme, "\n## systemd\n")
	if !ok {
		return nil, fmt.Errorf("no \"## systemd\" section")
	}
	_, block, ok := strings.Cut(section, "```ini\n")
	if !ok {
		return nil, fmt.Errorf("no ini block in the systemd section")
	}
	block, _, _ = strings.Cut(block, "```")
	out := map[string]string{}
	for _, line := range strings.Split(block, "\n") {
		line, _, _ = strings.Cut(line, "#")
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out, nil
}
