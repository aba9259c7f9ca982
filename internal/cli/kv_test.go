package cli

import (
	"reflect"
	"strings"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
)

func TestParseKeyValues(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    map[string]string
		wantErr string
	}{
		{name: "none", in: nil, want: nil},
		{name: "one", in: []string{"a=1"}, want: map[string]string{"a": "1"}},
		{name: "comma list", in: []string{"a=1,b=2"}, want: map[string]string{"a": "1", "b": "2"}},
		{name: "repeated flag", in: []string{"a=1", "b=2"}, want: map[string]string{"a": "1", "b": "2"}},
		{name: "value with equals", in: []string{"url=http://x/?a=b"}, want: map[string]string{"url": "http://x/?a=b"}},
		{name: "escaped comma", in: []string{`list=a\,b,c=d`}, want: map[string]string{"list": "a,b", "c": "d"}},
		{name: "escaped backslash", in: []string{`p=c:\\`}, want: map[string]string{"p": `c:\`}},
		{name: "unicode", in: []string{"région=Zürich"}, want: map[string]string{"région": "Zürich"}},
		{name: "missing equals", in: []string{"a"}, wantErr: `"a" is not key=value`},
		{name: "empty key", in: []string{"=1"}, wantErr: "empty key"},
		{name: "empty value", in: []string{"a="}, wantErr: "empty value"},
		{name: "duplicate in one", in: []string{"a=1,a=2"}, wantErr: `key "a" is given twice`},
		{name: "duplicate across flags", in: []string{"a=1", "a=1"}, wantErr: `key "a" is given twice`},
		{name: "empty item", in: []string{"a=1,,b=2"}, wantErr: "empty item"},
		{name: "trailing comma", in: []string{"a=1,"}, wantErr: "empty item"},
		{name: "dangling backslash", in: []string{`a=1\`}, wantErr: "dangling backslash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKeyValues(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseKeyValues(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseKeyValues(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseKeyValues(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseTags(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    []string
		wantErr string
	}{
		{name: "none", in: nil, want: nil},
		{name: "list", in: []string{"web,http"}, want: []string{"web", "http"}},
		{name: "repeated flag keeps order", in: []string{"b", "a"}, want: []string{"b", "a"}},
		{name: "escaped comma", in: []string{`a\,b`}, want: []string{"a,b"}},
		{name: "duplicate", in: []string{"web,web"}, wantErr: `tag "web" is given twice`},
		{name: "empty", in: []string{""}, wantErr: "empty item"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTags(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseTags(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTags(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseTags(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestJoinListIsSplitListsInverse(t *testing.T) {
	tests := []struct {
		items []string
		want  string
	}{
		{[]string{"web"}, "web"},
		{[]string{"web", "http"}, "web,http"},
		{[]string{"a,b", `c\d`}, `a\,b,c\\d`},
		{[]string{`\`, ","}, `\\,\,`},
		{[]string{"k=v,w", "ü=é"}, `k=v\,w,ü=é`},
	}
	for _, tt := range tests {
		got := JoinList(tt.items)
		if got != tt.want {
			t.Errorf("JoinList(%q) = %q, want %q", tt.items, got, tt.want)
		}
		back, err := SplitList(got)
		if err != nil || !reflect.DeepEqual(back, tt.items) {
			t.Errorf("SplitList(JoinList(%q)) = %q, %v; want the items back", tt.items, back, err)
		}
	}
}

// FuzzParseKeyValues checks that the metadata parser never panics, and that
// whatever it accepts survives a round trip through the escaping rules and
// has no empty keys or values.
func FuzzParseKeyValues(f *testing.F) {
	for _, s := range []string{"a=1", "a=1,b=2", `x=a\,b`, "=", ",", `\`, "a==b", "k=v,k=w", "ü=é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		md, err := ParseKeyValues([]string{s})
		if err != nil {
			return
		}
		var items []string
		for k, v := range md {
			if k == "" || v == "" {
				t.Fatalf("accepted empty key or value from %q: %q=%q", s, k, v)
			}
			items = append(items, k+"="+v)
		}
		again, err := ParseKeyValues([]string{JoinList(items)})
		if err != nil {
			t.Fatalf("round trip of %q failed: %v", s, err)
		}
		if !reflect.DeepEqual(md, again) {
			t.Fatalf("round trip of %q: %v != %v", s, md, again)
		}
		_ = api.ValidateMetadata("metadata", md) // must not panic on anything accepted
	})
}

// FuzzParseTags checks the tags parser never panics and never accepts an
// empty or duplicate tag.
func FuzzParseTags(f *testing.F) {
	for _, s := range []string{"a", "a,b", `a\,b`, ",", "a,a", `\\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tags, err := ParseTags([]string{s})
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, tag := range tags {
			if tag == "" || seen[tag] {
				t.Fatalf("accepted empty or duplicate tag from %q: %q", s, tags)
			}
			seen[tag] = true
		}
		_ = api.ValidateTags(tags)
	})
}
