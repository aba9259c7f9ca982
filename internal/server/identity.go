package server

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/sr-wrapper/sr-wrapper/internal/server/store"
)

// Credential is one account of a credentials file: the username and API
// key a client authenticates with, and the tenant id its token is for.
// APIKey is either the key itself or its bcrypt hash ($2a$, $2b$ or $2y$,
// as htpasswd -B and sr-registry hash-key write them).
type Credential struct {
	Username, APIKey, Tenant string
}

// tenantIDPattern is what a tenant id must look like: one URL path segment
// that needs no escaping.
var tenantIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$`)

// LoadCredentials reads a credentials file (see ParseCredentials).
func LoadCredentials(path string) ([]Credential, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	defer f.Close()
	return ParseCredentials(f, path)
}

// ParseCredentials reads the accounts of a credentials file from r; name
// (its path) is for errors. The format is one account per line, three
// fields separated by spaces or tabs:
//
//	# username   api-key, or its bcrypt hash (sr-registry hash-key)             tenant
//	alice        $2a$10$5is10nbGJ6ZQ3IIqbmUxA.NhnhwPn4cL7QiUy1PJm0HlB8yGSxbnK   100001
//	bob          fedcba9876543210fedcba9876543210                               100002
//
// Blank lines and lines starting with # are ignored. An api-key starting
// with $2a$, $2b$ or $2y$ is a bcrypt hash and must be a whole one (cost
// 04 to 15, 60 characters); any other is the key in clear. Tenant ids are
// one URL path segment: a letter or digit, then up to 63 letters, digits,
// '_', '-' or '.'. Several users may share a tenant; a username may
// appear once. Errors name the line, never the key or hash.
func ParseCredentials(r io.Reader, name string) ([]Credential, error) {
	var out []Credential
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	n := 1
	for ; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) == 1 && strings.Contains(line, ":$") {
			return nil, fmt.Errorf("read credentials %s:%d: this looks like an htpasswd line (user:hash): write it as 'username hash tenant', separated by spaces", name, n)
		}
		if len(fields) != 3 {
			return nil, fmt.Errorf("read credentials %s:%d: want 3 fields (username api-key tenant), got %d", name, n, len(fields))
		}
		c := Credential{Username: fields[0], APIKey: fields[1], Tenant: fields[2]}
		if err := checkKeyField(c.APIKey); err != nil {
			return nil, fmt.Errorf("read credentials %s:%d: api-key of %q: %w", name, n, c.Username, err)
		}
		if !tenantIDPattern.MatchString(c.Tenant) {
			return nil, fmt.Errorf("read credentials %s:%d: tenant %q must match %s", name, n, truncate(c.Tenant), tenantIDPattern)
		}
		if prev, dup := seen[c.Username]; dup {
			return nil, fmt.Errorf("read credentials %s:%d: username %q already defined on line %d", name, n, truncate(c.Username), prev)
		}
		seen[c.Username] = n
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read credentials %s:%d: %w", name, n, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("read credentials %s: no accounts in the file", name)
	}
	return out, nil
}

// Bounds of the bcrypt cost accepted in credentials. Above maxHashCost one
// verification takes seconds of a core (each step doubles it): a typo
// such as 31 would make every login a denial of service.
const (
	minHashCost = bcrypt.MinCost // 4
	maxHashCost = 15
	// bcryptHashLen is the length of every bcrypt hash: "$2y$", two digits
	// of cost, "$", 22 characters of salt and 31 of hash.
	bcryptHashLen = 60
	// maxKeyLen is the longest key bcrypt takes (Go's refuses longer ones
	// rather than ignore the rest, as C implementations do).
	maxKeyLen = 72
)

// isBcryptHash reports whether an api-key field is meant as a bcrypt hash.
func isBcryptHash(key string) bool {
	return strings.HasPrefix(key, "$2a$") || strings.HasPrefix(key, "$2b$") || strings.HasPrefix(key, "$2y$")
}

// checkKeyField rejects an api-key field that is a malformed bcrypt hash,
// or a hash of a kind not supported. The error never holds the field.
func checkKeyField(key string) error {
	if !isBcryptHash(key) {
		for _, p := range []string{"$2$", "$2x$", "$1$", "$apr1$", "$5$", "$6$", "{SHA}"} {
			if strings.HasPrefix(key, p) {
				return fmt.Errorf("a %s... hash is not supported: only bcrypt ($2a$, $2b$, $2y$; htpasswd -B or sr-registry hash-key)", p)
			}
		}
		return nil
	}
	if len(key) != bcryptHashLen {
		return fmt.Errorf("a bcrypt hash has %d characters, this one %d: truncated or mangled? hash the key again (sr-registry hash-key)", bcryptHashLen, len(key))
	}
	cost, err := strconv.Atoi(key[4:6])
	if err != nil || key[6] != '$' || key[4] < '0' || key[4] > '9' {
		return errors.New("a bcrypt hash has its cost as two digits after $2y$ (e.g. $2y$10$...): hash the key again (sr-registry hash-key)")
	}
	if cost < minHashCost || cost > maxHashCost {
		return fmt.Errorf("bcrypt cost %d out of %d..%d: hash the key again with sr-registry hash-key --cost %d", cost, minHashCost, maxHashCost, bcrypt.DefaultCost)
	}
	for i := 7; i < len(key); i++ {
		if !isBcryptBase64(key[i]) {
			return fmt.Errorf("character %d of the bcrypt hash is not in bcrypt's alphabet (./A-Za-z0-9): hash the key again (sr-registry hash-key)", i+1)
		}
	}
	if _, err := bcrypt.Cost([]byte(key)); err != nil {
		// Not expected after the checks above; bcrypt's errors do not
		// hold the hash.
		return fmt.Errorf("not a bcrypt hash: %w", err)
	}
	return nil
}

func isBcryptBase64(b byte) bool {
	return b == '.' || b == '/' || ('A' <= b && b <= 'Z') || ('a' <= b && b <= 'z') || ('0' <= b && b <= '9')
}

// DevTenantID is the tenant id that dev mode gives a username: a decimal
// number from 1000000000 to 2147483646, derived from a SHA-256 of the
// username. It is stable across restarts and machines, looks like the
// numeric tenant ids of the hosted service, is a plain URL path segment
// whatever the username holds, and fits the 32-bit integer that the Java
// client keeps tenant ids in.
func DevTenantID(username string) string {
	return strconv.FormatUint(devTenantOfOld(oldDevTenant(username)), 10)
}

// Before 32-bit tenant ids, dev mode gave each username oldDevTenant: ten
// digits from 1000000000 to 9999999999, many above 2^31-1. The id of
// today is a function of that old one, devTenantOfOld, which keeps the old
// ids that were already below 2^31-1 and folds the others into that range:
// so a data dir keyed by old ids can be upgraded from the ids alone,
// without knowing the usernames (see movedDevTenant).
const (
	devTenantMin   = 1_000_000_000
	devTenantSpan  = 1<<31 - 1 - devTenantMin // ids stay below 2147483647
	oldTenantSpan  = 9_000_000_000
	oldTenantDigit = 10
)

func oldDevTenant(username string) uint64 {
	sum := sha256.Sum256([]byte(username))
	return binary.BigEndian.Uint64(sum[:8])%oldTenantSpan + devTenantMin
}

func devTenantOfOld(old uint64) uint64 { return (old-devTenantMin)%devTenantSpan + devTenantMin }

// movedDevTenant reports whether id is a dev tenant id of the old 10-digit
// derivation that today's DevTenantID no longer gives, and if so which id
// the same username has now. Ids below 2147483647 are today's ids too.
func movedDevTenant(id string) (string, bool) {
	if len(id) != oldTenantDigit || id[0] == '0' {
		return "", false
	}
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil || n < devTenantMin+devTenantSpan {
		return "", false
	}
	return strconv.FormatUint(devTenantOfOld(n), 10), true
}

// credentials decide who may authenticate and as which tenant: one
// generation of the accounts (New, then each SetCredentials makes a new
// one). Tokens are the store's (store.Store.IssueToken), so that with etcd
// a token issued by one frontend works on all.
type credentials struct {
	dev      bool
	accounts map[string]account // by username
	// dummy is a hash that unknown usernames are verified against when
	// some accounts are hashed, so that a wrong username costs what a
	// wrong key does and the time of a 401 does not tell which usernames
	// exist. It is made on first use (at the highest cost of the
	// accounts), not to slow every load.
	dummyCost int
	dummyOnce sync.Once
	dummy     []byte

	// macKey keys the cache of verified keys: the cache holds no key nor
	// any plain hash of one that could be looked up offline, and a new
	// generation's cache owes nothing to the old one's.
	macKey [32]byte
	mu     sync.Mutex
	// verified holds each (username, key) whose bcrypt verification
	// succeeded, by verifyKey: at most one entry per hashed account, since
	// only one key matches a hash.
	verified map[[32]byte]struct{}
	// flights are the verifications under way: a second login with the
	// same username and key waits for the first one's answer rather than
	// verifying again, so a thousand wrappers restarting with one key cost
	// one bcrypt.
	flights map[[32]byte]*flight
}

type account struct {
	tenant string
	key    []byte // the clear key, or the bcrypt hash when hashed
	hashed bool
	stamp  string // keyStamp of the key; empty for dev users
}

// keyStamp names an account's key field in the tokens issued under it,
// so that a reload that changes the key (a rotation, or a new hash of the
// same key) ends them. It is the same on every frontend (no per-process
// secret: a token issued by one is checked by the others), and it is 32
// bits of a SHA-256 because it is stored beside the token in etcd: enough
// to miss a change of key once in four billion, too few to confirm a
// guess of a clear key for whoever reads etcd.
func keyStamp(username string, key []byte) string {
	h := sha256.New()
	h.Write([]byte("sr-registry key stamp\x00"))
	writeUserKey(h, username, key)
	return hex.EncodeToString(h.Sum(nil)[:4])
}

// writeUserKey writes a username and a key to h, the username
// length-prefixed so that no two pairs write the same bytes.
func writeUserKey(h hash.Hash, username string, key []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(username)))
	h.Write(n[:])
	h.Write([]byte(username))
	h.Write(key)
}

// flight is one bcrypt verification that others may wait for.
type flight struct {
	done chan struct{}
	ok   bool
	err  error // a busy verifier: no answer
}

// newCredentials checks the accounts and makes a generation of them.
// Each account whose key is in clear is logged (by username) as a
// warning.
func newCredentials(dev bool, creds []Credential, log *zap.Logger) (*credentials, error) {
	cs := &credentials{
		dev:      dev,
		accounts: make(map[string]account, len(creds)),
		verified: map[[32]byte]struct{}{},
		flights:  map[[32]byte]*flight{},
	}
	_, _ = rand.Read(cs.macKey[:])
	var clear []string
	dummyCost := 0
	for _, c := range creds {
		if c.Username == "" || c.APIKey == "" {
			return nil, fmt.Errorf("credential for tenant %q: username and API key must not be empty", c.Tenant)
		}
		if !tenantIDPattern.MatchString(c.Tenant) {
			return nil, fmt.Errorf("credential of %q: tenant %q must match %s", c.Username, c.Tenant, tenantIDPattern)
		}
		if _, dup := cs.accounts[c.Username]; dup {
			return nil, fmt.Errorf("credential of %q defined twice", c.Username)
		}
		if err := checkKeyField(c.APIKey); err != nil {
			return nil, fmt.Errorf("credential of %q: %w", c.Username, err)
		}
		a := account{tenant: c.Tenant, key: []byte(c.APIKey), hashed: isBcryptHash(c.APIKey), stamp: keyStamp(c.Username, []byte(c.APIKey))}
		if a.hashed {
			cost, _ := bcrypt.Cost(a.key)
			dummyCost = max(dummyCost, cost)
		} else {
			clear = append(clear, c.Username)
		}
		cs.accounts[c.Username] = a
	}
	cs.dummyCost = dummyCost
	if len(clear) > 0 && log != nil {
		sort.Strings(clear)
		const shown = 20
		names := clear
		if len(names) > shown {
			names = names[:shown]
		}
		log.Warn("API keys stored in clear in the credentials: replace each with its bcrypt hash (sr-registry hash-key)",
			zap.Int("accounts", len(clear)), zap.Strings("usernames", names))
	}
	return cs, nil
}

// verifyKey is the cache key of a username and API key: an HMAC-SHA256
// under the generation's macKey.
func (cs *credentials) verifyKey(username, apiKey string) [32]byte {
	m := hmac.New(sha256.New, cs.macKey[:])
	writeUserKey(m, username, []byte(apiKey))
	var out [32]byte
	m.Sum(out[:0])
	return out
}

// current reports whether the account a token was issued to still has
// the token's tenant and key in this generation: a token outlives neither
// the removal of its account, nor a change of its tenant, nor a change of
// its key. A token without a stamp was stored by a frontend older than
// stamps (etcd, during a rolling upgrade) and is checked by tenant alone
// until it expires. In dev mode the usernames no account names keep their
// dev tenant.
func (cs *credentials) current(tok store.Token) bool {
	if a, ok := cs.accounts[tok.User]; ok {
		return a.tenant == tok.Tenant && (tok.Stamp == "" || tok.Stamp == a.stamp)
	}
	return cs.dev && tok.Stamp == "" && DevTenantID(tok.User) == tok.Tenant
}

// errWrongCredentials is a username and API key that do not match.
var errWrongCredentials = errors.New("unknown username or wrong API key")

// busyError is a login refused for now: too many verifications at once,
// or too many failures from its source. Retry after RetryAfter.
type busyError struct {
	reason     string
	retryAfter time.Duration
}

func (e *busyError) Error() string { return e.reason }

// check returns the account of a username and API key from src (the
// source's key, see sourceKey; a dev user's account has its dev tenant
// and no stamp), errWrongCredentials, or a *busyError.
// Accounts of the credentials win over dev mode, so a dev server can
// still pin some users to fixed tenants. Only the verification of a hash
// is costly, and g bounds it: cache hits and dev users never wait nor
// count as failures.
func (cs *credentials) check(ctx context.Context, g *authGuard, src, username, apiKey string) (account, error) {
	if username == "" {
		return account{}, errWrongCredentials
	}
	a, known := cs.accounts[username]
	if !known && cs.dev {
		return account{tenant: DevTenantID(username)}, nil
	}
	var vk [32]byte
	if known && a.hashed {
		vk = cs.verifyKey(username, apiKey)
		cs.mu.Lock()
		_, hit := cs.verified[vk]
		cs.mu.Unlock()
		if hit {
			return a, nil
		}
	}
	if wait := g.blocked(src); wait > 0 {
		return account{}, &busyError{reason: "too many failed logins from this address", retryAfter: wait}
	}
	var ok bool
	var err error
	switch {
	case !known:
		if dummy := cs.dummyHash(); dummy != nil {
			_, err = g.verify(ctx, dummy, apiKey)
		}
	case !a.hashed:
		ok = subtle.ConstantTimeCompare(a.key, []byte(apiKey)) == 1
	default:
		ok, err = cs.verifyHashed(ctx, g, vk, a, apiKey)
	}
	if err != nil {
		return account{}, err
	}
	if !ok {
		g.failed(src)
		return account{}, errWrongCredentials
	}
	return a, nil
}

// dummyHash is the hash of a random key that nobody knows, or nil when
// no account is hashed.
func (cs *credentials) dummyHash() []byte {
	if cs.dummyCost == 0 {
		return nil
	}
	cs.dummyOnce.Do(func() {
		var k [16]byte
		_, _ = rand.Read(k[:])
		// Cannot fail: the key is short, the cost in range.
		cs.dummy, _ = bcrypt.GenerateFromPassword([]byte(hex.EncodeToString(k[:])), cs.dummyCost)
	})
	return cs.dummy
}

// verifyHashed verifies apiKey against a's hash, or waits for the same
// verification already under way, and caches a success.
func (cs *credentials) verifyHashed(ctx context.Context, g *authGuard, vk [32]byte, a account, apiKey string) (bool, error) {
	cs.mu.Lock()
	if f, ok := cs.flights[vk]; ok {
		cs.mu.Unlock()
		select {
		case <-f.done:
			return f.ok, f.err
		case <-ctx.Done():
			return false, &busyError{reason: "login abandoned while waiting", retryAfter: time.Second}
		}
	}
	f := &flight{done: make(chan struct{})}
	cs.flights[vk] = f
	cs.mu.Unlock()

	f.ok, f.err = g.verify(ctx, a.key, apiKey)
	cs.mu.Lock()
	delete(cs.flights, vk)
	if f.ok {
		cs.verified[vk] = struct{}{}
	}
	cs.mu.Unlock()
	close(f.done)
	return f.ok, f.err
}
