// Package buildinfo reports the version, commit and build date of the
// binaries. Release builds set them with -ldflags -X (see the Makefile);
// other builds fall back to what the Go toolchain recorded.
package buildinfo

import "runtime/debug"

// Set at link time by `make build` and `make release`; never written at run
// time, so they are constants in all but name.
var (
	version = ""
	commit  = ""
	date    = ""
)

// Info is the version of a build.
type Info struct {
	Version, Commit, Date string
}

// Get returns this binary's build information, "dev"/"unknown" where the
// build did not record it.
func Get() Info {
	i := Info{Version: version, Commit: commit, Date: date}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && i.Commit == "":
				i.Commit = s.Value
			case s.Key == "vcs.time" && i.Date == "":
				i.Date = s.Value
			}
		}
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

func (i Info) String() string {
	return i.Version + " (commit " + i.Commit + ", built " + i.Date + ")"
}
