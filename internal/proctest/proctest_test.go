package proctest

import (
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// A command name with a space and parentheses must not shift the fields
// after it.
func TestStatChildrenZombiesWithAStrangeCommandName(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		testsupport.SkipUnsupported(t, "no sleep(1)")
	}
	strange := filepath.Join(t.TempDir(), "a) R 1 (b")
	if err := os.Symlink(sleep, strange); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(strange, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	state, ppid, ok := Stat(pid)
	if !ok || ppid != os.Getpid() || state == 'Z' {
		t.Fatalf("Stat(%d) = %c, %d, %v; want a live child of %d", pid, state, ppid, ok, os.Getpid())
	}
	if kids := Children(os.Getpid()); !slices.Contains(kids, pid) {
		t.Errorf("Children = %v, want %d among them", kids, pid)
	}
	if z := Zombies(os.Getpid()); slices.Contains(z, pid) {
		t.Errorf("Zombies = %v lists the running %d", z, pid)
	}

	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	WaitDead(t, 10*time.Second, pid)
	if z := Zombies(os.Getpid()); !slices.Contains(z, pid) {
		t.Errorf("Zombies = %v, want the killed, unreaped %d", z, pid)
	}
	_ = cmd.Wait()
	if _, _, ok := Stat(pid); ok {
		t.Errorf("Stat(%d) still finds the reaped process", pid)
	}
}
