package srctl_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/srctl"
)

const srctlPackage = "github.com/sr-wrapper/sr-wrapper/cmd/srctl"

// TestBinary builds cmd/srctl once and checks what only a real process
// shows: its exit statuses and its end on SIGINT and SIGTERM.
func TestBinary(t *testing.T) {
	bin := registrytest.BuildBinary(t, srctlPackage)
	h := setup(t)
	environ := []string{"SRCTL_CACHE_DIR=" + h.cacheDir, "HOME=" + t.TempDir()}
	command := func(ctx context.Context, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, bin, append(h.connArgs(), args...)...)
		cmd.Env = environ
		return cmd
	}
	run := func(args ...string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
		defer cancel()
		var stderr bytes.Buffer
		cmd := command(ctx, args...)
		cmd.Stderr = &stderr
		err := cmd.Run()
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			return ee.ExitCode(), stderr.String()
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, stderr.String()
	}
	sid, _ := h.session(30, nil)
	h.service(sid, "web1", nil, nil)

	for _, tt := range []struct {
		name string
		args []string
		want int
	}{
		{"success", []string{"services", "list"}, srctl.ExitOK},
		{"help", []string{"events", "follow", "--help"}, srctl.ExitOK},
		{"registry fault", []string{"services", "get", "nosuchservice"}, srctl.ExitError},
		{"usage", []string{"services", "get"}, srctl.ExitUsage},
	} {
		if code, stderr := run(tt.args...); code != tt.want {
			t.Errorf("%s: srctl %s exited %d, want %d; stderr %s", tt.name, tt.args, code, tt.want, stderr)
		}
	}

	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run("follow ends cleanly on "+sig.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := command(ctx, "events", "follow", "--interval", "100ms")
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			header := make(chan string, 1)
			go func() {
				sc := bufio.NewScanner(out)
				if sc.Scan() {
					header <- sc.Text()
				}
				close(header)
				for sc.Scan() {
				}
			}()
			select {
			case l := <-header:
				if !strings.Contains(l, "TYPE") {
					t.Fatalf("first line %q; want the header", l)
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("no header within 15s; stderr %s", stderr.String())
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			err = cmd.Wait()
			if err != nil || cmd.ProcessState.ExitCode() != 0 {
				t.Fatalf("after %s: %v (exit %d); want exit 0; stderr %s", sig, err, cmd.ProcessState.ExitCode(), stderr.String())
			}
		})
	}

	// Last: the registry goes away for good.
	if code, stderr := run("services", "list"); code != srctl.ExitOK {
		t.Fatalf("services list: exit %d; %s", code, stderr)
	}
	h.reg.Stop()
	if code, stderr := run("services", "list"); code != srctl.ExitStale || !staleWarning.MatchString(stderr) {
		t.Fatalf("services list with the registry stopped: exit %d, stderr %q; want 3 and the warning", code, stderr)
	}
	if code, _ := run("sessions", "list"); code != srctl.ExitError {
		t.Fatalf("sessions list with the registry stopped: exit %d, want 1", code)
	}
}
