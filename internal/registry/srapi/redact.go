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

// standAloneBelow is the length under which a secret is replaced only
// where it stands alone (no letter or digit on either side): a dev-mode
// key such as "k" must not turn "make" into "maREDACTEDe" in every error
// the registry sends. A longer secret, which no message holds by chance,
// is replaced wherever it is.
const standAloneBelow = 8

// scrub replaces the occurrences of the non-empty secrets in s.
func scrub(s string, secrets ...string) string {
	for _, secret := range secrets {
		switch {
		case secret == "":
		case len(secret) >= standAloneBelow:
			s = strings.ReplaceAll(s, secret, redacted)
		default:
			s = replaceStandAlone(s, secret)
		}
	}
	return s
}

// replaceStandAlone replaces the occurrences of secret in s that have no
// letter or digit next to them.
func replaceStandAlone(s, secret string) string {
	var b strings.Builder
	written := 0 // s[:written] is in b
	for from := 0; ; {
		i := strings.Index(s[from:], secret)
		if i < 0 {
			break
		}
		i += from
		j := i + len(secret)
		if (i == 0 || !isWordByte(s[i-1])) && (j == len(s) || !isWordByte(s[j])) {
			b.WriteString(s[written:i])
			b.WriteString(redacted)
			written, from = j, j
		} else {
			from = i + 1 // an overlapping occurrence may stand alone
		}
	}
	if written == 0 {
		return s
	}
	b.WriteString(s[written:])
	return b.String()
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}
