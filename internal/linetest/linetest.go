// Package linetest is test support: it collects the lines a process (or a
// command run in the test's own process) writes to a pipe, as they
// arrive, and lets a test wait for the one it expects with a deadline,
// instead of sleeping and looking.
//
// It is for tests only: nothing outside _test.go files imports it. It
// knows nothing about what the lines mean; callers that read JSON log
// entries decode them in their matchers.
//
//	out := linetest.Collect(stdoutPipe)
//	from := out.Len()
//	... act ...
//	l, err := out.WaitFrom(from, 10*time.Second, func(l linetest.Line) bool { return l.Text == "ready" })
package linetest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// maxLine is the longest line kept whole: a debug dump of an HTTP
// transaction can be long.
const maxLine = 8 << 20

// Errors of WaitFrom.
var (
	// ErrEnded: every writer closed the pipe before a line matched.
	ErrEnded = errors.New("the output ended before a matching line")
	// ErrTimeout: no line matched within the timeout.
	ErrTimeout = errors.New("no matching line in time")
)

// Line is one line read from the pipe, without its newline.
type Line struct {
	// Index is the line's position in the output, from 0.
	Index int
	Text  string
	// At is when the collector read the line: an upper bound of when it
	// was written.
	At time.Time
}

// Lines collects the lines of one pipe. Its methods are safe for
// concurrent use.
type Lines struct {
	mu      sync.Mutex
	lines   []Line
	eof     bool
	changed chan struct{} // closed, and replaced, at each line and at EOF
}

// Collect reads r to its end in the background, whatever the test waits
// for, so that the writer never blocks on a full pipe. A line longer than
// 8 MiB ends the collection with a line saying so (the rest of r is read
// and dropped).
func Collect(r io.Reader) *Lines {
	l := &Lines{changed: make(chan struct{})}
	go l.read(r)
	return l
}

func (l *Lines) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for sc.Scan() {
		l.add(sc.Text())
	}
	if err := sc.Err(); err != nil {
		l.add("(linetest: " + err.Error() + ")")
		_, _ = io.Copy(io.Discard, r)
	}
	l.mu.Lock()
	l.eof = true
	l.notify()
	l.mu.Unlock()
}

func (l *Lines) add(text string) {
	l.mu.Lock()
	l.lines = append(l.lines, Line{Index: len(l.lines), Text: text, At: time.Now()})
	l.notify()
	l.mu.Unlock()
}

// notify wakes every waiter; l.mu is held.
func (l *Lines) notify() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// WaitFrom returns the first line at or after index from that matches,
// waiting up to timeout for it. The error is ErrEnded when the pipe
// closed first, or wraps ErrTimeout. A timeout of 0 only looks at the
// lines read so far.
func (l *Lines) WaitFrom(from int, timeout time.Duration, match func(Line) bool) (Line, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	next := from
	for {
		// Lines are only appended, never changed: the ones read so far
		// can be matched without the lock, which match may take again.
		l.mu.Lock()
		read, changed, eof := l.lines, l.changed, l.eof
		l.mu.Unlock()
		for ; next < len(read); next++ {
			if match(read[next]) {
				return read[next], nil
			}
		}
		if eof {
			return Line{}, ErrEnded
		}
		select {
		case <-changed:
		case <-timer.C:
			return Line{}, fmt.Errorf("%w (%s)", ErrTimeout, timeout)
		}
	}
}

// WaitEOF waits up to timeout until every writer has closed the pipe and
// every line has been read, and reports whether that happened.
func (l *Lines) WaitEOF(timeout time.Duration) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		l.mu.Lock()
		changed, eof := l.changed, l.eof
		l.mu.Unlock()
		if eof {
			return true
		}
		select {
		case <-changed:
		case <-timer.C:
			return false
		}
	}
}

// All returns the lines read so far that match, all of them for nil.
func (l *Lines) All(match func(Line) bool) []Line {
	l.mu.Lock()
	read := l.lines
	l.mu.Unlock()
	var out []Line
	for _, x := range read {
		if match == nil || match(x) {
			out = append(out, x)
		}
	}
	return out
}

// Len is the number of lines read so far: the index of the next one, to
// wait for a line that follows an action.
func (l *Lines) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

// String is the output read so far, each line ended by a newline.
func (l *Lines) String() string {
	var b strings.Builder
	for _, x := range l.All(nil) {
		b.WriteString(x.Text)
		b.WriteByte('\n')
	}
	return b.String()
}
