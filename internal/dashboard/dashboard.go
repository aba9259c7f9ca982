// Package dashboard is sr-registry's web dashboard: one page of HTML, CSS
// and JavaScript, embedded in the binary, that shows a tenant's services,
// sessions, configuration and events feed as they change.
//
// It is only the files and the handler that serves them, with the security
// headers they need. It holds no registry state and has no API of its own:
// the page signs in through the identity endpoint (POST /v2.0/tokens) and
// reads the same v1.0 API as every client, with the token of the tenant
// that signed in, so it sees exactly what that tenant's clients see and can
// change nothing. Nothing is loaded from another host and nothing needs a
// build step: the files in static/ are what the browser runs.
//
// The page keeps the identity token in sessionStorage (gone with the tab,
// never in a cookie or a URL) and the API key only in memory, so that it
// can authenticate again by itself when the token expires or the registry
// restarts; after a reload it asks for the key again instead.
package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// Path is where the dashboard is mounted; GET / redirects here.
const Path = "/ui/"

//go:embed static
var static embed.FS

// contentSecurityPolicy allows the page its own scripts, styles, images and
// API calls, and nothing else: no inline script or style, no other host,
// no plugins, no framing, and no form that posts elsewhere.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// contentType is the type of a file in static/ by its extension, "" for
// an extension the dashboard does not serve.
func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	}
	return ""
}

// Handler serves the dashboard: GET / and GET /ui redirect to Path, GET
// Path is the page, GET Path+name its files; anything else under Path is
// 404, any other method 405. A server routes to it every path that Owns.
// The zero value is ready to use.
type Handler struct{}

// Owns reports whether the dashboard answers path: "/", "/ui" and
// everything under Path. A server routes those here.
func Owns(path string) bool {
	return path == "/" || path == "/ui" || strings.HasPrefix(path, Path)
}

func (Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "the dashboard is read-only: use GET", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if p == "/" || p == "/ui" {
		http.Redirect(w, r, Path, http.StatusFound)
		return
	}
	name := strings.TrimPrefix(p, Path)
	if name == "" {
		name = "index.html"
	}
	// Only the files themselves: no directory listings, no "..", no
	// index.html under a second name.
	typ := contentType(name)
	if typ == "" || strings.Contains(name, "/") || !fs.ValidPath(name) || (name == "index.html" && p != Path) {
		http.NotFound(w, r)
		return
	}
	body, err := static.ReadFile("static/" + name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	h.Set("Content-Type", typ)
	// The files change with the binary, which a browser cannot tell from
	// the URL: always revalidate, against a tag of the content (embedded
	// files have no modification time).
	h.Set("Cache-Control", "no-cache")
	sum := sha256.Sum256(body)
	h.Set("Etag", `"`+hex.EncodeToString(sum[:12])+`"`)
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(body))
}
