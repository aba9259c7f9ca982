// Package buildinfo reports the version, commit and date of the binaries
// for --version and the User-Agent.
//
// Release builds (make build, make release) set all three with -ldflags -X.
// A field the linker was not given falls back to what the Go toolchain
// recorded in the binary:
//
//   - go build in a git clone: the module version Go derives from the tags
//     (v1.2.3, or a pseudo-version such as v0.0.0-20260102030405-abcdef123456,
//     "+dirty" with uncommitted changes), vcs.revision and vcs.time;
//   - go install module/cmd/x@version: the module version only; for a
//     pseudo-version, the commit and its time are read out of it.
//
// Go records no VCS information for a build inside a git worktree (its .git
// is a file), or with -buildvcs=false; such a build reports "dev".
//
// It reads the build information only; it does not look at the source tree
// or the environment.
package buildinfo

import (
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// Set at link time by `make build` and `make release`; never written at run
// time, so they are constants in all but name.
var (
	version = ""
	commit  = ""
	date    = ""
)

// Info is the version of a build.
type Info struct {
	// Version is the release (v1.2.3), a Go pseudo-version, or "dev".
	Version string
	// Commit is the git revision, with "+dirty" when the tree had
	// uncommitted changes, or "unknown".
	Commit string
	// Date is when the binary was built (RFC 3339), or when its commit was
	// made if that is all the build recorded, or "unknown".
	Date string

	// dateIsCommit says Date is the commit's time, not the build's.
	dateIsCommit bool
}

// get computes the Info once: the build information cannot change while
// the program runs, and both the command line and the registry client ask
// for it at every start.
var get = sync.OnceValue(func() Info {
	bi, _ := debug.ReadBuildInfo() // nil without build information
	return resolve(version, commit, date, bi)
})

// Get returns this binary's build information, "dev"/"unknown" where the
// build did not record it.
func Get() Info { return get() }

// resolve combines the values given to the linker with the toolchain's
// build information (nil when there is none); a value from the linker
// always wins.
func resolve(ldVersion, ldCommit, ldDate string, bi *debug.BuildInfo) Info {
	i := Info{Version: ldVersion, Commit: ldCommit, Date: ldDate}
	var modVersion, revision, vcsTime string
	var modified bool
	if bi != nil {
		if v := bi.Main.Version; v != "(devel)" {
			modVersion = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.time":
				vcsTime = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if revision == "" && modVersion != "" {
		// go install ...@version records no VCS settings, but a
		// pseudo-version names its commit and the commit's time.
		if rev, t, ok := parsePseudoVersion(modVersion); ok {
			revision, vcsTime = rev, t.Format(time.RFC3339)
		}
	}
	if i.Version == "" {
		i.Version = modVersion
	}
	if i.Commit == "" && revision != "" {
		i.Commit = revision
		if modified {
			i.Commit += "+dirty"
		}
	}
	if i.Date == "" && vcsTime != "" {
		i.Date, i.dateIsCommit = vcsTime, true
	}
	if i.Version == "" {
		i.Version = "dev"
	}
	if i.Commit == "" {
		i.Commit = "unknown"
	}
	if i.Date == "" {
		i.Date = "unknown"
	}
	return i
}

// String is the --version line after the program's name, e.g.
// "v1.2.3 (commit abc1234, built 2026-01-02T03:04:05Z)".
func (i Info) String() string {
	when := "built"
	if i.dateIsCommit {
		when = "committed"
	}
	return i.Version + " (commit " + i.Commit + ", " + when + " " + i.Date + ")"
}

// parsePseudoVersion returns the revision prefix and commit time in a Go
// pseudo-version: vX.0.0-yyyymmddhhmmss-abcdefabcdef, or with the time
// after "-0." or ".0." following a release or pre-release
// (v1.2.4-0.20260102030405-abcdefabcdef, v1.2.3-rc.1.0.20260102030405-...),
// each optionally followed by a "+build" suffix. Anything else is no
// pseudo-version.
func parsePseudoVersion(v string) (revision string, t time.Time, ok bool) {
	v, _, _ = strings.Cut(v, "+")
	base, rest, found := strings.Cut(v, "-")
	if !found || !isSemverCore(base) {
		return "", time.Time{}, false
	}
	rest, revision, found = cutLast(rest, "-")
	if !found || len(revision) != 12 || !isLowerHex(revision) {
		return "", time.Time{}, false
	}
	// rest is the timestamp alone, or "...0." followed by it.
	const stampLen = len("20060102150405")
	stamp := rest
	if len(rest) > stampLen {
		stamp = rest[len(rest)-stampLen:]
		prefix := rest[:len(rest)-stampLen]
		if prefix != "0." && !strings.HasSuffix(prefix, ".0.") {
			return "", time.Time{}, false
		}
	}
	if len(stamp) != stampLen {
		return "", time.Time{}, false
	}
	t, err := time.Parse("20060102150405", stamp)
	if err != nil {
		return "", time.Time{}, false
	}
	return revision, t, true
}

// isSemverCore reports whether s is vMAJOR.MINOR.PATCH.
func isSemverCore(s string) bool {
	s, ok := strings.CutPrefix(s, "v")
	if !ok {
		return false
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}

func isLowerHex(s string) bool { return strings.Trim(s, "0123456789abcdef") == "" }

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}
