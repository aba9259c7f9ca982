package main

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
)

// scrapeEvery GETs http://addr/metrics every d (never when d is 0) until
// stop, which prints how many scrapes there were and how long they took,
// and returns the first failure.
func scrapeEvery(addr string, d time.Duration) (stop func() error) {
	if d <= 0 {
		return func() error { return nil }
	}
	done := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		tick := time.NewTicker(d)
		defer tick.Stop()
		var took []time.Duration
		var failed error
		for {
			select {
			case <-done:
				slices.Sort(took)
				if len(took) > 0 {
					fmt.Printf("scrapes of /metrics every %s: %d, median %s, max %s\n", d, len(took),
						took[len(took)/2].Round(10*time.Microsecond), took[len(took)-1].Round(10*time.Microsecond))
				}
				result <- failed
				return
			case <-tick.C:
			}
			start := time.Now()
			if _, err := scrapeHeartbeats(addr); err != nil && failed == nil {
				failed = err
			}
			took = append(took, time.Since(start))
		}
	}()
	return func() error {
		close(done)
		return <-result
	}
}

// scrapeHeartbeats GETs http://addr/metrics and returns the server's
// sr_registry_heartbeats_total.
func scrapeHeartbeats(addr string) (float64, error) {
	mfs, err := registrytest.Scrape(&http.Client{Timeout: 10 * time.Second}, "http://"+addr+"/metrics")
	if err != nil {
		return 0, err
	}
	v, ok := registrytest.Unlabelled(mfs)["sr_registry_heartbeats_total"]
	if !ok {
		return 0, errors.New("scrape /metrics: no sr_registry_heartbeats_total")
	}
	return v, nil
}
