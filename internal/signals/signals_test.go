package signals

import (
	"errors"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want syscall.Signal
	}{
		{"TERM", syscall.SIGTERM},
		{"SIGTERM", syscall.SIGTERM},
		{"term", syscall.SIGTERM},
		{"sigterm", syscall.SIGTERM},
		{" TERM ", syscall.SIGTERM},
		{"15", syscall.SIGTERM},
		{"9", syscall.SIGKILL},
		{"WINCH", syscall.SIGWINCH},
		{"quit", syscall.SIGQUIT},
		{"SIGUSR1", syscall.SIGUSR1},
		{"IOT", syscall.SIGABRT},
		{"POLL", syscall.SIGIO},
		{"SIGCLD", syscall.SIGCHLD},
		{"RTMIN", 34},
		{"RTMIN+3", 37},
		{"SIGRTMIN+3", 37},
		{"rtmax", 64},
		{"RTMAX-2", 62},
		{"64", 64},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{"", "  ", "FOO", "SIGFOO", "0", "-1", "65", "RTMIN+31", "RTMIN-1", "RTMAX+1", "RTMINX", "TERM2", "1.5"} {
		got, err := Parse(in)
		if !errors.Is(err, ErrUnknownSignal) {
			t.Errorf("Parse(%q) = %d, %v; want an ErrUnknownSignal error", in, got, err)
		}
	}
}

func TestNameRoundTrips(t *testing.T) {
	for n := 1; n <= 64; n++ {
		if n == 32 || n == 33 {
			continue // reserved by the C library, no name
		}
		name := Name(syscall.Signal(n))
		got, err := Parse(name)
		if err != nil || int(got) != n {
			t.Errorf("Parse(Name(%d) = %q) = %d, %v", n, name, got, err)
		}
	}
	if got := Name(syscall.SIGTERM); got != "SIGTERM" {
		t.Errorf("Name(SIGTERM) = %q", got)
	}
	if got := Name(37); got != "SIGRTMIN+3" {
		t.Errorf("Name(37) = %q", got)
	}
}

func TestForwardedLeavesOutWhatMustNotBeForwarded(t *testing.T) {
	never := []syscall.Signal{
		syscall.SIGCHLD, syscall.SIGURG, syscall.SIGPROF, syscall.SIGPIPE,
		syscall.SIGKILL, syscall.SIGSTOP, syscall.SIGTTIN, syscall.SIGTTOU,
		syscall.SIGSEGV, syscall.SIGABRT, syscall.SIGBUS, syscall.SIGFPE, syscall.SIGILL,
		syscall.SIGTRAP, syscall.SIGSYS, syscall.SIGXCPU, syscall.SIGXFSZ, 32, 33, 34,
	}
	set := map[syscall.Signal]bool{}
	for _, s := range Forwarded() {
		set[s.(syscall.Signal)] = true
	}
	for _, s := range never {
		if set[s] {
			t.Errorf("%s is forwarded", Name(s))
		}
	}
	for _, s := range []syscall.Signal{
		syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGUSR1,
		syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGCONT, syscall.SIGALRM, 37,
	} {
		if !set[s] {
			t.Errorf("%s is not forwarded", Name(s))
		}
	}
}

// Sends every forwarded signal to the test process itself: each must come
// out of the channel, and none may end the process (QUIT would dump and
// exit, TERM and HUP would exit, TSTP would stop it). One at a time: the
// kernel discards a pending CONT when a TSTP is generated, and the reverse.
func TestSubscribeDeliversEveryForwardedSignal(t *testing.T) {
	sub := Subscribe()
	defer sub.Stop()
	sub.AddRealtime()

	// Caught, so a broken stdout cannot kill the wrapper, but not delivered.
	if err := syscall.Kill(os.Getpid(), syscall.SIGPIPE); err != nil {
		t.Fatal(err)
	}
	for _, s := range Forwarded() {
		if err := syscall.Kill(os.Getpid(), s.(syscall.Signal)); err != nil {
			t.Fatalf("kill self with %v: %v", s, err)
		}
		want, other := sub.Others(), sub.Stops()
		if IsStop(s) {
			want, other = other, want
		}
		select {
		case got := <-want:
			if got != s {
				t.Fatalf("sent %v, received %v", s, got)
			}
		case got := <-other:
			t.Fatalf("sent %v, received %v on the wrong channel", s, got)
		case <-time.After(10 * time.Second):
			t.Fatalf("%v never delivered", s)
		}
	}
}

// A burst of WINCH (a terminal being resized) while the reader is busy
// fills the channel of the other signals; a TERM sent then must still
// arrive, since os/signal drops what does not fit.
func TestTermIsNotCrowdedOutByABurstOfOtherSignals(t *testing.T) {
	sub := Subscribe()
	defer sub.Stop()
	c := sub.Others()
	deadline := time.Now().Add(10 * time.Second)
	for len(c) < cap(c) {
		if time.Now().After(deadline) {
			t.Fatalf("the channel holds %d of %d after 10s of WINCH", len(c), cap(c))
		}
		if err := syscall.Kill(os.Getpid(), syscall.SIGWINCH); err != nil {
			t.Fatal(err)
		}
	}
	// os/signal hands a signal to every subscriber under one lock, which
	// Stop takes: once the probe has the TERM and Stop has returned, the
	// subscription has it too, or never will.
	probe := make(chan os.Signal, 1)
	signal.Notify(probe, syscall.SIGTERM)
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-probe
	signal.Stop(probe)
	select {
	case s := <-sub.Stops():
		if s != syscall.SIGTERM {
			t.Fatalf("received %v, want SIGTERM", s)
		}
	default:
		t.Fatal("TERM was dropped after a burst of WINCH")
	}
}
