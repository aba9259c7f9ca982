package store

import "container/heap"

// Deadlines is a min-heap of values by deadline (any monotonic clock in
// int64, such as nanoseconds since a base), what both stores' expiry runs
// on. It is not safe for concurrent use: the store's lock guards it.
// Entries are never removed early: a store that moves a value's deadline
// pushes it again and drops the stale entry when it surfaces, so a
// heartbeat costs O(1) and the heap O(log n) once per timeout.
type Deadlines[T any] struct{ h deadlineHeap[T] }

// Due is one entry of Deadlines: a value and the deadline it was pushed
// with.
type Due[T any] struct {
	Deadline int64
	Value    T
}

// Push queues v for deadline and reports whether it is now the first
// entry due (the timer of the loop that waits for it must be moved).
func (d *Deadlines[T]) Push(deadline int64, v T) (first bool) {
	heap.Push(&d.h, Due[T]{Deadline: deadline, Value: v})
	return d.h[0].Deadline == deadline
}

// PopDue removes the entries due at now and appends them to buf.
func (d *Deadlines[T]) PopDue(now int64, buf []Due[T]) []Due[T] {
	for len(d.h) > 0 && d.h[0].Deadline <= now {
		buf = append(buf, heap.Pop(&d.h).(Due[T]))
	}
	return buf
}

// Next returns the first deadline, or false when the heap is empty.
func (d *Deadlines[T]) Next() (int64, bool) {
	if len(d.h) == 0 {
		return 0, false
	}
	return d.h[0].Deadline, true
}

type deadlineHeap[T any] []Due[T]

func (h deadlineHeap[T]) Len() int           { return len(h) }
func (h deadlineHeap[T]) Less(i, j int) bool { return h[i].Deadline < h[j].Deadline }
func (h deadlineHeap[T]) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *deadlineHeap[T]) Push(x any)        { *h = append(*h, x.(Due[T])) }
func (h *deadlineHeap[T]) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = Due[T]{} // let the value be collected
	*h = old[:len(old)-1]
	return e
}
