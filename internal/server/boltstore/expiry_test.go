package boltstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

// The expiry tests run in a synctest bubble: time is the bubble's fake
// clock, which moves only when every goroutine of the bubble (the expiry
// loop, the commit loop, the test) is blocked, so deadlines are checked to
// the nanosecond without waiting for them.

const testTenant = "t1"

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(Config{Dir: dir, Store: testOptions(1000)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func createSession(t *testing.T, s *Store, timeout int, services ...string) (string, uuid.UUID) {
	t.Helper()
	tok := uuid.New()
	id, err := s.CreateSession(context.Background(), testTenant, store.NewSession{HeartbeatTimeout: timeout, Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range services {
		if err := s.CreateService(context.Background(), testTenant, api.Service{ID: svc, SessionID: id, Tags: []string{}, Metadata: map[string]string{}}); err != nil {
			t.Fatal(err)
		}
	}
	return id, tok
}

func exists(t *testing.T, s *Store, id string) bool {
	t.Helper()
	_, err := s.Session(context.Background(), testTenant, id)
	switch {
	case err == nil:
		return true
	case errors.Is(err, store.ErrNotFound):
		return false
	}
	t.Fatal(err)
	return false
}

// timeouts returns the services each services.timeout event lists.
func timeouts(t *testing.T, s *Store) [][]string {
	t.Helper()
	evs, err := s.Events(context.Background(), testTenant, "", 10000)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, e := range evs {
		if e.Type != api.EventServicesTimeout {
			continue
		}
		var svcs []api.Service
		if err := json.Unmarshal(e.Payload, &svcs); err != nil {
			t.Fatal(err)
		}
		ids := []string{}
		for _, svc := range svcs {
			ids = append(ids, svc.ID)
		}
		out = append(out, ids)
	}
	return out
}

// sleep moves the bubble's clock by d and lets the store's loops act on it.
func sleep(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func TestASessionExpiresAtItsTimeoutWithOneEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := open(t, t.TempDir())
		defer s.Close()
		id, _ := createSession(t, s, 3, "web-1", "web-2")
		sleep(3*time.Second - time.Millisecond)
		if !exists(t, s, id) {
			t.Fatal("expired before its timeout")
		}
		sleep(2 * time.Millisecond)
		if exists(t, s, id) {
			t.Fatal("still there after its timeout")
		}
		for _, svc := range []string{"web-1", "web-2"} {
			if _, err := s.Service(context.Background(), testTenant, svc); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("service %s outlived its session: %v", svc, err)
			}
		}
		if got := timeouts(t, s); !reflect.DeepEqual(got, [][]string{{"web-1", "web-2"}}) {
			t.Fatalf("services.timeout events %v, want one listing both services", got)
		}
	})
}

func TestHeartbeatsPostponeExpiryToTheLastOnePlusTheTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := open(t, t.TempDir())
		defer s.Close()
		id, tok := createSession(t, s, 3)
		for range 5 {
			sleep(2 * time.Second)
			next, err := s.Heartbeat(context.Background(), testTenant, id, tok, uuid.New())
			if err != nil {
				t.Fatal(err)
			}
			tok = next
		}
		sleep(3*time.Second - time.Millisecond)
		if !exists(t, s, id) {
			t.Fatal("expired before the last heartbeat's timeout")
		}
		sleep(2 * time.Millisecond)
		if exists(t, s, id) {
			t.Fatal("still there after the last heartbeat's timeout")
		}
		if _, err := s.Heartbeat(context.Background(), testTenant, id, tok, uuid.New()); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("heartbeat of an expired session: %v, want not found", err)
		}
	})
}

func TestAChangedTimeoutCountsFromTheLastHeartbeat(t *testing.T) {
	tests := []struct {
		name    string
		timeout int
		want    time.Duration // from creation
	}{
		{"shorter", 3, 3 * time.Second},
		{"longer", 20, 20 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := open(t, t.TempDir())
				defer s.Close()
				id, _ := createSession(t, s, 10)
				sleep(time.Second)
				if err := s.UpdateSession(context.Background(), testTenant, id, store.SessionUpdate{HeartbeatTimeout: &tc.timeout}); err != nil {
					t.Fatal(err)
				}
				sleep(tc.want - time.Second - time.Millisecond)
				if !exists(t, s, id) {
					t.Fatal("expired early")
				}
				sleep(2 * time.Millisecond)
				if exists(t, s, id) {
					t.Fatalf("still there %s after creation", tc.want)
				}
			})
		})
	}
}

func TestADeletedSessionDoesNotTimeOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := open(t, t.TempDir())
		defer s.Close()
		id, _ := createSession(t, s, 3, "web-1")
		if err := s.DeleteSession(context.Background(), testTenant, id); err != nil {
			t.Fatal(err)
		}
		createSession(t, s, 3, "web-1") // the id is free at once
		sleep(10 * time.Second)
		if got := timeouts(t, s); !reflect.DeepEqual(got, [][]string{{"web-1"}}) {
			t.Fatalf("services.timeout events %v, want only the second session's", got)
		}
	})
}

func TestRestoredSessionsGetAFreshTimeoutAndAnyToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		s := open(t, dir)
		kept, keptTok := createSession(t, s, 3, "kept-svc")
		idle, _ := createSession(t, s, 3, "idle-svc")
		// Most of the timeout passes before the restart: restored
		// sessions must not expire at once.
		sleep(2500 * time.Millisecond)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open(t, dir)
		defer s.Close()
		ctx := context.Background()
		if v, err := s.Service(ctx, testTenant, "kept-svc"); err != nil || v.SessionID != kept {
			t.Fatalf("restored service %+v %v", v, err)
		}
		// The token chain died with the process: the first heartbeat
		// takes the client's token as it comes and starts a new chain.
		next, err := s.Heartbeat(ctx, testTenant, kept, keptTok, uuid.New())
		if err != nil {
			t.Fatal(err)
		}
		if again, err := s.Heartbeat(ctx, testTenant, kept, keptTok, uuid.New()); err != nil || again != next {
			t.Fatalf("the previous token replays: %v %v, want %v", again, err, next)
		}
		next2, err := s.Heartbeat(ctx, testTenant, kept, next, uuid.New())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Heartbeat(ctx, testTenant, kept, keptTok, uuid.New()); !errors.Is(err, store.ErrTokenMismatch) {
			t.Fatalf("a token two steps back: %v, want a mismatch", err)
		}
		// The idle one expires one full timeout after the restart.
		sleep(3*time.Second - time.Millisecond)
		if !exists(t, s, idle) {
			t.Fatal("the restored idle session expired before a full timeout after the restart")
		}
		if _, err := s.Heartbeat(ctx, testTenant, kept, next2, uuid.New()); err != nil {
			t.Fatal(err)
		}
		sleep(2 * time.Millisecond)
		if exists(t, s, idle) || !exists(t, s, kept) {
			t.Fatal("after a full timeout since the restart: the idle session must be gone, the heartbeated one there")
		}
		if got := timeouts(t, s); !reflect.DeepEqual(got, [][]string{{"idle-svc"}}) {
			t.Fatalf("services.timeout events %v", got)
		}
	})
}

func TestMassExpiryGivesEachSessionItsOwnEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 500
		s := open(t, t.TempDir())
		defer s.Close()
		for i := range n {
			createSession(t, s, 3, fmt.Sprintf("svc-%04d", i))
		}
		sleep(3 * time.Second)
		if all, _ := s.Sessions(context.Background(), testTenant); len(all) != 0 {
			t.Fatalf("%d sessions left at their deadline", len(all))
		}
		evs := timeouts(t, s)
		seen := map[string]bool{}
		for _, svcs := range evs {
			if len(svcs) != 1 || seen[svcs[0]] {
				t.Fatalf("timeout event %v: want one per session, each with its one service", svcs)
			}
			seen[svcs[0]] = true
		}
		if len(evs) != n {
			t.Fatalf("%d timeout events, want %d", len(evs), n)
		}
	})
}
