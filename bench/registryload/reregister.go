package main

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
)

// reregister measures a mass restart of one account: n wrappers of the
// same tenant, each on its own keep-alive connection, register at once
// (create a session, then register a service in it), and then re-register
// at once as a restart does (delete the old session, create a new one,
// register the service again). Every one of those calls is committed to
// bbolt before its reply, so the figure shows how the tenant's commits
// share fsyncs. The tenant's limits are raised to 2n for the run.
func reregister(o options) error {
	n := o.reregister
	if n < 1 || n > 5000 {
		return fmt.Errorf("-reregister %d: want 1..5000", n)
	}
	srv, err := startInProcess(api.ResourceLimits{Session: 2 * n, Service: 2 * n})
	if err != nil {
		return err
	}
	defer func() {
		if err := srv.stop(); err != nil {
			fmt.Println("registryload: server:", err)
		}
	}()
	fmt.Printf("machine: %d CPUs, %s; one tenant, %d wrappers, one connection each, server in this process\n",
		runtime.NumCPU(), runtime.Version(), n)
	id, err := registrytest.Login(context.Background(), "http://"+srv.addr, "one-tenant", "key")
	if err != nil {
		return err
	}
	workers := make([]*worker, n)
	for i := range workers {
		w, err := dial(srv.addr, []registrytest.Identity{id})
		if err != nil {
			return err
		}
		defer w.conn.Close()
		if err := w.call(http.MethodGet, id, "/limits", http.StatusOK); err != nil {
			return err
		}
		workers[i] = w
	}
	sessions := make([]sess, n)
	steps := []struct {
		name    string
		restart bool
	}{{"register (create session, register service)", false}, {"re-register (delete the old session, create a new one, register the service)", true}}
	for _, step := range steps {
		lat := make([]time.Duration, n)
		errs := make([]error, n)
		var ready, done sync.WaitGroup
		start := make(chan struct{})
		var t0 time.Time
		for i, w := range workers {
			ready.Add(1)
			done.Add(1)
			go func() {
				defer done.Done()
				s := &sessions[i]
				ready.Done()
				<-start
				begin := time.Now()
				if step.restart {
					if err := w.call(http.MethodDelete, id, "/sessions/"+string(s.id[:]), http.StatusNoContent); err != nil {
						errs[i] = err
						return
					}
				}
				if err := w.create(s, 30); err != nil {
					errs[i] = err
					return
				}
				if err := w.createService(id, "svc-"+strconv.Itoa(i), string(s.id[:])); err != nil {
					errs[i] = err
					return
				}
				lat[i] = time.Since(begin)
			}()
		}
		ready.Wait()
		t0 = time.Now()
		close(start)
		done.Wait()
		elapsed := time.Since(t0)
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		calls := 2
		if step.restart {
			calls = 3
		}
		fmt.Printf("%s: %d wrappers in %s = %.0f wrappers/s, %.0f committed calls/s\n", step.name, n, elapsed.Round(time.Millisecond),
			float64(n)/elapsed.Seconds(), float64(n*calls)/elapsed.Seconds())
		fmt.Printf("  per wrapper, start to registered: %s\n", percentiles(lat))
	}
	return nil
}

// createService registers service svcID in session sessionID.
func (w *worker) createService(id registrytest.Identity, svcID, sessionID string) error {
	body := `{"id":"` + svcID + `","session_id":"` + sessionID + `","tags":["load"]}`
	fmt.Fprintf(w.w, "POST /v1.0/%s/services HTTP/1.1\r\nHost: %s\r\nX-Auth-Token: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		id.TenantID, w.host, id.Token, len(body), body)
	if err := w.w.Flush(); err != nil {
		return err
	}
	status, reply, err := w.readResponse()
	if err == nil && status != http.StatusCreated {
		err = fmt.Errorf("create service %s: status %d: %s", svcID, status, reply)
	}
	return err
}
