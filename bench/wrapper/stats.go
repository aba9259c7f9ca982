package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// summary describes a set of samples: their count and order statistics
// (nearest rank).
type summary struct {
	N                          int
	Min, P10, Median, P90, Max float64
}

func summarize(xs []float64) summary {
	if len(xs) == 0 {
		return summary{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := func(p float64) float64 {
		i := int(p*float64(len(s))+0.5) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return summary{N: len(s), Min: s[0], P10: rank(0.10), Median: rank(0.50), P90: rank(0.90), Max: s[len(s)-1]}
}

// durations converts nanosecond samples to milliseconds.
func millis(ns []int64) []float64 {
	out := make([]float64, len(ns))
	for i, v := range ns {
		out[i] = float64(v) / 1e6
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// verdict is PASS or MISS.
func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

// table is a Markdown table.
type table struct {
	head []string
	rows [][]string
}

func newTable(head ...string) *table { return &table{head: head} }

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) {
	fmt.Fprintln(w, "| "+strings.Join(t.head, " | ")+" |")
	seps := make([]string, len(t.head))
	for i := range seps {
		seps[i] = "---"
	}
	fmt.Fprintln(w, "| "+strings.Join(seps, " | ")+" |")
	for _, r := range t.rows {
		fmt.Fprintln(w, "| "+strings.Join(r, " | ")+" |")
	}
	fmt.Fprintln(w)
}

// f formats a figure with the given number of decimals.
func f(v float64, decimals int) string { return fmt.Sprintf("%.*f", decimals, v) }

// spread formats a summary as "median (p10–p90, min–max)".
func spread(s summary, decimals int) []string {
	return []string{f(s.Median, decimals), f(s.P10, decimals) + " – " + f(s.P90, decimals), f(s.Min, decimals) + " – " + f(s.Max, decimals), fmt.Sprint(s.N)}
}
