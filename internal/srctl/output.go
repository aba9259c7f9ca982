package srctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/cli"
)

// timeLayout is how times are shown: local time, to the second.
const timeLayout = "2006-01-02 15:04:05"

// none fills an empty cell, so that columns stay aligned and an empty value
// is visibly empty.
const none = "-"

// writeJSON prints v as indented JSON: the API's objects, unchanged, for
// scripts. HTML characters are left alone, as the API sends them.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// writeJSONLine prints v as one line of JSON, for streams (events follow).
func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// nonNil makes an empty list print as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// writeTable prints rows under header in aligned columns. Every cell goes
// through cell, so a tab or newline in the registry's data cannot break
// the alignment and an escape sequence cannot reach the terminal. The last
// cell of a line is not part of a column: tabwriter does not pad it, and
// its value is printed as it is, trailing blanks included.
func writeTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	line := func(cells []string) error {
		var b strings.Builder
		for i, c := range cells {
			if i > 0 {
				b.WriteByte('\t')
			}
			b.WriteString(cell(c))
		}
		b.WriteByte('\n')
		_, err := io.WriteString(tw, b.String())
		return err
	}
	if err := line(header); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	for _, row := range rows {
		if err := line(row); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// cell makes s safe for one table cell: control characters (tab, newline,
// ESC...) are shown as Go escapes, and an empty value as "-".
func cell(s string) string {
	if s == "" {
		return none
	}
	return escapeControls(s)
}

// oneLine makes a message fit on one line of a terminal, for errors that
// quote what a server sent.
func oneLine(s string) string { return escapeControls(strings.TrimSpace(s)) }

func escapeControls(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// compactList shows tags as sr-wrapper's --tags takes them: comma-separated,
// with a comma or backslash inside a tag escaped by a backslash.
func compactList(items []string) string {
	if len(items) == 0 {
		return none
	}
	return cli.JoinList(items)
}

// compactMap shows metadata as sr-wrapper's --metadata takes it:
// key=value pairs, comma-separated, sorted by key so that output is stable.
func compactMap(m map[string]string) string {
	if len(m) == 0 {
		return none
	}
	keys := slices.Sorted(maps.Keys(m))
	pairs := make([]string, len(keys))
	for i, k := range keys {
		pairs[i] = k + "=" + m[k]
	}
	return cli.JoinList(pairs)
}

// localTime shows a timestamp of the API (ms since the epoch) in local
// time.
func localTime(ms int64) string { return time.UnixMilli(ms).Local().Format(timeLayout) }

// timeAndAge shows a timestamp as local time and how long ago it was:
// "2026-11-23 14:05:01 (3s ago)".
func timeAndAge(ms int64, now time.Time) string {
	t := time.UnixMilli(ms)
	return t.Local().Format(timeLayout) + " (" + ago(now.Sub(t)) + ")"
}

// ago says how long ago something happened that is d old; a timestamp in
// the future (clock skew between hosts) says "in ...".
func ago(d time.Duration) string {
	if d < 0 {
		return "in " + age(-d)
	}
	return age(d) + " ago"
}

// age shows a duration in its two largest units, to the second: "45s",
// "3m12s", "2h5m", "3d4h".
func age(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	const (
		minute = 60
		hour   = 60 * minute
		day    = 24 * hour
	)
	two := func(a int64, ua string, b int64, ub string) string {
		if b == 0 {
			return strconv.FormatInt(a, 10) + ua
		}
		return strconv.FormatInt(a, 10) + ua + strconv.FormatInt(b, 10) + ub
	}
	switch {
	case s < minute:
		return strconv.FormatInt(s, 10) + "s"
	case s < hour:
		return two(s/minute, "m", s%minute, "s")
	case s < day:
		return two(s/hour, "h", s%hour/minute, "m")
	default:
		return two(s/day, "d", s%day/hour, "h")
	}
}

// lastSeen shows a session's last heartbeat, or "never".
func lastSeen(ms *int64, now time.Time) string {
	if ms == nil {
		return "never"
	}
	return timeAndAge(*ms, now)
}

// Rows of each kind of object.

var (
	serviceHeader = []string{"ID", "SESSION", "TAGS", "METADATA"}
	sessionHeader = []string{"ID", "TIMEOUT", "LAST SEEN", "METADATA"}
	configHeader  = []string{"ID", "VALUE"}
	eventHeader   = []string{"ID", "TIME", "TYPE", "DETAILS"}
)

func serviceRow(s api.Service) []string {
	return []string{s.ID, s.SessionID, compactList(s.Tags), compactMap(s.Metadata)}
}

func sessionRow(s api.Session, now time.Time) []string {
	return []string{s.ID, strconv.Itoa(s.HeartbeatTimeout) + "s", lastSeen(s.LastSeen, now), compactMap(s.Metadata)}
}

func eventRow(e api.Event, now time.Time) []string {
	return []string{e.ID, timeAndAge(e.Timestamp, now), e.Type, eventDetails(e)}
}

// eventDetails sums up an event's payload on one line:
//
//	service.join                web1 session=seAb12Cd34 tags=web,http metadata=port=80
//	services.timeout            session=seAb12Cd34 services=web1,web2
//	configuration_value.update  /production/db_host: "10.0.0.4" -> "10.0.0.5"
//	configuration_value.remove  /production/db_host: "10.0.0.5" -> (removed)
//
// A payload it does not know is shown as its JSON.
func eventDetails(e api.Event) string {
	switch e.Type {
	case api.EventServiceJoin:
		var s api.Service
		if json.Unmarshal(e.Payload, &s) == nil && s.ID != "" {
			return fmt.Sprintf("%s session=%s tags=%s metadata=%s", s.ID, cell(s.SessionID), compactList(s.Tags), compactMap(s.Metadata))
		}
	case api.EventServicesTimeout:
		var ss []api.Service
		if json.Unmarshal(e.Payload, &ss) == nil {
			if len(ss) == 0 {
				return "a session without services expired"
			}
			ids := make([]string, len(ss))
			sessions := make([]string, 0, 1)
			for i, s := range ss {
				ids[i] = s.ID
				if !slices.Contains(sessions, s.SessionID) {
					sessions = append(sessions, s.SessionID)
				}
			}
			return fmt.Sprintf("session=%s services=%s", compactList(sessions), compactList(ids))
		}
	case api.EventConfigurationUpdate, api.EventConfigurationRemove:
		var ch api.ConfigurationChange
		if json.Unmarshal(e.Payload, &ch) == nil && ch.ConfigurationValueID != "" {
			from, to := "(new)", "(removed)"
			if ch.OldValue != nil {
				from = strconv.Quote(*ch.OldValue)
			}
			if ch.NewValue != nil {
				to = strconv.Quote(*ch.NewValue)
			}
			return ch.ConfigurationValueID + ": " + from + " -> " + to
		}
	}
	var b bytes.Buffer
	if json.Compact(&b, e.Payload) == nil {
		return b.String()
	}
	return string(e.Payload)
}
