package srctl

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/srapi"
)

// The service list cache follows the API documentation's advice to
// clients: keep the last list that worked, and when the registry cannot be
// reached show it, marked stale, rather than nothing. There is one file per
// registry, identity endpoint and username (a username is one tenant),
// readable by its owner only, replaced atomically so that a reader never
// sees half a list.

// cachedServices is the cache file's content.
type cachedServices struct {
	RegistryURL string `json:"registry_url"`
	TokensURL   string `json:"tokens_url"`
	Username    string `json:"username"`
	TenantID    string `json:"tenant_id,omitempty"`
	// FetchedAt is when the list was read from the registry, in ms since
	// the epoch like the API's timestamps.
	FetchedAt int64         `json:"fetched_at"`
	Services  []api.Service `json:"services"`
}

// serviceCache is the cache file of one client's registry and user.
type serviceCache struct {
	path                       string
	registry, tokens, username string
}

// errNoCache means no list was ever cached for this registry and user.
var errNoCache = errors.New("no cached service list")

// newServiceCache places the cache of c's registry and user in dir, or in
// os.UserCacheDir()/srctl when dir is "".
func newServiceCache(dir string, c *srapi.Client) (*serviceCache, error) {
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("find the cache directory (set %s): %w", CacheDirEnv, err)
		}
		dir = filepath.Join(base, "srctl")
	}
	// The key is hashed: URLs and usernames hold characters a file name
	// cannot, and the name needs to say nothing about the account.
	sum := sha256.Sum256([]byte(c.RegistryURL() + "\n" + c.TokensURL() + "\n" + c.Username()))
	return &serviceCache{
		path:     filepath.Join(dir, "services-"+hex.EncodeToString(sum[:8])+".json"),
		registry: c.RegistryURL(),
		tokens:   c.TokensURL(),
		username: c.Username(),
	}, nil
}

// save replaces the cached list with services, fetched at the given time.
func (sc *serviceCache) save(tenantID string, services []api.Service, at time.Time) error {
	body, err := json.Marshal(cachedServices{
		RegistryURL: sc.registry,
		TokensURL:   sc.tokens,
		Username:    sc.username,
		TenantID:    tenantID,
		FetchedAt:   at.UnixMilli(),
		Services:    nonNil(services),
	})
	if err != nil {
		return fmt.Errorf("cache the service list: encode: %w", err)
	}
	if err := writeFileAtomic(sc.path, body); err != nil {
		return fmt.Errorf("cache the service list: %w", err)
	}
	return nil
}

// load returns the cached list, errNoCache when there is none.
func (sc *serviceCache) load() (*cachedServices, error) {
	body, err := os.ReadFile(sc.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNoCache
	}
	if err != nil {
		return nil, fmt.Errorf("read the cached service list: %w", err)
	}
	var cs cachedServices
	if err := json.Unmarshal(body, &cs); err != nil {
		return nil, fmt.Errorf("read the cached service list %s: %w", sc.path, err)
	}
	if cs.RegistryURL != sc.registry || cs.TokensURL != sc.tokens || cs.Username != sc.username {
		// A hash collision, or a file copied from elsewhere: not ours.
		return nil, errNoCache
	}
	return &cs, nil
}

// writeFileAtomic writes body to path through a temporary file in the same
// directory and a rename, so that the file is either the old one or the
// whole new one, even when two srctl run at once or one is killed. The
// directory is created owner-only; the file is 0600.
func writeFileAtomic(path string, body []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("create a temporary file in %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	// CreateTemp already makes it 0600; say so for a reader of the code
	// and for an umask that would be stranger still.
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("chmod %s: %w", f.Name(), err)
	}
	if _, err := f.Write(body); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", f.Name(), err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", f.Name(), path, err)
	}
	return nil
}
