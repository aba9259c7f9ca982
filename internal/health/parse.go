package health

import (
	"fmt"
	"strings"
)

// ParseCommand splits a command line into words as a POSIX shell would,
// without running one and without any expansion: blanks (space, tab,
// newline) separate words; single quotes keep everything up to the next
// single quote; double quotes keep everything up to the next double
// quote, except that a backslash there escapes $, `, ", \ and a newline;
// outside quotes a backslash escapes any character; a backslash before a
// newline joins the lines. A pair of quotes with nothing between makes
// an empty word.
//
// Because no shell runs, the characters that would mean something to one
// are refused rather than passed on silently as arguments: an unquoted
// | & ; < > ( ), a $ or ` outside single quotes, and a # that starts a
// word. Quote them to pass them as they are, or ask for a shell
// (sh -c '...'). Unbalanced quotes, a trailing backslash, a NUL byte and an
// empty command are errors too.
func ParseCommand(s string) ([]string, error) {
	var (
		words  []string
		word   strings.Builder
		inWord bool // a word has started, possibly empty ('')
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0:
			return nil, fmt.Errorf("NUL byte at offset %d: a command cannot contain one", i)
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, word.String())
				word.Reset()
				inWord = false
			}
		case c == '\\':
			if i+1 == len(s) {
				return nil, fmt.Errorf("backslash at the end: it has nothing to escape")
			}
			i++
			switch s[i] {
			case '\n':
				// A line continuation: neither a separator nor a word.
			case 0:
				return nil, fmt.Errorf("NUL byte at offset %d: a command cannot contain one", i)
			default:
				word.WriteByte(s[i])
				inWord = true
			}
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("single quote at offset %d is never closed", i)
			}
			quoted := s[i+1 : i+1+end]
			if j := strings.IndexByte(quoted, 0); j >= 0 {
				return nil, fmt.Errorf("NUL byte at offset %d: a command cannot contain one", i+1+j)
			}
			word.WriteString(quoted)
			inWord = true
			i += end + 1
		case c == '"':
			next, err := doubleQuoted(s, i, &word)
			if err != nil {
				return nil, err
			}
			inWord = true
			i = next
		case strings.IndexByte("|&;<>()`$", c) >= 0:
			return nil, shellCharError(c, i)
		case c == '#' && !inWord:
			return nil, shellCharError(c, i)
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, word.String())
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("empty command")
	}
	return words, nil
}

// doubleQuoted appends the double-quoted string that opens at s[open] to
// word and returns the offset of its closing quote.
func doubleQuoted(s string, open int, word *strings.Builder) (int, error) {
	for i := open + 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return i, nil
		case 0:
			return 0, fmt.Errorf("NUL byte at offset %d: a command cannot contain one", i)
		case '$', '`':
			return 0, shellCharError(c, i)
		case '\\':
			if i+1 < len(s) {
				switch s[i+1] {
				case '$', '`', '"', '\\':
					word.WriteByte(s[i+1])
					i++
					continue
				case '\n':
					i++
					continue
				}
			}
			// Before any other character a backslash is itself.
			word.WriteByte(c)
		default:
			word.WriteByte(c)
		}
	}
	return 0, fmt.Errorf("double quote at offset %d is never closed", open)
}

func shellCharError(c byte, at int) error {
	what := "is special to a shell"
	switch c {
	case '|':
		what = "is a shell pipe"
	case '<', '>':
		what = "is a shell redirection"
	case '$':
		what = "starts a shell expansion"
	case '`':
		what = "starts a shell command substitution"
	case '#':
		what = "starts a shell comment"
	}
	return fmt.Errorf("%q at offset %d %s, but the command runs without a shell: "+
		"quote it to pass it as it is, or run a shell explicitly (sh -c '...')", string(c), at, what)
}

// quoteWord quotes w so that ParseCommand (and a POSIX shell) reads it
// back as the single word w.
func quoteWord(w string) string {
	if w == "" {
		return "''"
	}
	for i := 0; i < len(w); i++ {
		if !isPlain(w[i]) {
			return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
	}
	return w
}

// isPlain reports whether c needs no quoting anywhere in a word.
func isPlain(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("_-./:=,@%+", c) >= 0
}

// joinCommand is the inverse of ParseCommand, for log lines that must
// show exactly which words run.
func joinCommand(argv []string) string {
	q := make([]string, len(argv))
	for i, w := range argv {
		q[i] = quoteWord(w)
	}
	return strings.Join(q, " ")
}
