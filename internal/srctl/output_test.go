package srctl

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/cli"
)

func TestAgeShowsTwoLargestUnits(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{1400 * time.Millisecond, "1s"},
		{59 * time.Second, "59s"},
		{3*time.Minute + 12*time.Second, "3m12s"},
		{5 * time.Minute, "5m"},
		{2*time.Hour + 5*time.Minute + 30*time.Second, "2h5m"},
		{23*time.Hour + 59*time.Minute, "23h59m"},
		{3*24*time.Hour + 4*time.Hour + 10*time.Minute, "3d4h"},
		{400 * 24 * time.Hour, "400d"},
	}
	for _, tt := range tests {
		if got := age(tt.d); got != tt.want {
			t.Errorf("age(%s) = %q, want %q", tt.d, got, tt.want)
		}
	}
	if got := ago(-3 * time.Second); got != "in 3s" {
		t.Errorf("ago(-3s) = %q, want \"in 3s\"", got)
	}
	if got := ago(3 * time.Second); got != "3s ago" {
		t.Errorf("ago(3s) = %q, want \"3s ago\"", got)
	}
}

func TestTimeAndAgeIsLocalTime(t *testing.T) {
	at := time.Date(2026, 11, 23, 14, 5, 1, 0, time.Local)
	got := timeAndAge(at.UnixMilli(), at.Add(3*time.Second))
	if want := "2026-11-23 14:05:01 (3s ago)"; got != want {
		t.Fatalf("timeAndAge = %q, want %q", got, want)
	}
	if got := lastSeen(nil, at); got != "never" {
		t.Fatalf("lastSeen(nil) = %q", got)
	}
}

// TestCompactFormsReadBackAsWrapperFlags shows tags and metadata the way
// sr-wrapper's --tags and --metadata take them: each text, given back to
// those flags' parsers, is the same tags and metadata.
func TestCompactFormsReadBackAsWrapperFlags(t *testing.T) {
	tags := []struct {
		name string
		in   []string
		want string
	}{
		{"tags", []string{"web", "http"}, "web,http"},
		{"tag with a comma", []string{"a,b", `c\d`}, `a\,b,c\\d`},
		{"tag that is a backslash", []string{`\`, "x=y"}, `\\,x=y`},
	}
	for _, tt := range tags {
		got := compactList(tt.in)
		if got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
		back, err := cli.ParseTags([]string{got})
		if err != nil || !reflect.DeepEqual(back, tt.in) {
			t.Errorf("%s: --tags %q reads back as %q, %v; want %q", tt.name, got, back, err, tt.in)
		}
	}
	metadata := []struct {
		name string
		in   map[string]string
		want string
	}{
		{"metadata sorted by key", map[string]string{"port": "80", "dc": "lon"}, "dc=lon,port=80"},
		{"metadata with a comma", map[string]string{"k": "x,y"}, `k=x\,y`},
		{"metadata with backslashes and equals", map[string]string{`a\b`: `c:\`, "url": "http://x/?a=b,c"}, `a\\b=c:\\,url=http://x/?a=b\,c`},
	}
	for _, tt := range metadata {
		got := compactMap(tt.in)
		if got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
		back, err := cli.ParseKeyValues([]string{got})
		if err != nil || !reflect.DeepEqual(back, tt.in) {
			t.Errorf("%s: --metadata %q reads back as %q, %v; want %q", tt.name, got, back, err, tt.in)
		}
	}
	// Nothing is shown as "-", which no flag is given for.
	if got := compactList(nil); got != "-" {
		t.Errorf("no tags: %q, want \"-\"", got)
	}
	if got := compactMap(map[string]string{}); got != "-" {
		t.Errorf("no metadata: %q, want \"-\"", got)
	}
}

func TestCellKeepsControlCharactersOffTheTerminal(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "-"},
		{"plain", "plain"},
		{"a\tb\nc", `a\tb\nc`},
		{"\x1b[31mred", `\x1b[31mred`},
		{"héllo", "héllo"},
	}
	for _, tt := range tests {
		if got := cell(tt.in); got != tt.want {
			t.Errorf("cell(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestWriteTableAlignsWithoutTrailingBlanks(t *testing.T) {
	var b strings.Builder
	err := writeTable(&b, []string{"ID", "VALUE"}, [][]string{{"/a/long_id", "x"}, {"/b", "tab\there"}, {"/c", ""}})
	if err != nil {
		t.Fatal(err)
	}
	want := "ID          VALUE\n" +
		"/a/long_id  x\n" +
		"/b          tab\\there\n" +
		"/c          -\n"
	if b.String() != want {
		t.Fatalf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestEventDetailsSumsUpEachType(t *testing.T) {
	raw := func(v any) json.RawMessage {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	old, nv := "10.0.0.4", "10.0.0.5"
	tests := []struct {
		name string
		e    api.Event
		want string
	}{
		{"join", api.Event{Type: api.EventServiceJoin, Payload: raw(api.Service{ID: "web1", SessionID: "seA",
			Tags: []string{"web"}, Metadata: map[string]string{"port": "80"}})},
			"web1 session=seA tags=web metadata=port=80"},
		{"timeout", api.Event{Type: api.EventServicesTimeout, Payload: raw([]api.Service{{ID: "a1x", SessionID: "seA"}, {ID: "b2y", SessionID: "seA"}})},
			"session=seA services=a1x,b2y"},
		{"timeout without services", api.Event{Type: api.EventServicesTimeout, Payload: raw([]api.Service{})},
			"a session without services expired"},
		{"update", api.Event{Type: api.EventConfigurationUpdate, Payload: raw(api.ConfigurationChange{ConfigurationValueID: "/p/db", OldValue: &old, NewValue: &nv})},
			`/p/db: "10.0.0.4" -> "10.0.0.5"`},
		{"new value", api.Event{Type: api.EventConfigurationUpdate, Payload: raw(api.ConfigurationChange{ConfigurationValueID: "/p/db", NewValue: &nv})},
			`/p/db: (new) -> "10.0.0.5"`},
		{"remove", api.Event{Type: api.EventConfigurationRemove, Payload: raw(api.ConfigurationChange{ConfigurationValueID: "/p/db", OldValue: &nv})},
			`/p/db: "10.0.0.5" -> (removed)`},
		{"unknown type", api.Event{Type: "something.else", Payload: json.RawMessage(`{ "a": 1 }`)}, `{"a":1}`},
	}
	for _, tt := range tests {
		if got := eventDetails(tt.e); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestWriteFileAtomicIsOwnerOnlyAndLeavesNoTemporaryFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "srctl")
	path := filepath.Join(dir, "services-x.json")
	for _, body := range []string{"first", "second, longer than the first"} {
		if err := writeFileAtomic(path, []byte(body)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != body {
			t.Fatalf("read back %q, %v; want %q", got, err, body)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, want 0700", di.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the cache file: %v", len(entries), entries)
	}
}
