package packaging_test

import (
	"context"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The README's first command must keep working: make demo builds the
// binaries, starts a registry, wraps a real program, and shows the service
// joining, leaving and timing out.
func TestMakeDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs the whole demo")
	}
	if _, err := exec.LookPath("make"); err != nil {
		testsupport.SkipUnsupported(t, "make is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "demo")
	cmd.Dir = moduleRoot(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make demo: %v\n%s", err, out)
	}
	for _, want := range []string{
		"Dashboard: http://127.0.0.1:", // where to watch it in a browser
		"demo-web  ",                   // listed by srctl while it runs
		"service.join",                 // seen by srctl events follow
		"sr-wrapper exited with 3",     // the crashing child's code
		"services.timeout",             // the killed wrapper's session expired
		"== Done",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("make demo output lacks %q:\n%s", want, out)
		}
	}
}
