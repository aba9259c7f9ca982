package store

import (
	"slices"
	"testing"
)

func TestDeadlinesPopsDueEntriesInDeadlineOrder(t *testing.T) {
	var d Deadlines[string]
	if _, ok := d.Next(); ok {
		t.Fatal("Next on an empty heap reported a deadline")
	}
	for _, e := range []struct {
		deadline  int64
		v         string
		wantFirst bool
	}{
		{30, "c", true},
		{10, "a", true},
		{20, "b", false},
		{10, "a-again", true}, // the same deadline as the first counts as first
		{40, "d", false},
	} {
		if got := d.Push(e.deadline, e.v); got != e.wantFirst {
			t.Errorf("Push(%d, %q) first = %v, want %v", e.deadline, e.v, got, e.wantFirst)
		}
	}
	if next, ok := d.Next(); !ok || next != 10 {
		t.Fatalf("Next = %d, %v; want 10, true", next, ok)
	}
	var got []string
	for _, e := range d.PopDue(25, nil) {
		got = append(got, e.Value)
	}
	slices.Sort(got[:2]) // the two entries of deadline 10 come in either order
	if want := []string{"a", "a-again", "b"}; !slices.Equal(got, want) {
		t.Fatalf("PopDue(25) = %v, want %v", got, want)
	}
	if next, _ := d.Next(); next != 30 {
		t.Fatalf("Next after PopDue = %d, want 30", next)
	}
	if rest := d.PopDue(100, nil); len(rest) != 2 || rest[0].Value != "c" || rest[1].Value != "d" {
		t.Fatalf("PopDue(100) = %v, want c then d", rest)
	}
}
