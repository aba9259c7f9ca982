package signals

import (
	"errors"
	"syscall"
	"testing"
)

func TestStatusFromWait(t *testing.T) {
	tests := []struct {
		ws   syscall.WaitStatus
		want ExitStatus
		desc string
	}{
		{0, ExitStatus{Code: 0}, "exited with status 0"},
		{3 << 8, ExitStatus{Code: 3}, "exited with status 3"},
		{255 << 8, ExitStatus{Code: 255}, "exited with status 255"},
		{15, ExitStatus{Code: 143, Signal: syscall.SIGTERM}, "killed by SIGTERM"},
		{0x80 | 11, ExitStatus{Code: 139, Signal: syscall.SIGSEGV, CoreDumped: true}, "killed by SIGSEGV, core dumped"},
		{37, ExitStatus{Code: 165, Signal: 37}, "killed by SIGRTMIN+3"},
	}
	for _, tt := range tests {
		got := StatusFromWait(tt.ws)
		if got != tt.want || got.String() != tt.desc {
			t.Errorf("StatusFromWait(%#x) = %+v %q, want %+v %q", uint32(tt.ws), got, got, tt.want, tt.desc)
		}
		if res := (WaitResult{Status: tt.ws}).ExitStatus(); res != got {
			t.Errorf("WaitResult{Status: %#x}.ExitStatus() = %+v, want %+v", uint32(tt.ws), res, got)
		}
	}
	// Stopped: never requested, but must not pass for a success.
	if got := StatusFromWait(0x137f); got.Err == nil || got.Code == 0 {
		t.Errorf("stopped status gave %+v", got)
	}
}

func TestLostStatusIsNoSuccess(t *testing.T) {
	got := WaitResult{Pid: 42, Err: ErrStatusLost}.ExitStatus()
	if got.Code != 1 || !errors.Is(got.Err, ErrStatusLost) {
		t.Errorf("ExitStatus of a lost status = %+v, want code 1 and ErrStatusLost", got)
	}
	if want := "exit status unknown: " + ErrStatusLost.Error(); got.String() != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
