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

// DevTenantID is the tenant id that dev mode gives a username: ten decimal
// digits derived from a SHA-256 of the username, so it is stable across
// restarts and machines, looks like the numeric tenant ids of the hosted
// service, and is a valid URL path segment whatever the username holds.
func DevTenantID(username string) string {
	sum := sha256.Sum256([]byte(username))
	n := binary.BigEndian.Uint64(sum[:8])%9_000_000_000 + 1_000_000_000
	return strconv.FormatUint(n, 10)
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
