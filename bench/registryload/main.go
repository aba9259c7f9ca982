// Command registryload is the load benchmark of sr-registry: it starts a
// real server (internal/server, loopback, temporary data dir), creates
// -sessions sessions spread over -tenants dev-mode tenants, and heartbeats
// them over -conns persistent keep-alive connections, first as fast as the
// connections go (saturation), then at a fixed -rate. It reports
// heartbeats/s, latency percentiles, the server's heap and stacks per
// session, and what an idle keep-alive connection costs the server.
//
// By default the server runs in this process: one Go scheduler shares the
// two CPUs between server and load generator, and the heap figure is exact.
// With -separate-process it runs in a child process (this program
// re-executed), which isolates the server's heap and CPU time (reported
// per heartbeat) but makes the two processes compete for the CPUs through
// the OS scheduler.
//
// It is a measurement tool, not a test: it is bounded by -sessions and
// -duration, talks only to 127.0.0.1, and exits non-zero when a heartbeat
// fails or a session is lost. The client speaks HTTP/1.1 over raw TCP
// (like wrk) so that the load generator costs as little CPU as possible
// on the CPUs it shares with the server.
//
//	go run ./bench/registryload                      # 10,000 sessions, 10 s per phase
//	go run ./bench/registryload -separate-process
//	go run ./bench/registryload -sessions 1000 -duration 2s
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
)

type options struct {
	sessions   int
	tenants    int
	conns      int
	duration   time.Duration
	rate       int
	timeout    int
	idleConns  int
	cpuprof    string
	memprof    string
	separate   bool
	procs      int
	child      bool
	childMax   int
	reregister int
	childStore string
	cluster    bool
	etcdBin    string
	members    int
	frontends  int
	scrape     time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.sessions, "sessions", 10000, "live sessions to create and heartbeat (1..100000)")
	flag.IntVar(&o.tenants, "tenants", 100, "dev-mode tenants to spread them over (the default limit is 100 sessions per tenant)")
	flag.IntVar(&o.conns, "conns", 64, "concurrent keep-alive connections that heartbeat (1..1000)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each phase (saturation, fixed rate), at most 2m")
	flag.IntVar(&o.rate, "rate", 20000, "heartbeats per second of the fixed-rate phase (0 skips it)")
	flag.IntVar(&o.timeout, "timeout", 30, "heartbeat_timeout of the sessions, seconds")
	flag.IntVar(&o.idleConns, "idle-conns", 2000, "idle keep-alive connections for the per-connection memory figure (0..5000; 0 skips it)")
	flag.StringVar(&o.cpuprof, "cpuprofile", "", "write a CPU profile of the heartbeat phases to this file (with -separate-process, the server's goes to FILE.server)")
	flag.StringVar(&o.memprof, "memprofile", "", "in process: write heap profiles before (FILE.base) and after creating the sessions (FILE)")
	flag.BoolVar(&o.separate, "separate-process", false, "run the server in a child process (this program re-executed) instead of in this process; it then also reports the server's CPU time per heartbeat")
	flag.IntVar(&o.procs, "server-procs", 0, "GOMAXPROCS of the server child process (0: the Go default, all CPUs)")
	flag.BoolVar(&o.child, "child-server", false, "internal: be the server child process")
	flag.IntVar(&o.childMax, "child-session-limit", 100, "internal: per-tenant session limit of the child server")
	flag.IntVar(&o.reregister, "reregister", 0, "instead of the heartbeat load: N wrappers of ONE tenant register at once, then re-register at once (a mass restart); 1..5000")
	flag.StringVar(&o.childStore, "child-store", "", "internal: etcd:// store of the child server")
	flag.BoolVar(&o.cluster, "cluster", false, "instead: -sessions sessions heartbeating through -frontends sr-registry processes on a -members etcd cluster (the etcd binary, -etcd-bin), against raw etcd lease keep-alives at the same concurrency")
	flag.StringVar(&o.etcdBin, "etcd-bin", "etcd", "with -cluster: the etcd server binary (Debian: etcd-server)")
	flag.IntVar(&o.members, "members", 3, "with -cluster: etcd members (1..5)")
	flag.IntVar(&o.frontends, "frontends", 3, "with -cluster: sr-registry frontends (1..5)")
	flag.DurationVar(&o.scrape, "scrape-every", 0, "GET /metrics this often during the heartbeat phases, as Prometheus would (0: never), and check the server's heartbeat counter against the replies")
	flag.Parse()
	if o.memprof != "" {
		runtime.MemProfileRate = 1 // every allocation, for an exact diff
	}
	run := run
	if o.child {
		run = runChild
	}
	if o.reregister > 0 {
		run = reregister
	}
	if o.cluster && !o.child {
		run = runCluster
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "registryload:", err)
		os.Exit(1)
	}
}

// sess is a session under load. Fixed-size arrays, allocated before the
// memory baseline, keep the load generator's own state out of the
// server's heap delta.
type sess struct {
	tenant int
	id     [10]byte
	token  [36]byte
}

func run(o options) error {
	if o.sessions < 1 || o.sessions > 100000 || o.duration <= 0 || o.duration > 2*time.Minute ||
		o.conns < 1 || o.conns > 1000 || o.tenants < 1 || o.idleConns < 0 || o.idleConns > 5000 {
		return errors.New("flags out of bounds (see -help)")
	}
	// Every connection needs at least one session to heartbeat.
	o.conns = min(o.conns, o.sessions)
	perTenant := (o.sessions + o.tenants - 1) / o.tenants
	var srv serverHandle
	var err error
	if o.separate {
		srv, err = startChild(perTenant, o.procs, o.cpuprof)
	} else {
		srv, err = startInProcess(api.ResourceLimits{Session: perTenant})
	}
	if err != nil {
		return err
	}
	defer func() {
		if err := srv.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "registryload: server:", err)
		}
	}()
	addr := srv.addr
	authURL := "http://" + addr
	ctx := context.Background()

	fmt.Printf("machine: %d CPUs (GOMAXPROCS %d), %s, %s/%s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	where := "in this process"
	if o.separate {
		where = "in a child process"
	}
	fmt.Printf("load: %d sessions over %d tenants, %d heartbeat connections, timeout %d s, %s per phase; server %s\n",
		o.sessions, o.tenants, o.conns, o.timeout, o.duration, where)

	// Identities first: tokens are not session state.
	tenants := make([]registrytest.Identity, o.tenants)
	for i := range tenants {
		id, err := registrytest.Login(ctx, authURL, fmt.Sprintf("load-%03d", i), "key")
		if err != nil {
			return err
		}
		tenants[i] = id
	}
	sessions := make([]sess, o.sessions)
	for i := range sessions {
		sessions[i].tenant = i % o.tenants
	}
	workers := make([]*worker, o.conns)
	for i := range workers {
		w, err := dial(addr, tenants)
		if err != nil {
			return err
		}
		defer w.conn.Close()
		// One request per connection so that the server has set up its
		// side before the baseline.
		if err := w.call(http.MethodGet, tenants[0], "/limits", http.StatusOK); err != nil {
			return err
		}
		workers[i] = w
	}

	// Warm each connection up with one create and delete: the first
	// create grows the connection goroutine's stack, a per-connection
	// cost that must not be counted per session.
	for i, w := range workers {
		var warm sess
		warm.tenant = i % len(tenants)
		if err := w.create(&warm, o.timeout); err != nil {
			return err
		}
		if err := w.call(http.MethodDelete, tenants[warm.tenant], "/sessions/"+string(warm.id[:]), http.StatusNoContent); err != nil {
			return err
		}
	}
	// Touch every tenant too: a tenant's state is not per-session cost.
	for _, id := range tenants {
		if err := workers[0].call(http.MethodGet, id, "/limits", http.StatusOK); err != nil {
			return err
		}
	}

	base, err := srv.heap()
	if err != nil {
		return err
	}
	if err := writeHeapProfile(o, ".base"); err != nil {
		return err
	}

	// Create the sessions.
	start := time.Now()
	if err := createSessions(workers, sessions, o.timeout); err != nil {
		return err
	}
	created := time.Since(start)
	fmt.Printf("created %d sessions over the %d connections in %s (%.0f/s, each committed to bbolt before its reply)\n",
		o.sessions, o.conns, created.Round(time.Millisecond), float64(o.sessions)/created.Seconds())
	heap, err := srv.heap()
	if err != nil {
		return err
	}
	if err := writeHeapProfile(o, ""); err != nil {
		return err
	}
	perSession := float64(int64(heap)-int64(base)) / float64(o.sessions)
	fmt.Printf("server heap+stacks: %.1f MiB before, %.1f MiB with the sessions: %.0f bytes per session\n",
		mib(base), mib(heap), perSession)

	// Deal the sessions to the connections.
	for i := range sessions {
		w := workers[i%len(workers)]
		w.sessions = append(w.sessions, &sessions[i])
	}
	if o.cpuprof != "" {
		stop, err := startCPUProfile(o.cpuprof)
		if err != nil {
			return err
		}
		defer stop()
		if srv.profile != nil {
			if err := srv.profile(); err != nil {
				return err
			}
		}
	}
	rates := []int{0}
	if o.rate > 0 {
		rates = append(rates, o.rate)
	}
	heartbeats0, err := scrapeHeartbeats(addr)
	if err != nil {
		return err
	}
	stopScraping := scrapeEvery(addr, o.scrape)
	total := 0
	for _, rate := range rates {
		cpu0, err := srv.cpu()
		if err != nil {
			return err
		}
		self0, busy0 := selfCPU(), machineBusy()
		r, err := phase(workers, o.duration, rate)
		if err != nil {
			return err
		}
		self1, busy1 := selfCPU(), machineBusy()
		cpu1, err := srv.cpu()
		if err != nil {
			return err
		}
		name := "saturation"
		if rate > 0 {
			name = fmt.Sprintf("fixed rate %d/s", rate)
		}
		r.print(name, rate > 0)
		total += r.count
		// Cores this benchmark got: near the machine's count means nothing
		// else competed for the CPUs during the phase.
		selfCores := (self1 - self0).Seconds() / r.elapsed.Seconds()
		// Whatever else ran on the machine meanwhile (other processes,
		// kernel work not charged to ours): a noisy run shows here.
		others := (busy1-busy0).Seconds()/r.elapsed.Seconds() - selfCores
		if cpu1 > 0 {
			per := (cpu1 - cpu0) / time.Duration(r.count)
			srvCores := (cpu1 - cpu0).Seconds() / r.elapsed.Seconds()
			others -= srvCores
			fmt.Printf("  CPU: server %s per heartbeat (%.2f cores), load generator %.2f cores, everything else %.2f cores\n",
				per.Round(100*time.Nanosecond), srvCores, selfCores, max(others, 0))
		} else {
			fmt.Printf("  CPU: server and load generator together %.2f cores, everything else %.2f cores\n", selfCores, max(others, 0))
		}
	}

	if err := stopScraping(); err != nil {
		return err
	}
	heartbeats1, err := scrapeHeartbeats(addr)
	if err != nil {
		return err
	}
	fmt.Printf("the server's sr_registry_heartbeats_total rose by %.0f; the load generator got %d heartbeat replies\n", heartbeats1-heartbeats0, total)
	if int(heartbeats1-heartbeats0) != total {
		return errors.New("the server's heartbeat counter does not match the heartbeats answered")
	}

	// Every session must still be alive.
	alive := 0
	for _, id := range tenants {
		n, err := countSessions(ctx, id.TenantURL, id.Token)
		if err != nil {
			return err
		}
		alive += n
	}
	fmt.Printf("sessions alive at the end: %d of %d\n", alive, o.sessions)
	if alive != o.sessions {
		return fmt.Errorf("%d sessions lost", o.sessions-alive)
	}

	if o.idleConns > 0 {
		per, err := idleConnCost(srv, tenants[0], o.idleConns)
		if err != nil {
			return err
		}
		what := "heap+stacks (server side plus a bare client socket)"
		if o.separate {
			what = "server heap+stacks"
		}
		fmt.Printf("idle keep-alive connection: %.0f bytes of %s each (%d measured)\n", per, what, o.idleConns)
	}
	return nil
}

// machineBusy is the CPU time all CPUs of the machine have spent busy so
// far, from /proc/stat (0 where there is none).
func machineBusy() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line)
	if len(fields) < 8 || fields[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, f := range fields[1:] {
		n, _ := strconv.ParseInt(f, 10, 64)
		// user nice system idle iowait irq softirq steal [guest guest_nice]:
		// idle and iowait are not busy; guest time is already in user.
		if i != 3 && i != 4 && i < 8 {
			busy += n
		}
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(busy) * time.Second / ticksPerSecond
}

// selfCPU is this process's CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startCPUProfile starts the CPU profile into path; stop ends it and
// closes the file.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("CPU profile %s: %w", path, err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// writeHeapProfile writes the heap profile to -memprofile plus suffix, in
// process only (a child's heap is not ours to profile).
func writeHeapProfile(o options, suffix string) error {
	if o.memprof == "" || o.separate {
		return nil
	}
	f, err := os.Create(o.memprof + suffix)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("heap").WriteTo(f, 0)
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// createSessions creates the sessions over the workers' connections, so
// that no connection is opened or closed between the two heap readings.
func createSessions(workers []*worker, sessions []sess, timeout int) error {
	var wg sync.WaitGroup
	errs := make([]error, len(workers))
	for wi, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := wi; i < len(sessions); i += len(workers) {
				if err := w.create(&sessions[i], timeout); err != nil {
					errs[wi] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func countSessions(ctx context.Context, tenantURL, token string) (int, error) {
	n := 0
	next := tenantURL + "/sessions?limit=1000"
	for next != "" {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, next, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("X-Auth-Token", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		var l api.List[api.Session]
		err = json.NewDecoder(resp.Body).Decode(&l)
		resp.Body.Close()
		if err != nil {
			return 0, fmt.Errorf("list sessions: %s: %w", resp.Status, err)
		}
		n += len(l.Values)
		next = ""
		if l.Metadata.NextHref != nil {
			next = *l.Metadata.NextHref
		}
	}
	return n, nil
}

// worker is one keep-alive connection and the sessions it heartbeats.
type worker struct {
	conn     net.Conn
	r        *bufio.Reader
	w        *bufio.Writer
	host     string
	tenants  []registrytest.Identity
	sessions []*sess
	location string          // Location header of the last response
	lat      []time.Duration // from the scheduled send time
	svc      []time.Duration // from the actual send time
	req      []byte
}

func dial(addr string, tenants []registrytest.Identity) (*worker, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return &worker{conn: c, r: bufio.NewReader(c), w: bufio.NewWriter(c), host: addr, tenants: tenants, req: make([]byte, 0, 512)}, nil
}

// call sends a bodiless method /v1.0/<tenant><path> as that tenant and
// expects the status want.
func (w *worker) call(method string, id registrytest.Identity, path string, want int) error {
	fmt.Fprintf(w.w, "%s /v1.0/%s%s HTTP/1.1\r\nHost: %s\r\nX-Auth-Token: %s\r\n\r\n", method, id.TenantID, path, w.host, id.Token)
	if err := w.w.Flush(); err != nil {
		return err
	}
	status, body, err := w.readResponse()
	if err == nil && status != want {
		err = fmt.Errorf("%s %s: status %d, want %d: %s", method, path, status, want, body)
	}
	return err
}

// create creates the session s (POST /sessions) and stores its id and
// first token.
func (w *worker) create(s *sess, timeout int) error {
	id := &w.tenants[s.tenant]
	body := `{"heartbeat_timeout":` + strconv.Itoa(timeout) + `}`
	fmt.Fprintf(w.w, "POST /v1.0/%s/sessions HTTP/1.1\r\nHost: %s\r\nX-Auth-Token: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		id.TenantID, w.host, id.Token, len(body), body)
	if err := w.w.Flush(); err != nil {
		return err
	}
	status, reply, err := w.readResponse()
	if err != nil {
		return err
	}
	var tok api.HeartbeatToken
	if status != http.StatusCreated || json.Unmarshal(reply, &tok) != nil || len(tok.Token) != 36 || len(w.location) < 10 {
		return fmt.Errorf("create session: status %d: %s", status, reply)
	}
	copy(s.id[:], w.location[len(w.location)-10:])
	copy(s.token[:], tok.Token)
	return nil
}

// heartbeat sends one heartbeat for s and stores the next token.
func (w *worker) heartbeat(s *sess) error {
	id := &w.tenants[s.tenant]
	b := w.req[:0]
	b = append(b, "POST /v1.0/"...)
	b = append(b, id.TenantID...)
	b = append(b, "/sessions/"...)
	b = append(b, s.id[:]...)
	b = append(b, "/heartbeat HTTP/1.1\r\nHost: "...)
	b = append(b, w.host...)
	b = append(b, "\r\nX-Auth-Token: "...)
	b = append(b, id.Token...)
	b = append(b, "\r\nContent-Type: application/json\r\nContent-Length: 48\r\n\r\n{\"token\":\""...)
	b = append(b, s.token[:]...)
	b = append(b, "\"}"...)
	w.req = b
	if _, err := w.conn.Write(b); err != nil {
		return err
	}
	status, body, err := w.readResponse()
	if err != nil {
		return err
	}
	if status != 200 {
		return fmt.Errorf("heartbeat %s: status %d: %s", s.id, status, body)
	}
	i := bytes.Index(body, []byte(`"token":"`))
	if i < 0 || len(body) < i+9+36 {
		return fmt.Errorf("heartbeat %s: reply %s", s.id, body)
	}
	copy(s.token[:], body[i+9:])
	return nil
}

// readResponse reads one HTTP/1.1 response with a Content-Length.
func (w *worker) readResponse() (int, []byte, error) {
	line, err := w.r.ReadSlice('\n')
	if err != nil {
		return 0, nil, fmt.Errorf("read status line: %w", err)
	}
	if len(line) < 12 {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	length := 0
	for {
		h, err := w.r.ReadSlice('\n')
		if err != nil {
			return 0, nil, fmt.Errorf("read header: %w", err)
		}
		if len(h) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(h, []byte("Content-Length: ")); ok {
			length, _ = strconv.Atoi(strings.TrimSpace(string(v)))
		}
		if v, ok := bytes.CutPrefix(h, []byte("Location: ")); ok {
			w.location = strings.TrimSpace(string(v))
		}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(w.r, body); err != nil {
		return 0, nil, fmt.Errorf("read body: %w", err)
	}
	return status, body, nil
}

type result struct {
	count   int
	elapsed time.Duration
	lat     []time.Duration
	svc     []time.Duration
	behind  time.Duration // how far the fixed-rate schedule slipped at most
}

func (r result) print(name string, fixedRate bool) {
	fmt.Printf("%s: %d heartbeats in %s = %.0f heartbeats/s\n", name, r.count, r.elapsed.Round(time.Millisecond), float64(r.count)/r.elapsed.Seconds())
	fmt.Printf("  latency, send to reply:        %s\n", percentiles(r.svc))
	if fixedRate {
		fmt.Printf("  latency, scheduled to reply:   %s (the generator's schedule slipped up to %s)\n", percentiles(r.lat), r.behind.Round(time.Microsecond))
	}
}

func percentiles(lat []time.Duration) string {
	if len(lat) == 0 {
		return "none"
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		return lat[min(len(lat)-1, int(p*float64(len(lat))))].Round(time.Microsecond)
	}
	return fmt.Sprintf("p50 %s, p99 %s, p99.9 %s, max %s", pct(0.50), pct(0.99), pct(0.999), lat[len(lat)-1].Round(time.Microsecond))
}

// phase heartbeats for d: as fast as each connection allows when rate is
// 0, else at rate per second in total, with latency measured from the
// scheduled send time (so a slow reply also counts against the requests
// queued behind it).
func phase(workers []*worker, d time.Duration, rate int) (result, error) {
	var wg sync.WaitGroup
	errs := make([]error, len(workers))
	behind := make([]time.Duration, len(workers))
	start := time.Now()
	end := start.Add(d)
	for wi, w := range workers {
		w.lat, w.svc = w.lat[:0], w.svc[:0]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var interval time.Duration
			if rate > 0 {
				interval = time.Duration(float64(time.Second) * float64(len(workers)) / float64(rate))
			}
			// Stagger the connections over one interval.
			sched := start.Add(time.Duration(wi) * interval / time.Duration(len(workers)))
			for k := 0; ; k++ {
				now := time.Now()
				if now.After(end) {
					return
				}
				if rate > 0 {
					if wait := sched.Sub(now); wait > 0 {
						time.Sleep(wait)
					} else if -wait > behind[wi] {
						behind[wi] = -wait
					}
				} else {
					sched = now
				}
				s := w.sessions[k%len(w.sessions)]
				sent := time.Now()
				if err := w.heartbeat(s); err != nil {
					errs[wi] = err
					return
				}
				got := time.Now()
				w.lat = append(w.lat, got.Sub(sched))
				w.svc = append(w.svc, got.Sub(sent))
				sched = sched.Add(interval)
			}
		}()
	}
	wg.Wait()
	r := result{elapsed: time.Since(start)}
	for i, w := range workers {
		if errs[i] != nil {
			return r, errs[i]
		}
		r.count += len(w.lat)
		r.lat = append(r.lat, w.lat...)
		r.svc = append(r.svc, w.svc...)
		r.behind = max(r.behind, behind[i])
	}
	return r, nil
}

// idleConnCost opens n connections that each make one request and then
// stay idle, and returns the heap growth per connection.
func idleConnCost(srv serverHandle, id registrytest.Identity, n int) (float64, error) {
	addr := srv.addr
	req := []byte("GET /v1.0/" + id.TenantID + "/limits HTTP/1.1\r\nHost: " + addr + "\r\nX-Auth-Token: " + id.Token + "\r\n\r\n")
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	buf := make([]byte, 4096)
	before, err := srv.heap()
	if err != nil {
		return 0, err
	}
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return 0, fmt.Errorf("dial idle connection: %w", err)
		}
		conns = append(conns, c)
		if _, err := c.Write(req); err != nil {
			return 0, err
		}
		// The reply is small: one read holds it.
		if _, err := c.Read(buf); err != nil {
			return 0, err
		}
	}
	after, err := srv.heap()
	if err != nil {
		return 0, err
	}
	return float64(int64(after)-int64(before)) / float64(n), nil
}
