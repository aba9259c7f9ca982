package registrytest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/server/ratelimit"
)

// The window RateWindow picks has the room asked for, in the server's
// alignment, and is named in the unit of the length asked for.
func TestRateWindowLeavesRoom(t *testing.T) {
	tests := []struct {
		approx, room time.Duration
		unit         string
	}{
		{time.Hour, 10 * time.Minute, "hours"},
		{90 * time.Minute, 10 * time.Minute, "hours"},
		{10 * time.Minute, 4 * time.Minute, "minutes"},
	}
	for _, tt := range tests {
		w := registrytest.RateWindow(t, tt.approx, tt.room)
		now := time.Now()
		start := ratelimit.WindowStart(now, w)
		// now is a little later than RateWindow's own clock reading.
		if left := start.Add(w).Sub(now); left < tt.room-time.Second || w < tt.approx || w >= 11*tt.approx {
			t.Errorf("RateWindow(%s, %s) = %s: %s left in the window", tt.approx, tt.room, w, left)
		}
		if name := ratelimit.FormatWindow(w); !strings.HasSuffix(name, " "+tt.unit) {
			t.Errorf("RateWindow(%s, %s) = %s, named %q: want %s", tt.approx, tt.room, w, name, tt.unit)
		}
	}
}
