package server

import "testing"

// rateClassOf must agree with serveTenant's routing: exactly the paths it
// routes to the heartbeat handler are exempt.
func TestRateClassOf(t *testing.T) {
	tests := []struct {
		method, rest string
		want         rateClass
	}{
		{"POST", "sessions/seAAAAAAAA/heartbeat", rateExempt},
		{"POST", "sessions/seAAAAAAAA/heartbeat/", rateExempt},
		{"POST", "sessions//heartbeat", rateLimited},
		{"POST", "sessions/a/b/heartbeat", rateLimited},
		{"POST", "sessions/heartbeat", rateLimited},
		{"POST", "sessions/seAAAAAAAA/heartbeatx", rateLimited},
		{"GET", "sessions/seAAAAAAAA/heartbeat", rateLimited},
		{"POST", "sessions", rateLimited},
		{"POST", "services", rateLimited},
		{"DELETE", "sessions/seAAAAAAAA", rateCountedOnly},
		{"DELETE", "services/web-1", rateCountedOnly},
		{"DELETE", "sessions/", rateLimited},
		{"DELETE", "configuration/x", rateLimited},
		{"GET", "limits", rateCountedOnly},
		{"GET", "limits/", rateCountedOnly},
		{"POST", "limits", rateLimited},
		{"GET", "sessions", rateLimited},
	}
	for _, tc := range tests {
		if got := rateClassOf(tc.method, tc.rest); got != tc.want {
			t.Errorf("rateClassOf(%s, %q) = %d, want %d", tc.method, tc.rest, got, tc.want)
		}
	}
}
