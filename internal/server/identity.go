package server

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// Credential is one account of a credentials file: the username and API
// key a client authenticates with, and the tenant id its token is for.
type Credential struct {
	Username, APIKey, Tenant string
}

// tenantIDPattern is what a tenant id must look like: one URL path segment
// that needs no escaping.
var tenantIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$`)

// LoadCredentials reads a credentials file. The format is one account per
// line, three fields separated by spaces or tabs:
//
//	# username   api-key                            tenant
//	alice        0123456789abcdef0123456789abcdef   100001
//	bob          fedcba9876543210fedcba9876543210   100002
//
// Blank lines and lines starting with # are ignored. Tenant ids are one URL
// path segment: a letter or digit, then up to 63 letters, digits, '_', '-'
// or '.'. Several users may share a tenant; a username may appear once.
func LoadCredentials(path string) ([]Credential, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	defer f.Close()
	var out []Credential
	seen := map[string]int{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 3 {
			return nil, fmt.Errorf("read credentials %s:%d: want 3 fields (username api-key tenant), got %d", path, n, len(fields))
		}
		c := Credential{Username: fields[0], APIKey: fields[1], Tenant: fields[2]}
		if !tenantIDPattern.MatchString(c.Tenant) {
			return nil, fmt.Errorf("read credentials %s:%d: tenant %q must match %s", path, n, c.Tenant, tenantIDPattern)
		}
		if prev, dup := seen[c.Username]; dup {
			return nil, fmt.Errorf("read credentials %s:%d: username %q already defined on line %d", path, n, c.Username, prev)
		}
		seen[c.Username] = n
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read credentials %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("read credentials %s: no accounts in the file", path)
	}
	return out, nil
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

// credentials decide who may authenticate and as which tenant. Tokens are
// the store's (store.Store.IssueToken), so that with etcd a token issued by
// one frontend works on all.
type credentials struct {
	dev   bool
	creds map[string]Credential // by username
}

func newCredentials(dev bool, creds []Credential) (*credentials, error) {
	cs := &credentials{dev: dev, creds: map[string]Credential{}}
	for _, c := range creds {
		if c.Username == "" || c.APIKey == "" {
			return nil, fmt.Errorf("credential for tenant %q: username and API key must not be empty", c.Tenant)
		}
		if !tenantIDPattern.MatchString(c.Tenant) {
			return nil, fmt.Errorf("credential of %q: tenant %q must match %s", c.Username, c.Tenant, tenantIDPattern)
		}
		if _, dup := cs.creds[c.Username]; dup {
			return nil, fmt.Errorf("credential of %q defined twice", c.Username)
		}
		cs.creds[c.Username] = c
	}
	return cs, nil
}

// check returns the tenant of a username and API key, or false. Accounts
// of the credentials list win over dev mode, so a dev server can still
// pin some users to fixed tenants.
func (cs *credentials) check(username, apiKey string) (string, bool) {
	if username == "" {
		return "", false
	}
	if c, ok := cs.creds[username]; ok {
		if subtle.ConstantTimeCompare([]byte(c.APIKey), []byte(apiKey)) == 1 {
			return c.Tenant, true
		}
		return "", false
	}
	if cs.dev {
		return DevTenantID(username), true
	}
	return "", false
}
