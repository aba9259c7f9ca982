package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sr-wrapper/sr-wrapper/internal/server/ratelimit"
)

// AuthLimits bound what logins (POST /v2.0/tokens) may cost. Only the
// verification of a bcrypt hash is costly (tens of milliseconds of a
// core); every other request is checked against a token, cheaply.
type AuthLimits struct {
	// Verifications is how many bcrypt verifications may run at once;
	// zero means half of GOMAXPROCS (at least 1), so that a flood of
	// wrong keys leaves the other cores to heartbeats and the rest of the
	// API. A login that finds them all busy waits up to verifyWait, then
	// is answered 429 rateLimitReached with a Retry-After.
	Verifications int
	// Failures is how many failed logins a source address (an IPv4
	// address, an IPv6 /64) may make at once, refilled at that number per
	// FailureWindow; past it the source's logins are answered 429 until
	// the bucket refills. Successful logins cost nothing, so a host
	// restarting many wrappers with the right key is never held back.
	// Zero means DefaultAuthFailures per DefaultAuthFailureWindow; a
	// negative value turns the limit off (behind a load balancer every
	// client has its address: limit there instead).
	Failures      int
	FailureWindow time.Duration
}

// Defaults of AuthLimits' zero values.
const (
	DefaultAuthFailures      = 100
	DefaultAuthFailureWindow = time.Minute
)

// verifyWait is how long a login waits for a free verifier before its
// 429: a few verifications' time, so that a burst of distinct accounts
// logging in at once queues rather than fails.
const verifyWait = 250 * time.Millisecond

// ParseAuthRateLimit parses the --auth-rate-limit flag: "N/DURATION"
// (failed logins per source, e.g. "100/1m") or "off".
func ParseAuthRateLimit(s string) (failures int, window time.Duration, err error) {
	if s == "off" {
		return -1, 0, nil
	}
	// The same N/DURATION as --rate-limit, one parser for both.
	l, err := ratelimit.Parse(s)
	if err != nil {
		return 0, 0, fmt.Errorf("%w, or off", err)
	}
	if l.Requests > math.MaxInt32 {
		return 0, 0, fmt.Errorf("%q: N is more than %d failures: want a smaller N, or off", s, math.MaxInt32)
	}
	return int(l.Requests), l.Window, nil
}

// authGuard bounds the cost of logins: the verifiers (a semaphore) and
// the failures per source (token buckets). It outlives credential
// generations.
type authGuard struct {
	sem chan struct{}
	// verifications counts bcrypt verifications done, for tests.
	verifications atomic.Int64

	// Failure buckets: capacity burst, refilled at rate per second.
	burst float64
	rate  float64
	mu    sync.Mutex
	srcs  map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// maxSources bounds the buckets kept; past it the full ones are dropped
// (they hold nothing a fresh bucket would not), and if none is, new
// sources share one bucket.
const maxSources = 50_000

const overflowSource = "overflow"

func newAuthGuard(l AuthLimits) (*authGuard, error) {
	n := l.Verifications
	if n < 0 {
		return nil, errors.New("auth limits: Verifications must not be negative")
	}
	if n == 0 {
		n = max(1, runtime.GOMAXPROCS(0)/2)
	}
	g := &authGuard{sem: make(chan struct{}, n), srcs: map[string]*bucket{}}
	switch {
	case l.Failures < 0:
	case l.Failures == 0:
		g.burst, g.rate = DefaultAuthFailures, DefaultAuthFailures/DefaultAuthFailureWindow.Seconds()
	default:
		if l.FailureWindow <= 0 {
			return nil, errors.New("auth limits: FailureWindow must be positive with Failures")
		}
		g.burst, g.rate = float64(l.Failures), float64(l.Failures)/l.FailureWindow.Seconds()
	}
	return g, nil
}

// verify compares key with hash on a verifier. It answers a *busyError
// when none is free within verifyWait.
func (g *authGuard) verify(ctx context.Context, hash []byte, key string) (bool, error) {
	if len(key) > maxKeyLen {
		// No hash in the credentials is of such a key (hash-key refuses
		// them), and Go's bcrypt refuses them too: no need to wait.
		return false, nil
	}
	select {
	case g.sem <- struct{}{}:
	default:
		t := time.NewTimer(verifyWait)
		defer t.Stop()
		select {
		case g.sem <- struct{}{}:
		case <-t.C:
			return false, &busyError{reason: "too many logins being verified at once", retryAfter: time.Second}
		case <-ctx.Done():
			return false, &busyError{reason: "login abandoned while waiting", retryAfter: time.Second}
		}
	}
	defer func() { <-g.sem }()
	g.verifications.Add(1)
	return bcrypt.CompareHashAndPassword(hash, []byte(key)) == nil, nil
}

// refill brings b to now.
func (g *authGuard) refill(b *bucket, now time.Time) {
	b.tokens = math.Min(g.burst, b.tokens+now.Sub(b.at).Seconds()*g.rate)
	b.at = now
}

// blocked returns how long src must wait before its next login, or 0.
func (g *authGuard) blocked(src string) time.Duration {
	if g.rate == 0 {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	b := g.srcs[src]
	if b == nil {
		if b = g.srcs[overflowSource]; b == nil || len(g.srcs) < maxSources {
			return 0
		}
	}
	g.refill(b, time.Now())
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration(math.Ceil((1-b.tokens)/g.rate)) * time.Second
}

// failed takes one token from src's bucket.
func (g *authGuard) failed(src string) {
	if g.rate == 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	b := g.srcs[src]
	if b == nil {
		if len(g.srcs) >= maxSources {
			g.sweep(now)
		}
		if len(g.srcs) >= maxSources {
			src = overflowSource
			b = g.srcs[src]
		}
	}
	if b == nil {
		b = &bucket{tokens: g.burst, at: now}
		g.srcs[src] = b
	}
	g.refill(b, now)
	b.tokens = math.Max(0, b.tokens-1)
}

// sweep drops the buckets that have refilled.
func (g *authGuard) sweep(now time.Time) {
	for k, b := range g.srcs {
		if g.refill(b, now); b.tokens >= g.burst {
			delete(g.srcs, k)
		}
	}
}

// sourceKey is the bucket of a request's remote address: the IP, or the
// /64 of an IPv6 address (one host usually has a whole /64 to pick from).
func sourceKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip4 := ip.To4(); ip4 != nil {
		return ip4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}
