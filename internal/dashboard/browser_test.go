package dashboard_test

// Browser tests: a real headless Chromium, driven through the DevTools
// protocol (chromedp), against a real sr-registry in dev mode on loopback
// (internal/registrytest), with a real sr-wrapper around testdata/fakeproc
// where a program joins and leaves. They wait on the page's DOM, polled
// with a bound, never on sleeps; a change in the registry must show within
// liveWait (2 s). Each saves screenshots in its output folder (see
// outputDir); the log says where.
//
//	SR_TEST_OUTPUT=/tmp/shots go test -run Browser ./internal/dashboard

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
)

func origin(reg *registrytest.Registry) string { return "http://" + reg.Addr }

// rowIDs are the ids of the services the services view lists, in order.
func rowIDs(p *page) []string {
	return eval[[]string](p, `[...document.querySelectorAll('#svc-rows tr')].map(r => r.dataset.key)`)
}

func hasRow(id string) string {
	return `!!document.querySelector('#svc-rows tr[data-key=` + jsString(id) + `]')`
}

func textOf(id string) string { return `document.getElementById(` + jsString(id) + `).textContent` }

// A program started under sr-wrapper appears in the services view and the
// events feed without a reload, and leaves the services view when it stops.
func TestBrowserLiveServices(t *testing.T) {
	reg := registrytest.Start(t)
	tn := newTenant(t, reg, testUser)
	p := openPage(t, origin(reg), desktop)
	p.signIn(testUser, testKey)
	p.waitFor("the empty state", pageWait, textOf("svc-empty")+`.includes('No services are registered')`)
	p.shot("1-no-services")

	w := wrap(t, reg, "--id=web-1", "--tags=http,web", "--metadata=port=8080,dc=lon", "--interval=3")
	tn.waitService("web-1", true, startWait)
	took := p.waitFor("web-1 in the services view", liveWait, hasRow("web-1"))
	t.Logf("web-1 shown %s after the registry listed it", took.Round(time.Millisecond))
	row := eval[[]string](p, `[...document.querySelector('#svc-rows tr[data-key="web-1"]').cells].map(c => c.innerText.replace(/\s+/g, ' ').trim())`)
	var svc api.Service
	tn.call(http.MethodGet, "/services/web-1", nil, &svc, http.StatusOK)
	want := []string{"web-1", "http web", "dc=lon port=8080", svc.SessionID}
	if strings.Join(row, "|") != strings.Join(want, "|") {
		t.Errorf("row of web-1 = %q, want %q", row, want)
	}
	if got := eval[string](p, textOf("svc-count")); got != "1 service" {
		t.Errorf("live count %q, want \"1 service\"", got)
	}
	p.waitFor("the join in the events feed", liveWait,
		`[...document.querySelectorAll('#ev-list li[data-type="service.join"]')].some(li => li.textContent.includes('web-1 joined'))`)
	p.shot("2-web-1-joined")

	p.view("sessions")
	p.waitFor("the wrapper's session, heartbeating", pageWait,
		`(() => { const c = document.querySelector('#sess-list li[data-key=`+jsString(svc.SessionID)+`]');
		  return c && c.querySelector('.hb-text').textContent.startsWith('last heartbeat ') && c.textContent.includes('web-1'); })()`)
	p.shot("3-sessions")
	p.view("events")
	p.shot("4-events")

	p.view("services")
	w.stop()
	tn.waitService("web-1", false, stopWait)
	took = p.waitFor("web-1 gone from the services view", liveWait, "!"+hasRow("web-1"))
	t.Logf("web-1 removed %s after the registry dropped it", took.Round(time.Millisecond))
	p.waitFor("the count at zero", liveWait, textOf("svc-count")+` === '0 services' && `+textOf("count-services")+` === '0'`)
	p.shot("5-web-1-left")
}

// A session that is never heartbeated fills its bar and times out: its
// service leaves the services view and a services.timeout event tops the
// feed, without a reload.
func TestBrowserSessionTimeout(t *testing.T) {
	reg := registrytest.Start(t)
	tn := newTenant(t, reg, testUser)
	p := openPage(t, origin(reg), desktop)
	p.signIn(testUser, testKey)
	p.view("sessions")
	p.waitFor("the empty sessions view", pageWait, `!document.getElementById('sess-empty').hidden`)

	sid, _ := tn.session(3, map[string]string{"host": "batch-host", "job": "nightly"})
	tn.service("batch-7", sid, []string{"batch"}, map[string]string{"queue": "reports"})
	card := `document.querySelector('#sess-list li[data-key=` + jsString(sid) + `]')`
	p.waitFor("the session's card", liveWait, `!!`+card+` && `+card+`.textContent.includes('batch-7')`)
	width := card + `.querySelector('.bar > span').getBoundingClientRect().width / ` + card + `.querySelector('.bar').getBoundingClientRect().width`
	p.waitFor("the bar filling past half", 3*time.Second, width+` > 0.5`)
	if got := eval[string](p, card+`.querySelector('.hb-text').textContent + ' | ' + `+card+`.querySelector('.hb-age').textContent`); !strings.HasPrefix(got, "no heartbeat yet (seen ") || !strings.HasSuffix(got, " | timeout 3 s") {
		t.Errorf("heartbeat label %q, want \"no heartbeat yet (seen N s ago) | timeout 3 s\"", got)
	}
	p.shot("1-filling")

	tn.waitService("batch-7", false, 10*time.Second)
	p.waitFor("the card gone", liveWait, `!`+card)
	p.view("events")
	p.waitFor("the timeout at the top of the feed", liveWait,
		`(() => { const li = document.querySelector('#ev-list li'); return li && li.dataset.type === 'services.timeout' && li.textContent.includes('batch-7') && li.textContent.includes(`+jsString(sid)+`); })()`)
	if ids := rowIDs(p); len(ids) != 0 {
		t.Errorf("services view still lists %q", ids)
	}
	p.shot("2-timed-out")
}

// The tag filter and the id search narrow the services view of a large
// registry (more services and events than one page holds), and the count
// says how many match.
func TestBrowserFilterAndSearch(t *testing.T) {
	const bulk = 1000
	reg := registrytest.Start(t, registrytest.WithLimits(api.ResourceLimits{Service: bulk + 100}))
	tn := newTenant(t, reg, testUser)
	sid, tok := tn.session(30, map[string]string{"host": "lon-1"})
	tn.keepAlive(sid, tok, 5*time.Second)
	named := []struct {
		id   string
		tags []string
	}{
		{"web-1", []string{"http", "web"}},
		{"web-2", []string{"http", "web"}},
		{"db-1", []string{"mysql", "primary"}},
		{"db-2", []string{"mysql", "replica"}},
		{"cache-1", []string{"redis"}},
	}
	for _, n := range named {
		tn.service(n.id, sid, n.tags, map[string]string{"dc": "lon"})
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < bulk; i += 4 {
				tn.service(fmt.Sprintf("bulk-%04d", i), sid, []string{"bulk"}, nil)
			}
		})
	}
	wg.Wait()
	total := bulk + len(named)

	p := openPage(t, origin(reg), desktop)
	p.signIn(testUser, testKey)
	p.waitFor("every service, past the first page", pageWait, textOf("svc-count")+fmt.Sprintf(` === '%d services'`, total))
	p.waitFor("the feed, past its first page", pageWait, `document.querySelectorAll('#ev-list li').length === 500 && `+textOf("ev-state")+`.includes('latest 500')`)

	// The tag filter, with the keyboard: focus the list, type the tag.
	p.do("filter by tag mysql", chromedp.Focus(chromedp.ID("svc-tag")), chromedp.SendKeys(chromedp.ID("svc-tag"), "mysql"))
	p.waitFor("only the mysql services", liveWait, textOf("svc-count")+fmt.Sprintf(` === '2 of %d services match'`, total))
	if got := strings.Join(rowIDs(p), ","); got != "db-1,db-2" {
		t.Errorf("tag mysql shows %s, want db-1,db-2", got)
	}
	p.do("search db-2", chromedp.SendKeys(chromedp.ID("svc-search"), "db-2"))
	p.waitFor("db-2 alone", liveWait, textOf("svc-count")+fmt.Sprintf(` === '1 of %d services match'`, total))
	if got := strings.Join(rowIDs(p), ","); got != "db-2" {
		t.Errorf("tag mysql and search db-2 show %s, want db-2", got)
	}
	p.shot("1-tag-and-search")

	p.do("clear the filter", chromedp.Click(chromedp.ID("svc-clear")))
	p.waitFor("everything again", liveWait, textOf("svc-count")+fmt.Sprintf(` === '%d services'`, total))
	p.do("search web", chromedp.SendKeys(chromedp.ID("svc-search"), "WEB"))
	p.waitFor("the web services", liveWait, textOf("svc-count")+fmt.Sprintf(` === '2 of %d services match'`, total))
	if got := strings.Join(rowIDs(p), ","); got != "web-1,web-2" {
		t.Errorf("search WEB shows %s, want web-1,web-2", got)
	}
	p.do("clear the search", chromedp.Click(chromedp.ID("svc-clear")))

	// A tag chip in a row filters by its tag, and says so.
	chip := `#svc-rows tr[data-key="cache-1"] button.chip[data-tag="redis"]`
	p.do("click the redis chip", chromedp.Click(chromedp.CSS(chip)))
	p.waitFor("only cache-1", liveWait, textOf("svc-count")+fmt.Sprintf(` === '1 of %d services match'`, total))
	if got := eval[string](p, `document.querySelector('`+chip+`').getAttribute('aria-pressed') + ' ' + document.getElementById('svc-tag').value`); got != "true redis" {
		t.Errorf("after the chip: pressed and tag %q, want \"true redis\"", got)
	}
	p.shot("2-chip")
}

// Configuration is a namespace tree: ids with a leading slash are
// namespaces to expand, an id without one is a value at the top, and a
// change shows without a reload, leaving the tree as it was expanded.
func TestBrowserConfigurationTree(t *testing.T) {
	reg := registrytest.Start(t)
	tn := newTenant(t, reg, testUser)
	for id, v := range map[string]string{
		"configId":                        "42",
		"/production/cassandra/listen_ip": "10.0.0.5",
		"/production/cassandra/port":      "9042",
		"/production/web/workers":         "8",
		"/staging/web/workers":            "2",
	} {
		tn.config(id, v)
	}
	p := openPage(t, origin(reg), desktop)
	p.signIn(testUser, testKey)
	p.view("configuration")
	p.waitFor("the top of the tree", pageWait, textOf("cfg-count")+` === '5 values'`)
	top := eval[[]string](p, `[...document.querySelectorAll('#cfg-tree > ul > li')].map(li => li.firstElementChild.matches('details') ? li.querySelector('summary').textContent : li.textContent)`)
	if want := []string{"production/ (3 values)", "staging/ (1 value)", "configId= 42"}; strings.Join(top, "|") != strings.Join(want, "|") {
		t.Errorf("top of the tree %q, want %q", top, want)
	}
	leaf := `document.querySelector('#cfg-tree li.leaf[data-id="/production/cassandra/listen_ip"]')`
	visible := func(el string) string { return `(` + el + `).checkVisibility()` }
	if eval[bool](p, visible(leaf)) {
		t.Errorf("listen_ip visible before its namespaces are expanded")
	}
	// Expand with the keyboard: Enter on each summary.
	for _, ns := range []string{"/production/", "/production/cassandra/"} {
		sel := `#cfg-tree details[data-path="` + ns + `"] > summary`
		p.do("expand "+ns, chromedp.Focus(chromedp.CSS(sel)), chromedp.SendKeys(chromedp.CSS(sel), "\r"))
	}
	p.waitFor("listen_ip shown", liveWait, visible(leaf))
	if got := eval[string](p, leaf+`.innerText.replace(/\s+/g, ' ')`); got != "listen_ip = 10.0.0.5 /production/cassandra/listen_ip" {
		t.Errorf("listen_ip reads %q", got)
	}
	if eval[bool](p, visible(`document.querySelector('#cfg-tree details[data-path="/staging/"] li.leaf')`)) {
		t.Errorf("staging's value visible though staging/ was not expanded")
	}
	p.shot("1-expanded")

	tn.config("/production/cassandra/listen_ip", "10.0.0.6")
	p.waitFor("the new value, still expanded", liveWait, visible(leaf)+` && `+leaf+`.textContent.includes('10.0.0.6')`)
	p.waitFor("the change in the feed", liveWait,
		`(() => { const li = document.querySelector('#ev-list li'); return li && li.dataset.type === 'configuration_value.update' && li.textContent.includes('10.0.0.5'); })()`)
	p.do("expand everything", chromedp.Click(chromedp.ID("cfg-expand")))
	p.waitFor("staging's value shown", liveWait, visible(`document.querySelector('#cfg-tree details[data-path="/staging/"] li.leaf')`))
	p.shot("2-all-expanded")
}

// The token lives in sessionStorage only (not in a cookie, a URL or
// localStorage, and the API key nowhere); it survives a reload of the tab,
// and signing out forgets it and empties the views.
func TestBrowserSignOut(t *testing.T) {
	reg := registrytest.Start(t)
	tn := newTenant(t, reg, testUser)
	sid, tok := tn.session(30, nil)
	tn.keepAlive(sid, tok, 5*time.Second)
	tn.service("web-1", sid, []string{"http"}, nil)
	p := openPage(t, origin(reg), desktop)
	p.signIn(testUser, testKey)
	p.waitFor("web-1", pageWait, hasRow("web-1"))

	stored := eval[string](p, `sessionStorage.getItem('sr-registry.dashboard') || ''`)
	if !strings.Contains(stored, `"token"`) {
		t.Fatalf("sessionStorage holds %q, want the token", stored)
	}
	where := eval[string](p, `JSON.stringify([document.cookie, location.href, localStorage.length, sessionStorage.length, JSON.stringify({...sessionStorage})])`)
	if strings.Contains(where, testKey) {
		t.Errorf("the API key is kept: %s", where)
	}
	if got := eval[string](p, `document.cookie + '|' + location.search + '|' + localStorage.length + '|' + sessionStorage.length`); got != "||0|1" {
		t.Errorf("cookie|query|localStorage|sessionStorage = %q, want \"||0|1\"", got)
	}

	p.do("reload", chromedp.Reload())
	p.waitFor("still signed in after a reload", pageWait, `!document.getElementById('app').hidden && `+hasRow("web-1"))

	p.do("sign out", chromedp.Click(chromedp.ID("signout")))
	p.waitFor("the sign-in form", pageWait, `!document.getElementById('signin').hidden && document.getElementById('app').hidden`)
	gone := eval[string](p, `[sessionStorage.length, localStorage.length, document.querySelectorAll('#svc-rows tr, #sess-list li, #ev-list li, #cfg-tree li').length, document.activeElement.id].join('|')`)
	if gone != "0|0|0|username" {
		t.Errorf("after sign-out: sessionStorage|localStorage|rows|focus = %q, want \"0|0|0|username\"", gone)
	}
	p.shot("1-signed-out")
	p.do("reload", chromedp.Reload())
	p.waitFor("still signed out after a reload", pageWait, `!document.getElementById('signin').hidden && document.getElementById('app').hidden && sessionStorage.length === 0`)
}

// The registry going away shows a clear message and the page recovers by
// itself: with the API key in memory it signs in again without asking;
// after a reload (the key is gone) it asks for the key again.
func TestBrowserRecovers(t *testing.T) {
	reg := registrytest.Start(t)
	p := openPage(t, origin(reg), desktop)
	p.signIn(testUser, testKey)
	p.waitFor("the first poll", pageWait, `document.getElementById('status').textContent === 'Live'`)

	reg.Stop()
	p.waitFor("the unreachable message", pageWait,
		`!document.getElementById('banner').hidden && `+textOf("banner-text")+`.includes('Cannot reach the registry') && `+textOf("status")+` === 'Reconnecting'`)
	p.shot("1-registry-down")
	reg.Restart() // a new process: every token is forgotten
	tn := newTenant(t, reg, testUser)
	sid, tok := tn.session(30, nil)
	tn.keepAlive(sid, tok, 5*time.Second)
	tn.service("after-restart", sid, nil, nil)
	// The backoff is at most a few seconds after so short an outage.
	p.waitFor("back, signed in again by itself", pageWait, hasRow("after-restart")+` && document.getElementById('banner').hidden`)
	p.shot("2-recovered")

	p.do("reload: the key is gone from memory", chromedp.Reload())
	p.waitFor("signed in from sessionStorage", pageWait, hasRow("after-restart"))
	reg.Restart()
	p.waitFor("asked to sign in again", pageWait,
		`!document.getElementById('signin').hidden && !document.getElementById('signin-note').hidden && document.getElementById('username').value === `+jsString(testUser)+` && sessionStorage.length === 0`)
	p.shot("3-sign-in-again")
	tn = newTenant(t, reg, testUser)
	sid, tok = tn.session(30, nil)
	tn.keepAlive(sid, tok, 5*time.Second)
	tn.service("after-second-restart", sid, nil, nil)
	p.do("type the key", chromedp.SendKeys(chromedp.ID("apikey"), testKey+"\r"))
	p.waitFor("back after signing in", pageWait, hasRow("after-second-restart"))
}

// On a 390-px-wide phone in the dark theme every view fits the width (no
// sideways scrolling) and is drawn dark; the desktop in the dark theme too.
func TestBrowserPhoneAndDarkTheme(t *testing.T) {
	reg := registrytest.Start(t)
	tn := newTenant(t, reg, testUser)
	doomed := populate(t, tn)

	fits := `document.documentElement.scrollWidth <= window.innerWidth`
	// The page's background and text, as relative luminance 0..1.
	luminance := `(() => {
	  const lum = (c) => { const [r, g, b] = c.match(/\d+/g).map(Number).map(v => v / 255)
	    .map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
	  const s = getComputedStyle(document.body);
	  return [lum(s.backgroundColor), lum(s.color)];
	})()`
	checkDark := func(p *page, where string) {
		t.Helper()
		l := eval[[]float64](p, luminance)
		// Dark background, light text, and at least WCAG's 7:1 between them.
		if l[0] > 0.05 || l[1] < 0.5 || (l[1]+0.05)/(l[0]+0.05) < 7 {
			t.Errorf("%s: background and text luminance %.3f and %.3f: not a readable dark theme", where, l[0], l[1])
		}
	}

	p := openPage(t, origin(reg), pageOpts{width: phone.width, height: phone.height, mobile: true, dark: true})
	p.waitFor("the sign-in form", pageWait, `!document.getElementById('signin').hidden`)
	checkDark(p, "sign-in")
	p.shot("0-sign-in")
	p.signIn(testUser, testKey)
	for i, v := range []string{"services", "sessions", "configuration", "events"} {
		p.view(v)
		switch v {
		case "services":
			p.waitFor("the services", pageWait, hasRow("api-gateway-eu-west-1-canary-0001"))
		case "sessions":
			p.waitFor("the sessions", pageWait, `document.querySelectorAll('#sess-list li.session').length >= 6`)
		case "configuration":
			p.waitFor("the tree", pageWait, textOf("cfg-count")+` === '6 values'`)
			p.do("expand everything", chromedp.Click(chromedp.ID("cfg-expand")))
		case "events":
			tn.waitService("batch-7", false, 10*time.Second)
			p.waitFor("the timeout in the feed", liveWait, `!!document.querySelector('#ev-list li[data-type="services.timeout"]')`)
		}
		if !eval[bool](p, fits) {
			t.Errorf("%s view on the phone: %d px wide content in a %d px screen", v,
				eval[int](p, `document.documentElement.scrollWidth`), eval[int](p, `window.innerWidth`))
		}
		checkDark(p, v+" view")
		p.shot(fmt.Sprintf("%d-phone-%s", i+1, v))
	}
	_ = doomed

	d := openPage(t, origin(reg), pageOpts{width: desktop.width, height: desktop.height, dark: true})
	d.signIn(testUser, testKey)
	d.waitFor("the services", pageWait, hasRow("web-2"))
	checkDark(d, "desktop services view")
	d.shot("5-desktop-services")
	d.view("sessions")
	d.waitFor("the sessions", pageWait, `document.querySelectorAll('#sess-list li.session').length >= 6`)
	d.shot("6-desktop-sessions")
}

// Everything works from the keyboard: signing in, the order of Tab
// through the header, the tabs and the services toolbar (each focus
// visible), the skip link, and a view's controls.
func TestBrowserKeyboard(t *testing.T) {
	reg := registrytest.Start(t)
	p := openPage(t, origin(reg), desktop)
	p.waitFor("the focus in the username field", pageWait, `document.activeElement.id === 'username'`)
	p.do("sign in with the keyboard",
		chromedp.KeyEvent(testUser), chromedp.KeyEvent(kb.Tab), chromedp.KeyEvent(testKey), chromedp.KeyEvent(kb.Enter))
	p.waitFor("signed in, the focus in the view", pageWait, `!document.getElementById('app').hidden && document.activeElement.id === 'main'`)

	focused := `(() => { const e = document.activeElement, s = getComputedStyle(e);
	  return (e.id || e.textContent.trim()) + (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2 ? '' : ' (no visible focus)'); })()`
	// A reload (still signed in) starts the Tab order from the top.
	p.do("reload", chromedp.Reload())
	p.waitFor("signed in again", pageWait, `!document.getElementById('app').hidden && document.activeElement === document.body`)
	want := []string{"Skip to content", "signout", "tab-services", "tab-sessions", "tab-configuration", "tab-events", "svc-search", "svc-tag"}
	var got []string
	for range want {
		p.do("Tab", chromedp.KeyEvent(kb.Tab))
		got = append(got, eval[string](p, focused))
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Tab goes through %q, want %q", got, want)
	}
	p.shot("1-focus")

	p.view("events")
	p.do("skip to the content", chromedp.Focus(chromedp.CSS(".skip")), chromedp.KeyEvent(kb.Enter))
	p.waitFor("the focus in the view, the view kept", pageWait, `document.activeElement.id === 'main' && !document.getElementById('view-events').hidden`)
	p.do("Tab to Pause, press space", chromedp.KeyEvent(kb.Tab), chromedp.KeyEvent(" "))
	p.waitFor("paused", pageWait, `document.getElementById('ev-pause').getAttribute('aria-pressed') === 'true' && document.activeElement.id === 'ev-pause'`)
}

// Pausing the feed holds new events back without losing or repeating
// one; resuming puts them at the top, newest first.
func TestBrowserPauseAndResume(t *testing.T) {
	reg := registrytest.Start(t)
	tn := newTenant(t, reg, testUser)
	p := openPage(t, origin(reg), desktop)
	p.signIn(testUser, testKey)
	p.view("events")
	feed := `[...document.querySelectorAll('#ev-list li')].map(li => li.querySelector('.edesc').textContent)`

	tn.config("/app/one", "1")
	p.waitFor("the first event, live", liveWait, `document.querySelectorAll('#ev-list li').length === 1`)
	p.do("pause", chromedp.Click(chromedp.ID("ev-pause")))
	tn.config("/app/two", "2")
	tn.config("/app/six", "3")
	p.waitFor("two events held", liveWait, textOf("ev-state")+` === 'Paused: 2 new events waiting'`)
	if got := eval[[]string](p, feed); len(got) != 1 {
		t.Errorf("while paused the feed shows %q, want the first event only", got)
	}
	p.shot("1-paused")
	p.do("resume", chromedp.Click(chromedp.ID("ev-pause")))
	want := []string{`/app/six set to “3” (new)`, `/app/two set to “2” (new)`, `/app/one set to “1” (new)`}
	p.waitFor("the held events on top", pageWait, feed+`.length === 3`)
	if got := eval[[]string](p, feed); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("after resuming the feed is %q, want %q", got, want)
	}
	tn.config("/app/one", "4")
	p.waitFor("live again", liveWait, feed+`[0] === '/app/one set to “4” (was “1”)'`)
	if n := eval[int](p, `document.querySelectorAll('#ev-list li').length`); n != 4 {
		t.Errorf("the feed holds %d events, want 4", n)
	}
	p.shot("2-resumed")
}
