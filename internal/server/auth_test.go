package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/server"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
)

// hashOf is the bcrypt hash of key at cost.
func hashOf(t testing.TB, key string, cost int) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(key), cost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// login posts username and key to authURL's /v2.0/tokens over hc and
// returns the status, the fault or reply body, and the reply.
func login(t testing.TB, hc *http.Client, authURL, username, key string) (*http.Response, []byte) {
	t.Helper()
	body, _ := json.Marshal(api.AuthRequest{Auth: api.AuthCredentials{
		APIKeyCredentials: &api.APIKeyCredentials{Username: username, APIKey: key},
	}})
	resp, err := hc.Post(authURL+"/v2.0/tokens", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Errorf("login %q: %v", username, err)
		return nil, nil
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp, buf.Bytes()
}

func faultType(body []byte) string {
	var f api.Fault
	_ = json.Unmarshal(body, &f)
	return f.Type
}

// Hashed keys of each bcrypt variant and clear keys, right and wrong,
// against the real server: only the right key logs in, and its token
// works.
func TestHashedAndClearCredentials(t *testing.T) {
	h := hashOf(t, "alice-key", bcrypt.MinCost)
	reg := registrytest.Start(t, registrytest.WithCredentials(
		server.Credential{Username: "alice", APIKey: h, Tenant: "100001"},
		server.Credential{Username: "bob", APIKey: "bob-key", Tenant: "100002"},
		// htpasswd -B writes $2y$, other tools $2b$: the same hash.
		server.Credential{Username: "yves", APIKey: "$2y$" + hashOf(t, "yves-key", bcrypt.MinCost)[4:], Tenant: "100003"},
		server.Credential{Username: "bea", APIKey: "$2b$" + hashOf(t, "bea-key", bcrypt.MinCost)[4:], Tenant: "100004"},
	))
	hc := &http.Client{Timeout: 10 * time.Second}
	tests := []struct {
		user, key string
		want      int
		tenant    string
	}{
		{"alice", "alice-key", http.StatusOK, "100001"},
		{"alice", "alice-key", http.StatusOK, "100001"}, // the cached verification
		{"alice", "wrong", http.StatusUnauthorized, ""},
		{"alice", h, http.StatusUnauthorized, ""}, // the hash is not the key
		{"alice", "", http.StatusUnauthorized, ""},
		{"alice", strings.Repeat("k", 100), http.StatusUnauthorized, ""},
		{"bob", "bob-key", http.StatusOK, "100002"},
		{"bob", "bob-kez", http.StatusUnauthorized, ""},
		{"yves", "yves-key", http.StatusOK, "100003"},
		{"bea", "bea-key", http.StatusOK, "100004"},
		{"bea", "yves-key", http.StatusUnauthorized, ""},
		{"nobody", "alice-key", http.StatusUnauthorized, ""},
	}
	for _, tc := range tests {
		resp, body := login(t, hc, reg.AuthURL, tc.user, tc.key)
		if resp == nil {
			continue
		}
		if resp.StatusCode != tc.want {
			t.Errorf("login %s: %d %s, want %d", tc.user, resp.StatusCode, body, tc.want)
			continue
		}
		if tc.want != http.StatusOK {
			if ft := faultType(body); ft != api.FaultUnauthorized {
				t.Errorf("login %s: fault %q, want %s", tc.user, ft, api.FaultUnauthorized)
			}
			continue
		}
		id := reg.AuthenticateKey(t, tc.user, tc.key)
		if id.TenantID != tc.tenant {
			t.Errorf("login %s: tenant %s, want %s", tc.user, id.TenantID, tc.tenant)
		}
		clientOf(t, id).do(http.MethodGet, "/limits", nil).want(t, http.StatusOK)
	}
}

func TestParseCredentialsHashes(t *testing.T) {
	good := hashOf(t, "k", bcrypt.MinCost)
	tests := []struct {
		name    string
		content string
		err     string
	}{
		{"2a", "alice " + good + " t1\n", ""},
		{"2y", "alice $2y$" + good[4:] + " t1\n", ""},
		{"2b", "alice $2b$" + good[4:] + " t1\n", ""},
		{"truncated", "# c\nalice " + good[:50] + " t1\n", ":2: api-key of \"alice\": a bcrypt hash has 60 characters, this one 50"},
		{"cost 3", "alice $2a$03$" + good[7:] + " t1\n", ":1: api-key of \"alice\": bcrypt cost 3 out of 4..15"},
		{"cost 31", "alice $2a$31$" + good[7:] + " t1\n", "bcrypt cost 31 out of 4..15"},
		{"cost not digits", "alice $2a$1x$" + good[7:] + " t1\n", "cost as two digits"},
		{"bad alphabet", "alice " + good[:59] + "! t1\n", "character 60"},
		{"apr1", "alice $apr1$abc$def t1\n", "only bcrypt"},
		{"htpasswd line", "alice:" + good + "\n", "looks like an htpasswd line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := server.ParseCredentials(strings.NewReader(tc.content), "creds.txt")
			if tc.err == "" {
				if err != nil || len(got) != 1 {
					t.Fatalf("got %v, %v", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "creds.txt:") {
				t.Fatalf("err %v, want it to contain %q and the file name", err, tc.err)
			}
			// The hash, or what is left of it, is a secret too.
			if strings.Contains(err.Error(), good[7:40]) {
				t.Fatalf("the error shows the hash: %v", err)
			}
		})
	}
}

// Accounts given in code are checked as a file's are: a malformed hash
// is refused by New and SetCredentials, by username, without the hash.
func TestMalformedHashRefused(t *testing.T) {
	bad := hashOf(t, "k", bcrypt.MinCost)[:59]
	_, err := server.New(server.Config{DataDir: t.TempDir(), Credentials: []server.Credential{{Username: "alice", APIKey: bad, Tenant: "t"}}})
	if err == nil || !strings.Contains(err.Error(), `"alice"`) || strings.Contains(err.Error(), bad[7:]) {
		t.Fatalf("New with a truncated hash: %v", err)
	}
	srv, err := server.New(server.Config{DataDir: t.TempDir(), Credentials: []server.Credential{{Username: "bob", APIKey: "k", Tenant: "t"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.SetCredentials([]server.Credential{{Username: "alice", APIKey: bad, Tenant: "t"}}); err == nil || strings.Contains(err.Error(), bad[7:]) {
		t.Fatalf("SetCredentials with a truncated hash: %v", err)
	}
	h := srv.Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v2.0/tokens", strings.NewReader(`{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":"bob","apiKey":"k"}}}`)))
	if rec.Code != http.StatusOK {
		t.Fatalf("the old accounts after a refused reload: %d %s", rec.Code, rec.Body)
	}
}

// A reload (SetCredentials) that removes an account, moves it to another
// tenant or changes its key (a rotation, or a new hash of the same key)
// ends the tokens it was issued before; a login with the new key gets a
// new token, not the ended one back; the others keep working, and so do
// dev mode's users.
func TestReloadEndsTokensOfChangedAccounts(t *testing.T) {
	for _, dev := range []bool{false, true} {
		t.Run(fmt.Sprintf("dev=%v", dev), func(t *testing.T) {
			graceHash := hashOf(t, "kg", bcrypt.MinCost)
			srv, err := server.New(server.Config{Dev: dev, DataDir: t.TempDir(), Credentials: []server.Credential{
				{Username: "alice", APIKey: "ka", Tenant: "t1"},
				{Username: "bob", APIKey: "kb", Tenant: "t2"},
				{Username: "carol", APIKey: hashOf(t, "kc", bcrypt.MinCost), Tenant: "t3"},
				{Username: "erin", APIKey: "ke", Tenant: "t4"},
				{Username: "frank", APIKey: hashOf(t, "kf", bcrypt.MinCost), Tenant: "t5"},
				{Username: "grace", APIKey: graceHash, Tenant: "t6"},
			}})
			if err != nil {
				t.Fatal(err)
			}
			hs := httptest.NewServer(srv.Handler())
			t.Cleanup(func() { hs.Close(); _ = srv.Close() })
			alice := clientOf(t, loginID(t, hs.URL, "alice", "ka"))
			bob := clientOf(t, loginID(t, hs.URL, "bob", "kb"))
			carol := clientOf(t, loginID(t, hs.URL, "carol", "kc"))
			erinID, frankID := loginID(t, hs.URL, "erin", "ke"), loginID(t, hs.URL, "frank", "kf")
			erin, frank := clientOf(t, erinID), clientOf(t, frankID)
			grace := clientOf(t, loginID(t, hs.URL, "grace", "kg"))
			var dave *client
			if dev {
				dave = clientOf(t, loginID(t, hs.URL, "dave", "any"))
			}
			sid, stok := bob.createSession(30, nil)
			bob.heartbeat(sid, stok).want(t, http.StatusOK)

			if err := srv.SetCredentials([]server.Credential{
				{Username: "alice", APIKey: "ka", Tenant: "t1"},
				{Username: "bob", APIKey: "kb", Tenant: "t9"},
				{Username: "erin", APIKey: "ke2", Tenant: "t4"},
				{Username: "frank", APIKey: hashOf(t, "kf", bcrypt.MinCost), Tenant: "t5"},
				{Username: "grace", APIKey: graceHash, Tenant: "t6"},
			}); err != nil {
				t.Fatal(err)
			}
			alice.do(http.MethodGet, "/limits", nil).want(t, http.StatusOK)
			// erin's key was rotated, frank's hashed again: both tokens end.
			erin.do(http.MethodGet, "/limits", nil).fault(t, http.StatusUnauthorized, api.FaultUnauthorized)
			frank.do(http.MethodGet, "/limits", nil).fault(t, http.StatusUnauthorized, api.FaultUnauthorized)
			if resp, body := login(t, hs.Client(), hs.URL, "erin", "ke"); resp != nil && resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("erin logs in with her old key: %d %s", resp.StatusCode, body)
			}
			for _, c := range []struct {
				user, key string
				old       registrytest.Identity
			}{{"erin", "ke2", erinID}, {"frank", "kf", frankID}} {
				id := loginID(t, hs.URL, c.user, c.key)
				if id.Token == c.old.Token {
					t.Errorf("%s got her ended token back after the key change", c.user)
				}
				clientOf(t, id).do(http.MethodGet, "/limits", nil).want(t, http.StatusOK)
			}
			// The same hash after the reload: grace's token lives on.
			grace.do(http.MethodGet, "/limits", nil).want(t, http.StatusOK)
			if err := srv.SetCredentials([]server.Credential{
				{Username: "alice", APIKey: "ka", Tenant: "t1"},
				{Username: "grace", APIKey: graceHash, Tenant: "t6"},
			}); err != nil {
				t.Fatal(err)
			}
			grace.do(http.MethodGet, "/limits", nil).want(t, http.StatusOK)
			if err := srv.SetCredentials([]server.Credential{
				{Username: "alice", APIKey: "ka", Tenant: "t1"},
				{Username: "bob", APIKey: "kb", Tenant: "t9"},
			}); err != nil {
				t.Fatal(err)
			}
			bob.heartbeat(sid, stok).fault(t, http.StatusUnauthorized, api.FaultUnauthorized)
			carol.do(http.MethodGet, "/limits", nil).fault(t, http.StatusUnauthorized, api.FaultUnauthorized)
			if dev {
				dave.do(http.MethodGet, "/limits", nil).want(t, http.StatusOK)
				// carol is a dev user now, of her own dev tenant.
				if id := loginID(t, hs.URL, "carol", "whatever"); id.TenantID != server.DevTenantID("carol") {
					t.Errorf("carol after removal in dev mode: tenant %s", id.TenantID)
				}
			} else {
				resp, body := login(t, hs.Client(), hs.URL, "carol", "kc")
				if resp != nil && resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("removed carol logs in: %d %s", resp.StatusCode, body)
				}
			}
			if id := loginID(t, hs.URL, "bob", "kb"); id.TenantID != "t9" {
				t.Errorf("bob after the reload: tenant %s, want t9", id.TenantID)
			}
		})
	}
}

func loginID(t testing.TB, authURL, user, key string) registrytest.Identity {
	t.Helper()
	id, err := registrytest.Login(context.Background(), authURL, user, key)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func withAuth(l server.AuthLimits) registrytest.Option {
	return func(c *server.Config) { c.Auth = l }
}

// fromAddr is an HTTP client whose connections come from the loopback
// address ip (any of 127.0.0.0/8 is this host), so that a test can be
// several sources.
func fromAddr(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

// Failed logins from one source are limited: past the bucket, 429
// rateLimitReached with Retry-After, even with the right key; another
// source, and a key already verified, are not held back.
func TestFailedLoginsLimitedPerSource(t *testing.T) {
	reg := registrytest.Start(t, withAuth(server.AuthLimits{Failures: 5, FailureWindow: time.Hour}),
		registrytest.WithCredentials(
			server.Credential{Username: "alice", APIKey: hashOf(t, "alice-key", bcrypt.MinCost), Tenant: "t1"},
			server.Credential{Username: "bob", APIKey: "bob-key", Tenant: "t2"},
		))
	a, b := fromAddr("127.0.0.1"), fromAddr("127.0.0.2")
	// alice's key verified once, from a: cached.
	if resp, body := login(t, a, reg.AuthURL, "alice", "alice-key"); resp == nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("first login: %v %s", resp, body)
	}
	for i := range 5 {
		user := []string{"alice", "bob", "nobody"}[i%3]
		if resp, body := login(t, a, reg.AuthURL, user, "wrong"); resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %v %s", i, resp, body)
		}
	}
	resp, body := login(t, a, reg.AuthURL, "bob", "bob-key")
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests || faultType(body) != api.FaultRateLimitReached {
		t.Fatalf("past the limit, the right key: %v %s, want 429 %s", resp, body, api.FaultRateLimitReached)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 3600 {
		t.Fatalf("Retry-After %q, want seconds until one failure is refilled (720)", resp.Header.Get("Retry-After"))
	}
	if resp, body := login(t, a, reg.AuthURL, "alice", "alice-key"); resp == nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("a verified key from the blocked source: %v %s", resp, body)
	}
	if resp, body := login(t, b, reg.AuthURL, "bob", "bob-key"); resp == nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("another source: %v %s", resp, body)
	}
}

// A flood of wrong keys against a hashed account (bcrypt at the default
// cost) neither runs more verifications than allowed nor delays the
// heartbeats of a session: bounded, and answered 429 past the bound.
func TestWrongKeyFloodDoesNotStarveHeartbeats(t *testing.T) {
	const cost = bcrypt.DefaultCost
	hash := hashOf(t, "alice-key", cost)
	start := time.Now()
	_ = bcrypt.CompareHashAndPassword([]byte(hash), []byte("x"))
	perVerify := time.Since(start)
	reg := registrytest.Start(t, withAuth(server.AuthLimits{Verifications: 1, Failures: -1}),
		registrytest.WithCredentials(
			server.Credential{Username: "alice", APIKey: hash, Tenant: "t1"},
			server.Credential{Username: "bob", APIKey: "bob-key", Tenant: "t2"},
		))
	bob := clientOf(t, reg.AuthenticateKey(t, "bob", "bob-key"))
	sid, stok := bob.createSession(30, nil)
	quiet := heartbeatLatencies(t, bob, sid, stok, 20)

	const workers, perWorker = 16, 8
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	codes := map[int]int{}
	retryAfter := true
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			hc := &http.Client{Timeout: 30 * time.Second}
			for i := range perWorker {
				if ctx.Err() != nil {
					return
				}
				resp, body := login(t, hc, reg.AuthURL, "alice", fmt.Sprintf("wrong-%d-%d", w, i))
				if resp == nil {
					return
				}
				mu.Lock()
				codes[resp.StatusCode]++
				if resp.StatusCode == http.StatusTooManyRequests &&
					(resp.Header.Get("Retry-After") == "" || faultType(body) != api.FaultRateLimitReached) {
					retryAfter = false
				}
				mu.Unlock()
			}
		})
	}
	// Heartbeats while the flood runs.
	// The flood is on once its first answer is in (a 401 from the
	// verifier or a 429 past its bound).
	testsupport.EventuallyTrue(t, 30*time.Second, "the flood's first answer", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(codes) > 0
	})
	during := heartbeatLatencies(t, bob, sid, stok, 40)
	wg.Wait()
	cancel()

	t.Logf("bcrypt cost %d: %s per verification here; flood answers %v", cost, perVerify.Round(time.Millisecond), codes)
	t.Logf("heartbeat latency quiet: median %s max %s; during the flood: median %s max %s",
		median(quiet), slices.Max(quiet), median(during), slices.Max(during))
	if codes[http.StatusTooManyRequests] == 0 || codes[http.StatusUnauthorized] == 0 || len(codes) != 2 {
		t.Errorf("flood answers %v: want both 401s (verified) and 429s (past the bound), nothing else", codes)
	}
	if !retryAfter {
		t.Error("a 429 without Retry-After or rateLimitReached")
	}
	if m := median(during); m > 100*time.Millisecond || slices.Max(during) > time.Second {
		t.Errorf("heartbeats during the flood: median %s, max %s: starved", m, slices.Max(during))
	}
}

func heartbeatLatencies(t *testing.T, c *client, sid, stok string, n int) []time.Duration {
	t.Helper()
	out := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		c.heartbeat(sid, stok).want(t, http.StatusOK)
		out = append(out, time.Since(start))
		time.Sleep(10 * time.Millisecond)
	}
	return out
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// The built binary: hash-key hashes a key read from a pipe, and the hash
// in --credentials logs in; with --log-level debug, no key, hash or token
// of right and wrong logins, API calls and heartbeats shows in the log.
func TestHashKeyAndNoSecretsInDebugLogs(t *testing.T) {
	bin := registrytest.BuildBinary(t, registrytest.RegistryPackage)

	hashKey := func(stdin string, args ...string) (string, string, int) {
		cmd := exec.Command(bin, append([]string{"hash-key"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	const aliceKey = "alice-0123456789abcdef"
	out, errs, code := hashKey(aliceKey+"\n", "--cost", "6")
	hash := strings.TrimSpace(out)
	if code != 0 || bcrypt.CompareHashAndPassword([]byte(hash), []byte(aliceKey)) != nil {
		t.Fatalf("hash-key: %q %q exit %d: not a hash of the key", out, errs, code)
	}
	if c, _ := bcrypt.Cost([]byte(hash)); c != 6 {
		t.Fatalf("hash-key --cost 6: cost %d", c)
	}
	for _, tc := range []struct {
		stdin string
		args  []string
		code  int
		err   string
	}{
		{"", nil, 1, "empty key"},
		{"\n", nil, 1, "empty key"},
		{"a key\n", nil, 1, "spaces"},
		{strings.Repeat("k", 73), nil, 1, "at most 72"},
		{hash + "\n", nil, 1, "already a bcrypt hash"},
		{"k\n", []string{aliceKey}, 2, "never the command line"},
		{"k\n", []string{"--cost", "40"}, 2, "out of 4..15"},
	} {
		out, errs, code := hashKey(tc.stdin, tc.args...)
		if code != tc.code || out != "" || !strings.Contains(errs, tc.err) {
			t.Errorf("hash-key %q %v: exit %d, out %q, err %q; want %d and %q", tc.stdin, tc.args, code, out, errs, tc.code, tc.err)
		}
		if strings.Contains(errs, aliceKey) {
			t.Errorf("hash-key error shows the key: %q", errs)
		}
	}
	// Without a line ending too (printf %s "$KEY" | sr-registry hash-key).
	if out, _, code := hashKey(aliceKey); code != 0 || bcrypt.CompareHashAndPassword([]byte(strings.TrimSpace(out)), []byte(aliceKey)) != nil {
		t.Fatalf("key without a newline: %q exit %d", out, code)
	}

	const bobKey = "bob-fedcba9876543210"
	creds := filepath.Join(t.TempDir(), "credentials")
	content := "alice " + hash + " 100001\nbob " + bobKey + " 100002\n"
	if err := os.WriteFile(creds, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	p := registrytest.StartProcess(t, bin, "--credentials", creds, "--log-level", "debug")
	hc := &http.Client{Timeout: 10 * time.Second}
	secrets := map[string]string{"alice's key": aliceKey, "alice's hash": hash, "bob's key": bobKey,
		"alice's hash without its prefix": hash[7:]}
	for i, try := range []struct{ user, key string }{
		{"alice", aliceKey}, {"alice", "wrong-alice-key-1"}, {"bob", bobKey}, {"bob", "wrong-bob-key-22"},
		{"nobody", "wrong-nobody-key-333"}, {"alice", hash},
	} {
		resp, _ := login(t, hc, p.AuthURL, try.user, try.key)
		if resp == nil {
			t.FailNow()
		}
		secrets[fmt.Sprintf("key of try %d", i)] = try.key
	}
	for _, u := range []struct{ user, key string }{{"alice", aliceKey}, {"bob", bobKey}} {
		id := loginID(t, p.AuthURL, u.user, u.key)
		secrets[u.user+"'s token"] = id.Token
		c := clientOf(t, id)
		sid, stok := c.createSession(30, nil)
		secrets[u.user+"'s heartbeat token"] = stok
		c.heartbeat(sid, stok).want(t, http.StatusOK)
		c.do(http.MethodGet, "/sessions/"+sid, nil).want(t, http.StatusOK)
		// A forged token, and a wrong heartbeat token.
		forged := clientOf(t, registrytest.Identity{Token: id.Token + "x", TenantURL: id.TenantURL})
		forged.do(http.MethodGet, "/limits", nil).want(t, http.StatusUnauthorized)
		if r := c.heartbeat(sid, "6ba7b810-9dad-11d1-80b4-00c04fd430c8"); r.StatusCode == http.StatusOK {
			t.Errorf("heartbeat with a wrong token: %d", r.StatusCode)
		}
	}
	if code := p.Terminate(); code != 0 {
		t.Errorf("exit code %d", code)
	}
	logs := p.Logs()
	if !strings.Contains(logs, "login failed") || !strings.Contains(logs, "session created") {
		t.Fatalf("the debug log lacks the debug lines this test means to check:\n%s", logs)
	}
	if !strings.Contains(logs, "API keys stored in clear") || !strings.Contains(logs, "bob") {
		t.Errorf("no warning naming bob's clear key:\n%s", logs)
	}
	for what, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the log shows %s", what)
		}
	}
}
