package linetest_test

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/linetest"
)

func text(want string) func(linetest.Line) bool {
	return func(l linetest.Line) bool { return l.Text == want }
}

// TestWaitFromSeesLinesWrittenLater: a wait started before the line is
// written returns it, with its index; a wait from after it does not.
func TestWaitFromSeesLinesWrittenLater(t *testing.T) {
	r, w := io.Pipe()
	lines := linetest.Collect(r)
	got := make(chan linetest.Line, 1)
	go func() {
		l, err := lines.WaitFrom(0, 10*time.Second, text("two"))
		if err != nil {
			t.Errorf("WaitFrom: %v", err)
		}
		got <- l
	}()
	if _, err := io.WriteString(w, "one\ntwo\nthree\n"); err != nil {
		t.Fatal(err)
	}
	if l := <-got; l.Index != 1 || l.Text != "two" || l.At.IsZero() {
		t.Fatalf("WaitFrom = %+v; want line 1, \"two\", with its time", l)
	}
	if _, err := lines.WaitFrom(2, 0, text("two")); !errors.Is(err, linetest.ErrTimeout) {
		t.Fatalf("WaitFrom(2) for an earlier line: %v; want ErrTimeout", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !lines.WaitEOF(10 * time.Second) {
		t.Fatal("no EOF after the writer closed")
	}
	if _, err := lines.WaitFrom(0, 10*time.Second, text("four")); !errors.Is(err, linetest.ErrEnded) {
		t.Fatalf("WaitFrom after EOF: %v; want ErrEnded at once", err)
	}
	if n, s := lines.Len(), lines.String(); n != 3 || s != "one\ntwo\nthree\n" {
		t.Fatalf("Len %d, String %q; want 3 lines", n, s)
	}
	if all := lines.All(func(l linetest.Line) bool { return strings.HasPrefix(l.Text, "t") }); len(all) != 2 || all[1].Index != 2 {
		t.Fatalf("All(t...) = %+v; want two and three", all)
	}
}

// TestWaitsTimeOut: with nothing written, both waits give up after their
// timeout.
func TestWaitsTimeOut(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close()
	lines := linetest.Collect(r)
	start := time.Now()
	if _, err := lines.WaitFrom(0, 50*time.Millisecond, text("x")); !errors.Is(err, linetest.ErrTimeout) {
		t.Fatalf("WaitFrom: %v; want ErrTimeout", err)
	}
	if lines.WaitEOF(50 * time.Millisecond) {
		t.Fatal("WaitEOF with the writer open")
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("the waits returned after %s; want their timeouts", d)
	}
}

// TestOverlongLineDrainsTheRest: a line beyond the limit is reported and
// the writer is not blocked.
func TestOverlongLineDrainsTheRest(t *testing.T) {
	lines := linetest.Collect(strings.NewReader("short\n" + strings.Repeat("x", 9<<20) + "\nafter\n"))
	if !lines.WaitEOF(10 * time.Second) {
		t.Fatal("no EOF")
	}
	all := lines.All(nil)
	if len(all) != 2 || all[0].Text != "short" || !strings.Contains(all[1].Text, "linetest:") {
		t.Fatalf("lines %q; want the short one and the error", lines.String())
	}
}
