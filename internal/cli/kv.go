package cli

import (
	"fmt"
	"strings"
)

// SplitList splits a comma-separated flag value. A backslash escapes the
// next character, so "a\,b" is one item "a,b" and "a\\" ends in a
// backslash. Empty items (from "a,,b" or a trailing comma) are errors: they
// are almost always typos, and the API rejects empty tags and keys anyway.
func SplitList(s string) ([]string, error) {
	var (
		items []string
		cur   strings.Builder
		esc   bool
	)
	flush := func(pos int) error {
		if cur.Len() == 0 {
			return fmt.Errorf("empty item at position %d", pos)
		}
		items = append(items, cur.String())
		cur.Reset()
		return nil
	}
	for _, r := range s {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
		case r == '\\':
			esc = true
		case r == ',':
			if err := flush(len(items) + 1); err != nil {
				return nil, err
			}
		default:
			cur.WriteRune(r)
		}
	}
	if esc {
		return nil, fmt.Errorf("dangling backslash at the end")
	}
	if err := flush(len(items) + 1); err != nil {
		return nil, err
	}
	return items, nil
}

// JoinList is the inverse of SplitList: it joins items with commas,
// escaping a comma or backslash inside an item with a backslash, so that
// what srctl shows can be given back to sr-wrapper's --tags or
// --metadata ("key=value" items) unchanged.
func JoinList(items []string) string {
	var b strings.Builder
	for i, item := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		for j := range len(item) {
			if c := item[j]; c == ',' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(item[j])
		}
	}
	return b.String()
}

// ParseTags turns the values of a repeatable --tags flag, each
// comma-separated, into a list. A tag given twice is an error.
func ParseTags(values []string) ([]string, error) {
	var tags []string
	seen := map[string]bool{}
	for _, v := range values {
		items, err := SplitList(v)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", v, err)
		}
		for _, t := range items {
			if seen[t] {
				return nil, fmt.Errorf("tag %q is given twice", t)
			}
			seen[t] = true
			tags = append(tags, t)
		}
	}
	return tags, nil
}

// ParseKeyValues turns the values of a repeatable key=value flag, each
// comma-separated, into a map. Every item needs an "=", a non-empty key and
// a non-empty value; a key given twice is an error rather than a silent
// overwrite. The value may contain "=".
func ParseKeyValues(values []string) (map[string]string, error) {
	var md map[string]string
	for _, v := range values {
		items, err := SplitList(v)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", v, err)
		}
		for _, item := range items {
			key, value, ok := strings.Cut(item, "=")
			switch {
			case !ok:
				return nil, fmt.Errorf("%q is not key=value", item)
			case key == "":
				return nil, fmt.Errorf("%q has an empty key", item)
			case value == "":
				return nil, fmt.Errorf("%q has an empty value", item)
			}
			if _, dup := md[key]; dup {
				return nil, fmt.Errorf("key %q is given twice", key)
			}
			if md == nil {
				md = map[string]string{}
			}
			md[key] = value
		}
	}
	return md, nil
}
