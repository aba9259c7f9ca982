package dashboard_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
)

// TestReadmeScreenshots takes the README's pictures of the dashboard from
// a realistic state: six programs under real sr-wrappers with tags,
// metadata and several heartbeat timeouts, a configuration tree, and a
// session that timed out. It saves them in its output folder; with
// SR_README_SCREENSHOTS=DIR it writes them to DIR as well (make
// screenshots refreshes docs/).
func TestReadmeScreenshots(t *testing.T) {
	needChromium(t)
	reg := registrytest.Start(t)
	tn := newTenant(t, reg, testUser)
	programs := [][]string{
		{"--id=web-1", "--tags=http,web", "--metadata=port=8080,dc=lon,version=1.4.2", "--session-metadata=host=web1.lon", "--interval=10"},
		{"--id=web-2", "--tags=http,web", "--metadata=port=8080,dc=fra,version=1.4.2", "--session-metadata=host=web2.fra", "--interval=10"},
		{"--id=api-1", "--tags=http,api", "--metadata=port=9000,dc=lon", "--session-metadata=host=api1.lon", "--interval=8"},
		{"--id=db-1", "--tags=mysql,primary", "--metadata=port=3306,dc=lon", "--session-metadata=host=db1.lon", "--interval=6"},
		{"--id=db-2", "--tags=mysql,replica", "--metadata=port=3306,dc=fra", "--session-metadata=host=db2.fra", "--interval=6"},
		{"--id=cache-1", "--tags=redis", "--metadata=port=6379,dc=lon", "--session-metadata=host=cache1.lon", "--interval=8"},
	}
	// First the session that times out, to time out while the rest starts.
	doomed, _ := tn.session(3, map[string]string{"host": "batch.lon", "job": "nightly-report"})
	tn.service("report-7", doomed, []string{"batch"}, map[string]string{"queue": "reports"})
	var running []*wrapped
	for _, args := range programs {
		running = append(running, wrap(t, reg, args...))
	}
	defer stopAll(running)
	for id, v := range map[string]string{
		"/production/cassandra/listen_ip": "10.0.0.5",
		"/production/cassandra/port":      "9042",
		"/production/web/workers":         "8",
		"/staging/web/workers":            "2",
	} {
		tn.config(id, v)
	}
	for _, id := range []string{"web-1", "web-2", "api-1", "db-1", "db-2", "cache-1"} {
		tn.waitService(id, true, startWait)
	}
	tn.waitService("report-7", false, 10*time.Second)

	save := func(p *page, name string) {
		t.Helper()
		path := p.capture(filepath.Join(p.out, name), chromedp.CaptureScreenshot())
		if dir := os.Getenv("SR_README_SCREENSHOTS"); dir != "" && path != "" {
			b, err := os.ReadFile(path)
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, name), b, 0o644)
			}
			if err != nil {
				t.Fatalf("copy %s to %s: %v", name, dir, err)
			}
		}
	}
	// The highlight of what just joined has faded.
	noHighlight := `!document.getAnimations().some(a => a.animationName === 'fresh')`
	heartbeating := `[...document.querySelectorAll('#sess-list .hb-text')].filter(e => e.textContent.startsWith('last heartbeat')).length === 6`

	// The height of what the views hold, without the empty space below.
	readme := pageOpts{width: desktop.width, height: 600}
	light := openPage(t, origin(reg), readme)
	light.signIn(testUser, testKey)
	light.waitFor("six services and the timeout", pageWait,
		textOf("svc-count")+` === '6 services' && !!document.querySelector('#ev-list li[data-type="services.timeout"]')`)
	light.waitFor("no highlight", pageWait, noHighlight)
	save(light, "dashboard.png")

	readme.dark = true
	dark := openPage(t, origin(reg), readme)
	dark.signIn(testUser, testKey)
	dark.view("sessions")
	dark.waitFor("every session heartbeating", pageWait, heartbeating)
	dark.do("move the focus off the tab", chromedp.Blur(chromedp.ID("tab-sessions")))
	dark.waitFor("no highlight", pageWait, noHighlight)
	save(dark, "dashboard-sessions-dark.png")
}
