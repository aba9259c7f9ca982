package api

import (
	"regexp"
	"strings"
	"testing"
)

// The hand-written check must agree with the rule as the API states it.
func FuzzServiceIDMatchesRule(f *testing.F) {
	rule := regexp.MustCompile(`(?i)` + serviceIDRule)
	for _, s := range []string{"web1", "ab", "a.b-c_d", "WEB-1", "x y", "é12", strings.Repeat("a", 65), strings.Repeat("a", 66), ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if got, want := ValidateServiceID(id) == nil, rule.MatchString(id); got != want {
			t.Fatalf("ValidateServiceID(%q) valid=%v, rule says %v", id, got, want)
		}
	})
}

func TestValidationRules(t *testing.T) {
	tests := []struct {
		name string
		err  error
		ok   bool
	}{
		{"service id", ValidateServiceID("web-1.lon_A"), true},
		{"service id too short", ValidateServiceID("ab"), false},
		{"service id bad char", ValidateServiceID("web/1"), false},
		{"session id", ValidateSessionID("seAb12Cd34"), true},
		{"session id too long", ValidateSessionID(strings.Repeat("s", 16)), false},
		{"timeout low", ValidateHeartbeatTimeout(2), false},
		{"timeout high", ValidateHeartbeatTimeout(31), false},
		{"timeout ok", ValidateHeartbeatTimeout(3), true},
		{"11 tags", ValidateTags(strings.Split("a,b,c,d,e,f,g,h,i,j,k", ",")), false},
		{"long tag", ValidateTags([]string{strings.Repeat("t", 56)}), false},
		{"empty tag", ValidateTags([]string{""}), false},
		{"metadata ok", ValidateMetadata("metadata", map[string]string{"k": "v"}), true},
		{"metadata empty value", ValidateMetadata("metadata", map[string]string{"k": ""}), false},
		{"config id", ValidateConfigurationID("/production/cassandra/listen_ip"), true},
		{"config namespace", ValidateConfigurationID("/production/cassandra/"), true},
		{"config id bad", ValidateConfigurationID("/a/b"), false},
		{"config value long", ValidateConfigurationValue(strings.Repeat("v", 1025)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if (tt.err == nil) != tt.ok {
				t.Fatalf("got %v, want ok=%v", tt.err, tt.ok)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		name string
		s    string
		max  int
		want string
	}{
		{"short", "abc", 5, "abc"},
		{"exactly max", "abcde", 5, "abcde"},
		{"longer", "abcdef", 5, "abcde…"},
		{"cut inside a rune backs off to its start", "abcdé", 5, "abcd…"},
		{"empty", "", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Truncate(tt.s, tt.max); got != tt.want {
				t.Fatalf("Truncate(%q, %d) = %q, want %q", tt.s, tt.max, got, tt.want)
			}
		})
	}
}
