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
	cmd.Dir = testsupport.ModuleRoot(t)
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

// make demo-cluster runs the registry as a cluster: three etcd members,
// three frontends, and a wrapped program that stays registered in the
// same session when the frontend it uses is killed.
func TestMakeDemoCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs the whole demo")
	}
	if _, err := exec.LookPath("make"); err != nil {
		testsupport.SkipUnsupported(t, "make is not installed")
	}
	if _, err := exec.LookPath("etcd"); err != nil {
		testsupport.SkipUnsupported(t, "etcd is not installed (Debian: etcd-server; scripts/test-deps.sh installs it as root)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "demo-cluster")
	cmd.Dir = testsupport.ModuleRoot(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make demo-cluster: %v\n%s", err, out)
	}
	for _, want := range []string{
		"frontend 2 at http://127.0.0.1:",              // three frontends
		"registry frontend failed; moving to the next", // the wrapper moved on
		"still registered in the same session",         // and kept its session
		"deregistered",
		"== Done",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("make demo-cluster output lacks %q:\n%s", want, out)
		}
	}
}
