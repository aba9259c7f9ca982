package srapi

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzRegistryURLs: any --registry value either is refused or gives
// frontends that are http(s) URLs with a host, all of one scheme, none
// twice, whose normalised list parses back to itself.
func FuzzRegistryURLs(f *testing.F) {
	for _, s := range []string{
		"http://127.0.0.1:8181/v1.0",
		"http://a:1/v1.0, http://b:2/v1.0/,http://c:3",
		"https://a/v1.0,https://b/v1.0",
		"https://a/v1.0,http://b/v1.0",
		"http://a/v1.0,,http://b/v1.0",
		"http://a/v1.0,",
		",",
		"etcd://h1:2379,h2:2379/sr",
		"http://a/v1.0,http://a/v1.0/",
		"http://[::1]:8181/v1.0,http://[::1]:8182/v1%2C0",
		"http://bob:pw@a/v1.0",
		"ftp://bob:pw@a/v1.0",
		"http://bob:pw@a:port/v1.0",
		"http://a/v1.0,http://bob:pw@b:x/v1.0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		ep, err := parseEndpoints(Config{RegistryURL: raw})
		if err != nil {
			for _, piece := range SplitRegistryURLs(raw) {
				if withoutUserInfo(piece) != piece && strings.Contains(err.Error(), piece) {
					t.Fatalf("error quotes %q, user info and all: %v", piece, err)
				}
			}
			return
		}
		if len(ep.frontends) == 0 {
			t.Fatalf("%q: no frontend and no error", raw)
		}
		seen := map[string]bool{}
		for _, fe := range ep.frontends {
			u, err := url.Parse(fe.registry)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				t.Fatalf("%q: frontend %q is not an http(s) URL with a host (%v)", raw, fe.registry, err)
			}
			if scheme(fe.registry) != scheme(ep.frontends[0].registry) {
				t.Fatalf("%q: schemes differ", raw)
			}
			if seen[fe.registry] {
				t.Fatalf("%q: frontend %q twice", raw, fe.registry)
			}
			seen[fe.registry] = true
			if !strings.HasSuffix(fe.tokens, "/v2.0/tokens") {
				t.Fatalf("%q: tokens URL %q", raw, fe.tokens)
			}
		}
		again, err := parseEndpoints(Config{RegistryURL: ep.registryList()})
		if err != nil || again.registryList() != ep.registryList() {
			t.Fatalf("%q normalised to %q, which parses to %q, %v", raw, ep.registryList(), again.registryList(), err)
		}
	})
}
