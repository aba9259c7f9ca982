package health

import (
	"slices"
	"strings"
	"testing"
)

func TestParseCommandSplitsLikeAShellWithoutExpanding(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"mysqladmin ping", []string{"mysqladmin", "ping"}},
		{"  a \t b\n c  ", []string{"a", "b", "c"}},
		{`curl -fsS 'http://127.0.0.1/health?x=1&y=2'`, []string{"curl", "-fsS", "http://127.0.0.1/health?x=1&y=2"}},
		{`echo "two words" 'and $NOT expanded'`, []string{"echo", "two words", "and $NOT expanded"}},
		{`a''b "c"d'e'`, []string{"ab", "cde"}},
		{`x '' ""`, []string{"x", "", ""}},
		{`a\ b \'c\' \"`, []string{"a b", "'c'", `"`}},
		{`"a\"b\\c\$d\` + "`" + `e\qf"`, []string{"a\"b\\c$d`e\\qf"}},
		{"a\\\nb", []string{"ab"}},
		{"\"a\\\nb\"", []string{"ab"}},
		{"'a\\b'", []string{`a\b`}},
		{`'it'\''s'`, []string{"it's"}},
		{`x=1 a#b`, []string{"x=1", "a#b"}},
		{"'|&;<>()$`#'", []string{"|&;<>()$`#"}},
		{`\| \$HOME`, []string{"|", "$HOME"}},
		{"héllo wörld", []string{"héllo", "wörld"}},
	}
	for _, tt := range tests {
		got, err := ParseCommand(tt.in)
		if err != nil {
			t.Errorf("ParseCommand(%q): %v", tt.in, err)
			continue
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("ParseCommand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseCommandRejects(t *testing.T) {
	tests := []struct {
		in, wantErr string
	}{
		{"", "empty command"},
		{" \t\n", "empty command"},
		{"\\\n", "empty command"},
		{"echo 'open", "single quote at offset 5 is never closed"},
		{`echo "open`, "double quote at offset 5 is never closed"},
		{`echo "a\"`, "double quote at offset 5 is never closed"},
		{`echo \`, "backslash at the end"},
		{"a\x00b", "NUL byte at offset 1"},
		{"'a\x00'", "NUL byte at offset 2"},
		{"curl -fsS http://x | grep ok", `"|" at offset 19 is a shell pipe, but the command runs without a shell`},
		{"check > /dev/null", `">" at offset 6 is a shell redirection`},
		{"check 2>&1", `">" at offset 7`},
		{"a; b", `";" at offset 1`},
		{"a && b", `"&" at offset 2`},
		{"check --password=$PASS", `"$" at offset 17 starts a shell expansion`},
		{`check "$PASS"`, `"$" at offset 7 starts a shell expansion`},
		{"check `id`", "starts a shell command substitution"},
		{"(check)", `"(" at offset 0`},
		{"check # comment", `"#" at offset 6 starts a shell comment`},
	}
	for _, tt := range tests {
		got, err := ParseCommand(tt.in)
		if err == nil {
			t.Errorf("ParseCommand(%q) = %q, want an error containing %q", tt.in, got, tt.wantErr)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseCommand(%q): %v, want an error containing %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestShellCharErrorSaysHowToFixIt(t *testing.T) {
	_, err := ParseCommand("a | b")
	if err == nil || !strings.Contains(err.Error(), "quote it") || !strings.Contains(err.Error(), "sh -c") {
		t.Fatalf("error %v does not say how to fix it", err)
	}
}

func TestQuoteWordRoundTrips(t *testing.T) {
	words := []string{"", "plain", "a b", "it's", `a\b`, "$HOME", "#x", "x#", "\n", "'", `"`, "héllo", "-", "a=b,c:d@e%f+g"}
	for _, w := range words {
		got, err := ParseCommand(quoteWord(w))
		if err != nil || len(got) != 1 || got[0] != w {
			t.Errorf("ParseCommand(quoteWord(%q) = %q) = %q, %v", w, quoteWord(w), got, err)
		}
	}
	if got := joinCommand([]string{"mysqladmin", "ping", "--user=a b"}); got != "mysqladmin ping '--user=a b'" {
		t.Errorf("joinCommand = %q", got)
	}
}

// FuzzParseCommand: no input panics; whatever parses is written back by
// joinCommand so that it parses to the same words; and any list of words
// (NUL-free) survives joinCommand and ParseCommand.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"mysqladmin ping", `a "b c" 'd'`, `a\ b`, "'it'\\''s'", `"\$\"\\"`, "a\\\nb",
		"x '' \"\"", "a | b", "'unbalanced", `"x`, "\\", "#", "a\x00b", "é ü",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words, err := ParseCommand(s)
		if err == nil {
			if len(words) == 0 {
				t.Fatalf("ParseCommand(%q) gave no words and no error", s)
			}
			joined := joinCommand(words)
			again, err := ParseCommand(joined)
			if err != nil || !slices.Equal(again, words) {
				t.Fatalf("ParseCommand(%q) = %q; joined %q parses to %q, %v", s, words, joined, again, err)
			}
		}
		// The input, cut at \x01, as a list of words.
		if strings.Contains(s, "\x00") {
			return
		}
		list := strings.Split(s, "\x01")
		joined := joinCommand(list)
		again, err := ParseCommand(joined)
		if err != nil || !slices.Equal(again, list) {
			t.Fatalf("words %q joined as %q parse to %q, %v", list, joined, again, err)
		}
	})
}
