package dashboard_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
)

// noRedirects is a client that shows redirects instead of following them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func fetch(t *testing.T, method, url string, hdr http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, url, err)
	}
	return resp, string(body)
}

// The registry serves the dashboard at /ui/ (and sends / there), with
// headers that keep the page from being framed, sniffed or extended with
// anything not its own.
func TestServedByTheRegistry(t *testing.T) {
	reg := registrytest.Start(t)
	base := "http://" + reg.Addr

	for _, p := range []string{"/", "/ui"} {
		resp, _ := fetch(t, http.MethodGet, base+p, nil)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/ui/" {
			t.Errorf("GET %s: %s to %q, want 302 to /ui/", p, resp.Status, resp.Header.Get("Location"))
		}
	}

	files := []struct{ path, typ, has string }{
		{"/ui/", "text/html; charset=utf-8", `<script src="app.js" defer></script>`},
		{"/ui/app.js", "text/javascript; charset=utf-8", "sessionStorage"},
		{"/ui/app.css", "text/css; charset=utf-8", "prefers-color-scheme: dark"},
		{"/ui/icon.svg", "image/svg+xml", "<svg"},
	}
	for _, f := range files {
		resp, body := fetch(t, http.MethodGet, base+f.path, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != f.typ || !strings.Contains(body, f.has) {
			t.Errorf("GET %s: %s %q, body has %q: %v", f.path, resp.Status, resp.Header.Get("Content-Type"), f.has, strings.Contains(body, f.has))
			continue
		}
		for k, want := range map[string]string{
			"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
			"X-Content-Type-Options":  "nosniff",
			"X-Frame-Options":         "DENY",
			"Referrer-Policy":         "no-referrer",
			"Cache-Control":           "no-cache",
		} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("GET %s: %s: %q, want %q", f.path, k, got, want)
			}
		}
		// Revalidation answers 304 while the file is unchanged.
		tag := resp.Header.Get("Etag")
		again, _ := fetch(t, http.MethodGet, base+f.path, http.Header{"If-None-Match": {tag}})
		if tag == "" || again.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match %q: %s, want 304", f.path, tag, again.Status)
		}
	}

	resp, body := fetch(t, http.MethodHead, base+"/ui/", nil)
	if resp.StatusCode != http.StatusOK || body != "" {
		t.Errorf("HEAD /ui/: %s with %d bytes", resp.Status, len(body))
	}
	resp, _ = fetch(t, http.MethodPost, base+"/ui/", nil)
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /ui/: %s, Allow %q; want 405, GET, HEAD", resp.Status, resp.Header.Get("Allow"))
	}
	for _, p := range []string{"/ui/missing.js", "/ui/index.html", "/ui/static/app.js", "/ui/dashboard.go", "/ui/..%2fdashboard.go", "/ui/x/app.js"} {
		if resp, _ := fetch(t, http.MethodGet, base+p, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", p, resp.Status)
		}
	}
	// The API is where it was.
	if resp, _ := fetch(t, http.MethodGet, base+"/v1.0/1/limits", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v1.0/1/limits without a token: %s, want 401", resp.Status)
	}
}

// Everything the page loads is its own: no address of another host in
// any file (the SVG namespace is a name, not a load), no inline script or
// style that the policy would block, and every file the page names is
// served.
func TestSelfContained(t *testing.T) {
	entries, err := os.ReadDir("static")
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9-]+(\.[a-z0-9-]+)+`)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("static", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), `xmlns="http://www.w3.org/2000/svg"`, "")
		for _, m := range elsewhere.FindAllString(text, -1) {
			t.Errorf("%s names another host: %s", e.Name(), m)
		}
		if strings.Contains(text, "@import") || strings.Contains(text, "url(") {
			t.Errorf("%s loads CSS resources", e.Name())
		}
	}
	html, err := os.ReadFile("static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	if regexp.MustCompile(`<script>|<style|\son[a-z]+=|\sstyle=`).Match(html) {
		t.Errorf("index.html has inline script or style, which the Content-Security-Policy blocks")
	}
	reg := registrytest.Start(t)
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"#]+)"`).FindAllSubmatch(html, -1) {
		name := string(m[1])
		if resp, _ := fetch(t, http.MethodGet, "http://"+reg.Addr+"/ui/"+name, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("index.html loads %s: %s", name, resp.Status)
		}
	}
}
