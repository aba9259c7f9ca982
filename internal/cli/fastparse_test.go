package cli

import (
	"bytes"
	"io"
	"maps"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sr-wrapper/sr-wrapper/internal/buildinfo"
)

// matchesKong parses args with parseFast and, when it accepts them, with
// kong, and fails the test unless both give the same grammar values and
// the same flags as given. It reports whether parseFast accepted them.
func matchesKong(t *testing.T, args []string) bool {
	t.Helper()
	var fast Wrapper
	given, ok := parseFast(&fast, args, wrapperDefaultVars())
	if !ok {
		return false
	}
	kw, ctx, err := kongWrapper(args, buildinfo.Info{Version: "test"}, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("parseFast accepted %q, kong refuses it: %v", args, err)
	}
	if !reflect.DeepEqual(fast, *kw) {
		t.Fatalf("%q:\nparseFast %+v\nkong      %+v", args, fast, *kw)
	}
	if want := givenFlags(ctx); !maps.Equal(given, want) {
		t.Fatalf("%q: given %v, kong %v", args, given, want)
	}
	return true
}

// The command lines a service is started with take the fast path, and
// come out as kong has them; anything else is left to kong.
func TestFastParseMatchesKong(t *testing.T) {
	t.Setenv("SR_DEBUG", "yes")
	t.Setenv("SR_USERNAME", "ops")
	base := []string{"--id=web-1", "--registry=http://127.0.0.1:8181/v1.0", "--api-key=k"}
	fast := [][]string{
		{"--", "sleep", "1"},
		{"sleep", "1"},
		{"sleep", "--", "-x"},
		{"--tags=http,apache", "--metadata=port=80", "--", "/usr/sbin/apache2ctl", "-DFOREGROUND"},
		{"-t", "a", "-tb", "-m", "k=v", "-mx=y", "-i", "10", "--", "x"},
		{"-t=a", "--", "x"}, // kong's reading: the tag is "=a"
		{"--interval", "0x10", "--", "x"},
		{"--interval=5", "--interval=7", "--", "x"},
		{"--abort-on-failure", "--abort-on-failure=false", "--retries", "3", "--", "x"},
		{"--debug=no", "--log-level", "warn", "--log-format=console", "--", "x"},
		{"--stop-signal", "WINCH", "--stop-timeout=15s", "--drain-delay", "2s", "--signal-group", "--subreaper", "--kill-mode=process", "--", "x"},
		{"--check-http", "http://127.0.0.1/health", "--check-interval=500ms", "--check-rise=2", "--check-fall", "3", "--", "x"},
		{"--advertise-ip", "auto", "--advertise-port=8080", "--session-metadata", "host=h1", "--", "x"},
		{"--api-key-file", "rel/key", "--etcd-cacert=/abs/ca.pem", "--", "x"},
		{"--region=", "--auth-url", "http://127.0.0.1:5000/v2.0", "--insecure-skip-verify", "--", "x"},
		{"--", "--", "x"},
		{"-", "x"},
		{},
	}
	for _, extra := range fast {
		if args := append(append([]string(nil), base...), extra...); !matchesKong(t, args) {
			t.Errorf("%q: left to kong; want the fast path", args)
		}
	}
	if !matchesKong(t, []string{"--id", "x1x", "--api-key", "k", "--", "x"}) {
		t.Error("a minimal command line is left to kong")
	}
	slow := [][]string{
		{"--help"}, {"-h"}, {"--version"},
		{"--no-such-flag", "--", "x"},
		{"--tags", "-x", "--", "x"},
		{"--interval", "-5", "--", "x"},
		{"--interval=ten", "--", "x"},
		{"--stop-timeout", "10", "--", "x"},
		{"--log-level=loud", "--", "x"},
		{"--kill-mode=mixed", "--", "x"},
		{"--abort-on-failure=maybe", "--", "x"},
		{"--api-key-file=~/key", "--", "x"},
		{"--api-key-file=", "--", "x"},
		{"--retries"},
	}
	for _, extra := range slow {
		if args := append(append([]string(nil), base...), extra...); matchesKong(t, args) {
			t.Errorf("%q: taken by parseFast; want it left to kong, which words the help or the error", args)
		}
	}
	if matchesKong(t, []string{"--api-key=k", "--", "x"}) {
		t.Error("no --id, which is required: taken by parseFast")
	}
	t.Setenv("SR_DEBUG", "sometimes")
	if matchesKong(t, append(append([]string(nil), base...), "--", "x")) {
		t.Error("SR_DEBUG=sometimes: taken by parseFast; kong refuses it")
	}
	if matchesKong(t, append(append([]string(nil), base...), "--debug", "--", "x")) {
		t.Error("SR_DEBUG=sometimes with --debug: taken by parseFast; kong refuses the variable all the same")
	}
}

// fuzzWords are the words FuzzFastParseMatchesKong builds command lines
// from, besides arbitrary ones: every flag in each of its forms, and
// values of every kind the flags take, good and bad.
func fuzzWords() []string {
	words := []string{"--", "-", "-x", "--help", "-h", "--version", "sleep", "", "x", "5", "0x1f", "-5", "1s", "10",
		"true", "false", "yes", "maybe", "auto", "json", "debug", "us", "uk", "group", "process", "TERM", "~/k", "rel/p",
		"/abs/p", "a,b", "k=v", "=v", "http://127.0.0.1:8181/v1.0", "etcd://127.0.0.1:2379", "lo", "10.0.0.0/8"}
	flags, _, _ := wrapperFlags(reflect.ValueOf(&Wrapper{}).Elem(), wrapperDefaultVars())
	for _, f := range flags {
		words = append(words, "--"+f.name, "--"+f.name+"=", "--"+f.name+"=x", "--"+f.name+"=1s", "--"+f.name+"=true")
		if f.short != 0 {
			words = append(words, "-"+string(f.short), "-"+string(f.short)+"v", "-"+string(f.short)+"=v")
		}
	}
	return words
}

// FuzzFastParseMatchesKong: whatever parseFast accepts, kong accepts too,
// with the same values and the same flags given. Each input is a command
// line: either words of fuzzWords chosen by its bytes (first byte even),
// or its own words separated by NUL bytes.
func FuzzFastParseMatchesKong(f *testing.F) {
	words := fuzzWords()
	f.Add([]byte{0, 0, 1, 2, 3})
	f.Add([]byte("\x01--id=web-1\x00--api-key=k\x00-t\x00a\x00--\x00sleep"))
	f.Add([]byte("\x01--id\x00web-1\x00--api-key\x00k\x00--interval\x003\x00sleep\x00--\x00x"))
	for i := range words {
		f.Add([]byte{0, byte(i), byte(i + 1)})
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// kong replaces bytes that are not UTF-8 with U+FFFD, in the
		// command too; parseFast hands them on unchanged, as execve
		// takes them.
		if len(data) == 0 || len(data) > 64 {
			return
		}
		var args []string
		if data[0]%2 == 0 {
			for _, b := range data[1:] {
				args = append(args, words[int(b)%len(words)])
			}
		} else {
			args = strings.Split(string(data[1:]), "\x00")
		}
		for _, a := range args {
			if !utf8.ValidString(a) {
				return
			}
		}
		// Always a valid identity and id first, so that the fuzzer
		// explores the rest rather than the required flag.
		args = append([]string{"--id=web-1", "--api-key=k"}, args...)
		if bytes.ContainsAny(data, "\n") {
			args = append(args, "--", "x")
		}
		matchesKong(t, args)
	})
}
