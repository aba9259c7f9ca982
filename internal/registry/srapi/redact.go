package srapi

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
)

// redacted replaces every secret in debug logs.
const redacted = "REDACTED"

// maxLoggedBody keeps a debug line readable when a list is huge.
const maxLoggedBody = 64 << 10

// redactBody returns body for a debug log: JSON with the values of secret
// fields replaced (heartbeat and identity tokens, API keys, passwords),
// then every literal occurrence of the given secrets replaced as well, in
// case a server echoes one in a message or a body is not JSON.
func redactBody(body []byte, secrets ...string) string {
	if len(bytes.TrimSpace(body)) == 0 {
		return ""
	}
	var s string
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err == nil {
		if out, err := json.Marshal(redactValue(v, false)); err == nil {
			s = string(out)
		}
	}
	if s == "" {
		s = string(body)
	}
	s = scrub(s, secrets...)
	if len(s) > maxLoggedBody {
		s = api.Truncate(s, maxLoggedBody) + "(truncated)"
	}
	return s
}

// redactValue walks a decoded JSON value. Inside an object under a "token"
// key (the identity reply's access.token) the "id" is the token itself.
func redactValue(v any, inToken bool) any {
	switch t := v.(type) {
	case map[string]any:
		for k, val := range t {
			switch strings.ToLower(k) {
			case "token":
				if _, ok := val.(map[string]any); ok {
					t[k] = redactValue(val, true)
				} else {
					t[k] = redacted
				}
			case "apikey", "password", "x-auth-token":
				t[k] = redacted
			case "id":
				if inToken {
					t[k] = redacted
				}
			default:
				t[k] = redactValue(val, false)
			}
		}
	case []any:
		for i := range t {
			t[i] = redactValue(t[i], false)
		}
	}
	return v
}

// scrub replaces every occurrence of the non-empty secrets in s.
func scrub(s string, secrets ...string) string {
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, redacted)
		}
	}
	return s
}
