package buildinfo

import (
	"runtime/debug"
	"testing"
	"time"
)

func TestResolve(t *testing.T) {
	const rev = "b19db5ae84cda5c9982dc2d41ec9933e378425db"
	vcs := func(mainVersion string, settings ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/sr-wrapper/sr-wrapper", Version: mainVersion}}
		for i := 0; i+1 < len(settings); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return bi
	}
	tests := []struct {
		name                string
		ldVersion, ldCommit string
		ldDate              string
		bi                  *debug.BuildInfo
		want                string
	}{
		{
			name: "no build information at all",
			want: "dev (commit unknown, built unknown)",
		},
		{
			name: "go build in a worktree or with -buildvcs=false",
			bi:   vcs("(devel)"),
			want: "dev (commit unknown, built unknown)",
		},
		{
			name: "go build in a clone: pseudo-version and VCS settings",
			bi: vcs("v0.0.0-20261123153621-b19db5ae84cd",
				"vcs", "git", "vcs.revision", rev, "vcs.time", "2026-11-23T15:36:21Z", "vcs.modified", "false"),
			want: "v0.0.0-20261123153621-b19db5ae84cd (commit " + rev + ", committed 2026-11-23T15:36:21Z)",
		},
		{
			name: "go build in a clone with uncommitted changes",
			bi: vcs("v0.0.0-20261123153621-b19db5ae84cd+dirty",
				"vcs.revision", rev, "vcs.time", "2026-11-23T15:36:21Z", "vcs.modified", "true"),
			want: "v0.0.0-20261123153621-b19db5ae84cd+dirty (commit " + rev + "+dirty, committed 2026-11-23T15:36:21Z)",
		},
		{
			name: "go build on a tag",
			bi:   vcs("v0.3.0", "vcs.revision", rev, "vcs.time", "2026-11-23T15:36:21Z", "vcs.modified", "false"),
			want: "v0.3.0 (commit " + rev + ", committed 2026-11-23T15:36:21Z)",
		},
		{
			name: "go build with VCS settings but an older toolchain's (devel)",
			bi:   vcs("(devel)", "vcs.revision", rev, "vcs.time", "2026-11-23T15:36:21Z"),
			want: "dev (commit " + rev + ", committed 2026-11-23T15:36:21Z)",
		},
		{
			name: "go install @version of a release",
			bi:   vcs("v1.2.3"),
			want: "v1.2.3 (commit unknown, built unknown)",
		},
		{
			name: "go install @latest of an untagged commit",
			bi:   vcs("v0.0.0-20260102030405-abcdef123456"),
			want: "v0.0.0-20260102030405-abcdef123456 (commit abcdef123456, committed 2026-01-02T03:04:05Z)",
		},
		{
			name: "go install of a commit after a release",
			bi:   vcs("v1.2.4-0.20260102030405-abcdef123456"),
			want: "v1.2.4-0.20260102030405-abcdef123456 (commit abcdef123456, committed 2026-01-02T03:04:05Z)",
		},
		{
			name:      "make build: the linker's values win over everything",
			ldVersion: "v9.9.9", ldCommit: "c0ffee1", ldDate: "2026-02-03T04:05:06Z",
			bi:   vcs("v0.0.0-20261123153621-b19db5ae84cd", "vcs.revision", rev, "vcs.time", "2026-11-23T15:36:21Z", "vcs.modified", "true"),
			want: "v9.9.9 (commit c0ffee1, built 2026-02-03T04:05:06Z)",
		},
		{
			name:      "only the version given to the linker",
			ldVersion: "v9.9.9",
			bi:        vcs("v0.0.0-20261123153621-b19db5ae84cd", "vcs.revision", rev, "vcs.time", "2026-11-23T15:36:21Z"),
			want:      "v9.9.9 (commit " + rev + ", committed 2026-11-23T15:36:21Z)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := resolve(tt.ldVersion, tt.ldCommit, tt.ldDate, tt.bi).String(); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestParsePseudoVersion(t *testing.T) {
	stamp := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in  string
		rev string // "" for no pseudo-version
	}{
		{"v0.0.0-20260102030405-abcdef123456", "abcdef123456"},
		{"v0.0.0-20260102030405-abcdef123456+dirty", "abcdef123456"},
		{"v1.2.4-0.20260102030405-abcdef123456", "abcdef123456"},
		{"v1.2.3-rc.1.0.20260102030405-abcdef123456", "abcdef123456"},
		{"v2.0.0-20260102030405-abcdef123456+incompatible", "abcdef123456"},
		{"v1.2.3", ""},
		{"v1.2.3-rc.1", ""},
		{"(devel)", ""},
		{"", ""},
		{"v0.0.0-20260102030405-ABCDEF123456", ""}, // revisions are lower case
		{"v0.0.0-20260102030405-abcdef12345", ""},  // 11 digits
		{"v0.0.0-20261302030405-abcdef123456", ""}, // month 13
		{"v0.0.0-2026010203040-abcdef123456", ""},  // 13-digit time
		{"v1.2.3-rc.1.20260102030405-abcdef123456", ""},
		{"v1.2-20260102030405-abcdef123456", ""},
		{"1.2.3-20260102030405-abcdef123456", ""},
	}
	for _, tt := range tests {
		rev, ts, ok := parsePseudoVersion(tt.in)
		if tt.rev == "" {
			if ok {
				t.Errorf("parsePseudoVersion(%q) = %q, %v; want no pseudo-version", tt.in, rev, ts)
			}
			continue
		}
		if !ok || rev != tt.rev || !ts.Equal(stamp) {
			t.Errorf("parsePseudoVersion(%q) = %q, %v, %v; want %q, %v", tt.in, rev, ts, ok, tt.rev, stamp)
		}
	}
}
