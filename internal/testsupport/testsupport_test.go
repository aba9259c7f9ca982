package testsupport

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// verdict records what SkipUnsupported decided, instead of deciding.
type verdict struct {
	testing.TB
	failed, skipped string
}

func (v *verdict) Helper()                           {}
func (v *verdict) Fatalf(format string, args ...any) { v.failed = fmt.Sprintf(format, args...) }
func (v *verdict) Skip(args ...any)                  { v.skipped = fmt.Sprint(args...) }

func TestSkipUnsupportedFailsOnlyWhenStrict(t *testing.T) {
	for _, strict := range []string{"", "1"} {
		t.Setenv(StrictEnv, strict)
		v := &verdict{TB: t}
		SkipUnsupported(v, "no %s here", "unshare")
		if strict == "1" && (v.failed == "" || v.skipped != "") || strict == "" && (v.skipped != "no unshare here" || v.failed != "") {
			t.Errorf("%s=%q: failed %q, skipped %q", StrictEnv, strict, v.failed, v.skipped)
		}
	}
}

func TestPollReturnsOnSuccessOrWithTheLastError(t *testing.T) {
	calls := 0
	if err := Poll(time.Minute, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || calls != 3 {
		t.Errorf("Poll = %v after %d calls, want nil after 3", err, calls)
	}
	calls = 0
	err := Poll(20*time.Millisecond, func() error { calls++; return fmt.Errorf("attempt %d", calls) })
	if err == nil || err.Error() != fmt.Sprintf("attempt %d", calls) || calls < 2 {
		t.Errorf("Poll = %v after %d calls, want the last attempt's error", err, calls)
	}
}
