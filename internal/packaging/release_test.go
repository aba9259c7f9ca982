package packaging_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestReleaseBuildsStaticBinariesWithVersion runs `make release` itself,
// into a temporary DIST, and checks what it promises: static linux/amd64
// and linux/arm64 binaries of the four commands, their SHA256SUMS, and
// --version printing the version, commit and build date it was given.
//
// A cold build cache makes this about a minute on two cores (eight cross
// builds); a warm one, seconds. -short skips it.
func TestReleaseBuildsStaticBinariesWithVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds eight binaries: skipped with -short")
	}
	makeBin, err := exec.LookPath("make")
	if err != nil {
		testsupport.SkipUnsupported(t, "needs make: %v", err)
	}
	root := testsupport.ModuleRoot(t)
	dist := t.TempDir()
	const version = "v9.9.9-test"

	ctx, cancel := context.WithTimeout(context.Background(), buildWait)
	defer cancel()
	begin := time.Now()
	// The Makefile's date has whole seconds.
	started := begin.UTC().Truncate(time.Second)
	cmd := exec.CommandContext(ctx, makeBin, "--no-print-directory", "release", "VERSION="+version, "DIST="+dist)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}
	t.Logf("make release: %s", time.Since(begin).Round(time.Millisecond))

	// The commit the Makefile records is git's short hash of HEAD, unless
	// the environment sets COMMIT (make's ?=).
	commit := os.Getenv("COMMIT")
	if commit == "" {
		commit = "unknown"
		if out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output(); err == nil {
			commit = strings.TrimSpace(string(out))
		}
	}
	wantDate := func(date string) bool {
		if env := os.Getenv("DATE"); env != "" {
			return date == env
		}
		built, err := time.Parse(time.RFC3339, date)
		return err == nil && !built.Before(started) && !built.After(time.Now().Add(time.Second))
	}

	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	commands := []string{"sr-wrapper", "sr-wrapper-etcd", "sr-registry", "srctl"}
	var want []string
	for arch, machine := range machines {
		for _, c := range commands {
			name := c + "-linux-" + arch
			want = append(want, name)
			if err := checkStaticELF(filepath.Join(dist, name), machine); err != nil {
				t.Error(err)
			}
		}
	}
	checkSums(t, dist, want)

	if _, ok := machines[runtime.GOARCH]; !ok {
		testsupport.SkipUnsupported(t, "cannot run the release binaries on %s to check --version", runtime.GOARCH)
	}
	// "v9.9.9-test (commit abc1234, built 2026-01-02T03:04:05Z)", in
	// whatever words; the three values are what matters.
	dateRE := regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)
	for _, c := range commands {
		bin := filepath.Join(dist, c+"-linux-"+runtime.GOARCH)
		out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
		if err != nil {
			t.Errorf("%s --version: %v\n%s", c, err, out)
			continue
		}
		s := string(out)
		if !strings.Contains(s, version) || !strings.Contains(s, commit) {
			t.Errorf("%s --version printed %q, want version %s and commit %s in it", c, s, version, commit)
			continue
		}
		if !wantDate(dateRE.FindString(s)) {
			t.Errorf("%s --version printed %q, want the build date (%s or just after) in it", c, s, started.Format(time.RFC3339))
		}
	}
}

// checkSums checks that dir/SHA256SUMS lists exactly the files named, with
// their right digests, in sha256sum's format.
func checkSums(t *testing.T, dir string, names []string) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatalf("make release wrote no SHA256SUMS: %v", err)
	}
	defer f.Close()
	listed := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS: line %q is not \"<sha256>  <name>\"", sc.Text())
		}
		listed[name] = sum
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(listed) != len(names) {
		t.Errorf("SHA256SUMS lists %v, want exactly %v", slices.Collect(maps.Keys(listed)), names)
	}
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("make release did not produce %s: %v", name, err)
			continue
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); listed[name] != got {
			t.Errorf("SHA256SUMS: %s is %q, its digest is %s", name, listed[name], got)
		}
	}
}
