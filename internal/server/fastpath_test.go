package server

import (
	"encoding/json"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
)

// FuzzFastHeartbeatToken checks that the heartbeat body fast path agrees
// with encoding/json whenever it accepts a body.
func FuzzFastHeartbeatToken(f *testing.F) {
	for _, s := range []string{
		`{"token":"6ba7b810-9dad-11d1-80b4-00c04fd430c8"}`,
		`{"token":"6ba7b810-9dad-11d1-80b4-00c04fd430\"8"}`,
		`{"token":"6ba7b810-9dad-11d1-80b4-00c04fd430\\8"}`,
		`{"token":"6ba7b810-9dad-11d1-80b4-00c04fd430c"}`,
		`{"token": "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}`,
		`{"token":"\u00e9ba7b810-9dad-11d1-80b4-00c04fd43"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, ok := fastHeartbeatToken(body)
		if !ok {
			return
		}
		var slow api.HeartbeatToken
		if err := json.Unmarshal(body, &slow); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json rejects it: %v", body, err)
		}
		if fast != slow {
			t.Fatalf("fast path %q, encoding/json %q for %q", fast.Token, slow.Token, body)
		}
	})
}
