package buildinfo_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

const modulePath = "github.com/sr-wrapper/sr-wrapper"

// commitTime is the time of the test repository's commit.
const commitTime = "2026-01-02T03:04:05Z"

// commands are the four binaries; each prints its name (sr-wrapper-etcd,
// the wrapper with another backend, says "sr-wrapper"), a space and
// buildinfo.Get() for --version.
var commands = []string{"sr-wrapper", "sr-wrapper-etcd", "sr-registry", "srctl"}

// buildWait bounds each go build or go install; a cold build cache on two
// busy cores needs most of it for the etcd client.
const buildWait = 5 * time.Minute

// TestVersionOfPlainBuilds builds the commands the ways a user does without
// the Makefile — go build in a git clone, go install ...@version — and
// checks that --version names the commit, and that -ldflags -X values, as
// make build sets them, still win.
//
// The source is the current tree, committed into a fresh repository in a
// temporary directory: a git worktree, as used for development here, gets
// no VCS stamp from Go (its .git is a file).
func TestVersionOfPlainBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the four commands: skipped with -short")
	}
	if _, err := exec.LookPath("git"); err != nil {
		testsupport.SkipUnsupported(t, "needs git to make a repository to build from: %v", err)
	}
	src := copySource(t, testsupport.ModuleRoot(t))
	git(t, src, "init", "-q")
	git(t, src, "add", "-A")
	git(t, src, "-c", "commit.gpgsign=false", "commit", "-q", "-m", "test build")
	rev := strings.TrimSpace(git(t, src, "rev-parse", "HEAD"))
	pseudo := "v0.0.0-20260102030405-" + rev[:12]

	t.Run("go build in a clone", func(t *testing.T) {
		bin := t.TempDir()
		goCmd(t, src, nil, append([]string{"build", "-o", bin + "/"}, cmdPackages()...)...)
		for _, c := range commands {
			want := pseudo + " (commit " + rev + ", committed " + commitTime + ")"
			if got := versionOf(t, filepath.Join(bin, c)); got != want {
				t.Errorf("%s --version:\n got  %q\n want %q", c, got, want)
			}
		}
	})

	t.Run("go build with uncommitted changes", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(src, "uncommitted.txt"), []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(filepath.Join(src, "uncommitted.txt"))
		bin := t.TempDir()
		goCmd(t, src, nil, "build", "-o", bin+"/", "./cmd/srctl")
		want := pseudo + "+dirty (commit " + rev + "+dirty, committed " + commitTime + ")"
		if got := versionOf(t, filepath.Join(bin, "srctl")); got != want {
			t.Errorf("srctl --version:\n got  %q\n want %q", got, want)
		}
	})

	t.Run("-ldflags -X wins", func(t *testing.T) {
		bin := t.TempDir()
		const pkg = modulePath + "/internal/buildinfo"
		ldflags := "-X " + pkg + ".version=v9.9.9-test -X " + pkg + ".commit=c0ffee1 -X " + pkg + ".date=2026-02-03T04:05:06Z"
		goCmd(t, src, nil, append([]string{"build", "-ldflags", ldflags, "-o", bin + "/"}, cmdPackages()...)...)
		for _, c := range commands {
			want := "v9.9.9-test (commit c0ffee1, built 2026-02-03T04:05:06Z)"
			if got := versionOf(t, filepath.Join(bin, c)); got != want {
				t.Errorf("%s --version:\n got  %q\n want %q", c, got, want)
			}
		}
	})

	t.Run("go install @pseudo-version", func(t *testing.T) {
		// A module proxy on disk serves this tree at the pseudo-version;
		// the dependencies come from the module cache's downloads.
		proxy := t.TempDir()
		serveModule(t, proxy, src, pseudo)
		downloads := strings.TrimSpace(goCmd(t, src, nil, "env", "GOMODCACHE")) + "/cache/download"
		bin, modCache := t.TempDir(), t.TempDir()
		env := []string{
			"GOPROXY=file://" + proxy + ",file://" + downloads,
			// The module is served only here, and the dependencies come
			// from downloads that were verified when they were made.
			"GOSUMDB=off",
			"GOFLAGS=-modcacherw", // so that the test can remove the cache
			"GOMODCACHE=" + modCache,
			"GOBIN=" + bin,
		}
		goCmd(t, t.TempDir(), env, "install", modulePath+"/cmd/srctl@"+pseudo)
		want := pseudo + " (commit " + rev[:12] + ", committed " + commitTime + ")"
		if got := versionOf(t, filepath.Join(bin, "srctl")); got != want {
			t.Errorf("srctl --version:\n got  %q\n want %q", got, want)
		}
	})
}

func cmdPackages() []string {
	var p []string
	for _, c := range commands {
		p = append(p, "./cmd/"+c)
	}
	return p
}

// copySource copies the files a build needs (go.mod, go.sum, cmd/,
// internal/) of the working tree, committed or not, into a new directory.
func copySource(t *testing.T, root string) string {
	t.Helper()
	dst := t.TempDir()
	list := git(t, root, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "go.mod", "go.sum", "cmd", "internal")
	n := 0
	for _, rel := range strings.Split(list, "\x00") {
		if rel == "" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(root, rel))
		if os.IsNotExist(err) {
			continue // deleted in the working tree
		}
		if err != nil {
			t.Fatalf("copy the source: %v", err)
		}
		p := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n == 0 {
		t.Fatalf("copy the source: git ls-files in %s listed nothing", root)
	}
	return dst
}

// serveModule writes the files of a GOPROXY=file:// proxy that serves the
// module in dir at version.
func serveModule(t *testing.T, proxy, dir, version string) {
	t.Helper()
	at := filepath.Join(proxy, modulePath, "@v")
	if err := os.MkdirAll(at, 0o755); err != nil {
		t.Fatal(err)
	}
	info, _ := json.Marshal(map[string]string{"Version": version, "Time": commitTime})
	goMod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var zipped bytes.Buffer
	zw := zip.NewWriter(&zipped)
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		w, err := zw.Create(modulePath + "@" + version + "/" + filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	})
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		t.Fatalf("zip the module: %v", err)
	}
	for name, data := range map[string][]byte{
		"list":            []byte(version + "\n"),
		version + ".info": info,
		version + ".mod":  goMod,
		version + ".zip":  zipped.Bytes(),
	} {
		if err := os.WriteFile(filepath.Join(at, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// goCmd runs the go command in dir with VCS stamping on (this machine's go
// env may turn it off; a user's default is on), plus env.
func goCmd(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), buildWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	flags := "-buildvcs=auto"
	for _, kv := range env {
		if f, ok := strings.CutPrefix(kv, "GOFLAGS="); ok {
			flags += " " + f
		}
	}
	cmd.Env = append(append(os.Environ(), env...), "GOFLAGS="+flags)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	begin := time.Now()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	t.Logf("go %s: %s", args[0], time.Since(begin).Round(time.Millisecond))
	return string(out)
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=test", "GIT_AUTHOR_EMAIL=test@example.invalid", "GIT_AUTHOR_DATE="+commitTime,
		"GIT_COMMITTER_NAME=test", "GIT_COMMITTER_EMAIL=test@example.invalid", "GIT_COMMITTER_DATE="+commitTime)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return string(out)
}

// versionOf is what bin --version prints after the program's name.
func versionOf(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v\n%s", bin, err, out)
	}
	_, v, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	return v
}
