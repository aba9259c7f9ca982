package server

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"
)

// HashKeyUsage is the help of sr-registry hash-key.
const HashKeyUsage = `Usage: sr-registry hash-key [--cost N]

Reads one API key from standard input (never from the command line, where
ps and the shell history would show it) and prints its bcrypt hash, to put
in place of the key in --credentials:

  sr-registry hash-key < key-file
  printf '%s\n' "$KEY" | sr-registry hash-key
  sr-registry hash-key            (on a terminal: asks, without echo)

Flags:
`

// HashKey runs "sr-registry hash-key": it reads one line from stdin (the
// key, without its line ending) and writes its bcrypt hash and a newline
// to stdout. On a terminal it prompts on stderr and turns echo off while
// the key is typed. It returns the process exit code: 0, 1 when the key
// cannot be read or hashed, 2 for bad flags.
func HashKey(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sr-registry hash-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		_, _ = io.WriteString(stderr, HashKeyUsage)
		fs.PrintDefaults()
	}
	cost := fs.Int("cost", bcrypt.DefaultCost, fmt.Sprintf("bcrypt cost, %d to %d: each step doubles the time of a verification", minHashCost, maxHashCost))
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "sr-registry hash-key: takes no arguments: the key is read from standard input, never the command line (e.g. sr-registry hash-key < key-file)")
		return 2
	}
	if *cost < minHashCost || *cost > maxHashCost {
		fmt.Fprintf(stderr, "sr-registry hash-key: --cost %d out of %d..%d (default %d)\n", *cost, minHashCost, maxHashCost, bcrypt.DefaultCost)
		return 2
	}
	key, err := readKey(stdin, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "sr-registry hash-key: %v\n", err)
		return 1
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(key), *cost)
	if err != nil {
		fmt.Fprintf(stderr, "sr-registry hash-key: hash the key: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s\n", hash)
	return 0
}

// maxKeyLine bounds the line read: a key is at most maxKeyLen bytes.
const maxKeyLine = 4096

// readKey reads the key from the first line of r: on a terminal after a
// prompt, with echo off. Errors never hold the key.
func readKey(r io.Reader, prompt io.Writer) (string, error) {
	if f, ok := r.(*os.File); ok {
		if t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			fmt.Fprint(prompt, "API key (not echoed): ")
			noEcho := *t
			noEcho.Lflag &^= unix.ECHO
			noEcho.Lflag |= unix.ICANON | unix.ECHONL
			if err := unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, &noEcho); err == nil {
				defer func() { _ = unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t) }()
			}
		}
	}
	line, err := bufio.NewReaderSize(io.LimitReader(r, maxKeyLine), maxKeyLine).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the key from standard input: %w", err)
	}
	if errors.Is(err, io.EOF) && len(line) >= maxKeyLine {
		return "", fmt.Errorf("the first line of standard input is over %d bytes: not an API key", maxKeyLine)
	}
	key := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	switch {
	case key == "":
		return "", errors.New("empty key: give the key on standard input (e.g. sr-registry hash-key < key-file)")
	case len(key) > maxKeyLen:
		return "", fmt.Errorf("the key is %d bytes; bcrypt takes at most %d", len(key), maxKeyLen)
	case strings.IndexFunc(key, unicode.IsSpace) >= 0:
		return "", errors.New("the key holds spaces or tabs, which a client's key (a field of --credentials) cannot: check what was piped in")
	case isBcryptHash(key):
		return "", errors.New("this is already a bcrypt hash: give the key itself")
	}
	return key, nil
}
