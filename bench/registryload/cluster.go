package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
)

// runCluster is the benchmark of sr-registry as a cluster: -members etcd
// processes (the real etcd binary, fsync on, data in a temporary
// directory), -frontends sr-registry processes on them (this program
// re-executed, as with -separate-process), -sessions sessions heartbeating
// through the frontends over -conns connections; and, in the same run and
// at the same concurrency, raw etcd lease keep-alives (one LeaseKeepAlive
// stream per connection, a request and its reply at a time, as etcd's own
// benchmark tool does), the anchor that the frontends are compared with.
// It reports rates, latency percentiles, and the CPU and memory of each
// process.
func runCluster(o options) error {
	if o.members < 1 || o.members > 5 || o.frontends < 1 || o.frontends > 5 || o.sessions < 1 || o.sessions > 100000 ||
		o.conns < 1 || o.conns > 1000 || o.duration <= 0 || o.duration > 2*time.Minute {
		return errors.New("flags out of bounds (see -help)")
	}
	bin, err := exec.LookPath(o.etcdBin)
	if err != nil {
		return fmt.Errorf("-etcd-bin %s: %w (Debian: apt-get install etcd-server)", o.etcdBin, err)
	}
	dir, err := os.MkdirTemp("", "registryload-cluster-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	members, endpoints, err := startEtcd(bin, dir, o.members)
	defer func() {
		for _, m := range members {
			_ = m.cmd.Process.Signal(syscall.SIGTERM)
			_ = m.cmd.Wait()
		}
	}()
	if err != nil {
		return err
	}
	version, _ := exec.Command(bin, "--version").Output()
	v, _, _ := strings.Cut(string(version), "\n")

	perTenant := (o.sessions + o.tenants - 1) / o.tenants
	store := "etcd://" + strings.Join(endpoints, ",") + "/bench"
	fronts := make([]serverHandle, o.frontends)
	for i := range fronts {
		prof := ""
		if o.cpuprof != "" {
			prof = fmt.Sprintf("%s.frontend%d", o.cpuprof, i)
		}
		if fronts[i], err = startChildOn(perTenant, o.procs, prof, store); err != nil {
			return err
		}
		defer func() {
			if err := fronts[i].stop(); err != nil {
				fmt.Fprintln(os.Stderr, "registryload: frontend:", err)
			}
		}()
	}

	fmt.Printf("machine: %d CPUs, %s %s/%s; %s (%d members, fsync on); %d sr-registry frontends\n",
		runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH, v, o.members, o.frontends)
	fmt.Printf("load: %d sessions (heartbeat_timeout %d s) over %d tenants, %d connections spread over the frontends, %s per phase\n",
		o.sessions, o.timeout, o.tenants, o.conns, o.duration)

	ctx := context.Background()
	tenants := make([]registrytest.Identity, o.tenants)
	for i := range tenants {
		if tenants[i], err = registrytest.Login(ctx, "http://"+fronts[i%len(fronts)].addr, fmt.Sprintf("load-%03d", i), "key"); err != nil {
			return err
		}
	}
	workers := make([]*worker, o.conns)
	for i := range workers {
		if workers[i], err = dial(fronts[i%len(fronts)].addr, tenants); err != nil {
			return err
		}
		defer workers[i].conn.Close()
	}
	sessions := make([]sess, o.sessions)
	for i := range sessions {
		sessions[i].tenant = i % o.tenants
	}
	start := time.Now()
	if err := createSessionsRetrying(workers, sessions, o.timeout); err != nil {
		return err
	}
	fmt.Printf("created %d sessions in %s (%.0f/s)\n", o.sessions, time.Since(start).Round(time.Millisecond), float64(o.sessions)/time.Since(start).Seconds())
	for i := range sessions {
		w := workers[i%len(workers)]
		w.sessions = append(w.sessions, &sessions[i])
	}

	raw, err := newRawKeepAlive(ctx, endpoints, o.conns, o.sessions)
	if err != nil {
		return err
	}
	defer raw.close()
	if err := raw.putProbe(ctx); err != nil {
		return err
	}

	procs := []proc{}
	for i, m := range members {
		procs = append(procs, proc{name: fmt.Sprintf("etcd member %d", i), pid: m.cmd.Process.Pid})
	}
	for i, f := range fronts {
		procs = append(procs, proc{name: fmt.Sprintf("sr-registry frontend %d", i), pid: f.pid})
	}
	procs = append(procs, proc{name: "load generator", pid: os.Getpid()})

	measure := func(name string, run func() (result, error)) (result, error) {
		before := sample(procs)
		busy0 := machineBusy()
		r, err := run()
		if err != nil {
			return r, err
		}
		after := sample(procs)
		busy1 := machineBusy()
		r.print(name, false)
		var ours float64
		for i, p := range procs {
			cores := (after[i].cpu - before[i].cpu).Seconds() / r.elapsed.Seconds()
			ours += cores
			fmt.Printf("  %-22s CPU %.2f cores  RSS %6.1f MiB\n", p.name, cores, mib(after[i].rss))
		}
		fmt.Printf("  everything else        CPU %.2f cores\n", max(0, (busy1-busy0).Seconds()/r.elapsed.Seconds()-ours))
		return r, nil
	}

	if o.cpuprof != "" {
		for _, f := range fronts {
			if err := f.profile(); err != nil {
				return err
			}
		}
	}
	rawBefore, err := measure("raw etcd lease keep-alives", func() (result, error) { return raw.phase(o.duration) })
	if err != nil {
		return err
	}
	hb, err := measure("heartbeats through the frontends", func() (result, error) {
		if o.cpuprof != "" {
			// The members' own profiles of this phase (etcd --enable-pprof).
			for i, ep := range endpoints {
				go fetchProfile(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", ep, int(o.duration/time.Second)-1), fmt.Sprintf("%s.etcd%d", o.cpuprof, i))
			}
		}
		return phase(workers, o.duration, 0)
	})
	if err != nil {
		return err
	}
	rawAfter, err := measure("raw etcd lease keep-alives, again", func() (result, error) { return raw.phase(o.duration) })
	if err != nil {
		return err
	}
	rawRate := (rate(rawBefore) + rate(rawAfter)) / 2
	half := int(rawRate / 2)
	fixed, err := measure(fmt.Sprintf("heartbeats through the frontends at a fixed %d/s (half the raw keep-alive rate)", half), func() (result, error) {
		return phase(workers, o.duration, half)
	})
	if err != nil {
		return err
	}
	fmt.Printf("  latency, scheduled to reply:   %s (the generator's schedule slipped up to %s)\n", percentiles(fixed.lat), fixed.behind.Round(time.Microsecond))
	fmt.Printf("heartbeats through the frontends: %.0f/s at saturation = %.0f %% of raw keep-alives (%.0f/s, mean of the two raw phases); %.0f/s held at the fixed rate of half\n",
		rate(hb), 100*rate(hb)/rawRate, rawRate, rate(fixed))

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
	return nil
}

// fetchProfile saves the profile at url to path, or says why not.
func fetchProfile(url, path string) {
	resp, err := http.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "registryload: etcd profile:", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "registryload: etcd profile:", err)
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}

// createSessionsRetrying is createSessions for a cluster, where a create
// answered 503 (writers of one tenant on several frontends kept colliding
// within the deadline, or etcd was slow) is sent again, as a client does.
// It reports how many were.
func createSessionsRetrying(workers []*worker, sessions []sess, timeout int) error {
	var wg sync.WaitGroup
	errs := make([]error, len(workers))
	var retried atomic.Int64
	for wi, w := range workers {
		wg.Go(func() {
			for i := wi; i < len(sessions); i += len(workers) {
				for attempt := 0; ; attempt++ {
					err := w.create(&sessions[i], timeout)
					if err == nil {
						break
					}
					if attempt == 5 || !strings.Contains(err.Error(), "status 503") {
						errs[wi] = err
						return
					}
					retried.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := retried.Load(); n > 0 {
		fmt.Printf("(%d creates answered 503 and were sent again)\n", n)
	}
	return errors.Join(errs...)
}

func rate(r result) float64 { return float64(r.count) / r.elapsed.Seconds() }

type member struct{ cmd *exec.Cmd }

// startEtcd starts n etcd members on loopback ports under dir and waits
// until the cluster answers.
func startEtcd(bin, dir string, n int) ([]member, []string, error) {
	ports := make([]int, 2*n)
	var ls []net.Listener
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range ls {
		l.Close()
	}
	var initial, endpoints []string
	for i := range n {
		initial = append(initial, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, ports[2*i+1]))
		endpoints = append(endpoints, fmt.Sprintf("127.0.0.1:%d", ports[2*i]))
	}
	var members []member
	for i := range n {
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i])
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])
		cmd := exec.Command(bin,
			"--name", fmt.Sprintf("m%d", i),
			"--data-dir", filepath.Join(dir, fmt.Sprintf("m%d", i)),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-token", "registryload", "--initial-cluster-state", "new",
			"--logger", "zap", "--log-level", "error", "--enable-pprof")
		log, err := os.Create(filepath.Join(dir, fmt.Sprintf("m%d.log", i)))
		if err != nil {
			return members, nil, err
		}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			return members, nil, fmt.Errorf("start %s: %w", bin, err)
		}
		members = append(members, member{cmd: cmd})
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return members, nil, err
	}
	defer cli.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Put(ctx, "/bench-ready", "1")
		cancel()
		if err == nil {
			return members, endpoints, nil
		}
		if time.Now().After(deadline) {
			return members, nil, fmt.Errorf("etcd cluster not ready in 30 s: %w (logs in %s)", err, dir)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rawKeepAlive renews leases straight over etcd's LeaseKeepAlive API.
type rawKeepAlive struct {
	clis    []*clientv3.Client
	streams []pb.Lease_LeaseKeepAliveClient
	leases  []int64
	cancel  context.CancelFunc
}

// newRawKeepAlive grants n leases and opens conns streams over three
// client connections (as three frontends would have).
func newRawKeepAlive(ctx context.Context, endpoints []string, conns, n int) (*rawKeepAlive, error) {
	ctx, cancel := context.WithCancel(ctx)
	r := &rawKeepAlive{cancel: cancel}
	for range 3 {
		cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			r.close()
			return nil, err
		}
		r.clis = append(r.clis, cli)
	}
	r.leases = make([]int64, n)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 64 {
		wg.Go(func() {
			for i := w; i < n; i += 64 {
				l, err := r.clis[i%3].Grant(ctx, 60)
				if err != nil {
					errs <- err
					return
				}
				r.leases[i] = int64(l.ID)
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		r.close()
		return nil, fmt.Errorf("grant leases: %w", err)
	}
	for i := range conns {
		st, err := pb.NewLeaseClient(r.clis[i%3].ActiveConnection()).LeaseKeepAlive(ctx)
		if err != nil {
			r.close()
			return nil, err
		}
		r.streams = append(r.streams, st)
	}
	return r, nil
}

// putProbe reports the latency of etcd writes, one at a time and 64 at a
// time: what a heartbeat's compare-and-swap costs at least.
func (r *rawKeepAlive) putProbe(ctx context.Context) error {
	for _, conc := range []int{1, 64} {
		const per = 50
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		errs := make(chan error, conc)
		start := time.Now()
		for g := range conc {
			wg.Go(func() {
				for i := range per {
					t0 := time.Now()
					if _, err := r.clis[g%3].Put(ctx, fmt.Sprintf("/bench-probe/%d/%d", g, i), "v"); err != nil {
						errs <- err
						return
					}
					mu.Lock()
					lat = append(lat, time.Since(t0))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return err
		}
		fmt.Printf("raw etcd puts, %d at a time: %.0f/s, %s\n", conc, float64(len(lat))/time.Since(start).Seconds(), percentiles(lat))
	}
	return nil
}

func (r *rawKeepAlive) close() {
	r.cancel()
	for _, c := range r.clis {
		c.Close()
	}
}

// phase renews as fast as each stream allows for d.
func (r *rawKeepAlive) phase(d time.Duration) (result, error) {
	var wg sync.WaitGroup
	lats := make([][]time.Duration, len(r.streams))
	errs := make([]error, len(r.streams))
	start := time.Now()
	end := start.Add(d)
	for si, st := range r.streams {
		wg.Go(func() {
			for k := si; time.Now().Before(end); k += len(r.streams) {
				id := r.leases[k%len(r.leases)]
				sent := time.Now()
				if err := st.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
					errs[si] = err
					return
				}
				resp, err := st.Recv()
				if err != nil {
					errs[si] = err
					return
				}
				if resp.TTL <= 0 {
					errs[si] = fmt.Errorf("lease %x not found", id)
					return
				}
				lats[si] = append(lats[si], time.Since(sent))
			}
		})
	}
	wg.Wait()
	res := result{elapsed: time.Since(start)}
	for i := range r.streams {
		if errs[i] != nil {
			return res, errs[i]
		}
		res.count += len(lats[i])
		res.svc = append(res.svc, lats[i]...)
	}
	return res, nil
}

type proc struct {
	name string
	pid  int
}

type procSample struct {
	cpu time.Duration
	rss uint64
}

// sample reads each process's CPU time and resident memory from /proc.
func sample(ps []proc) []procSample {
	out := make([]procSample, len(ps))
	for i, p := range ps {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid)); err == nil {
			// Fields after the command name in parentheses: utime is the
			// 14th field of the line, stime the 15th.
			s := string(b)
			f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
			if len(f) > 12 {
				ut, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				out[i].cpu = time.Duration(ut+st) * time.Second / 100
			}
		}
		if f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.pid)); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
					kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
					out[i].rss = kb << 10
				}
			}
			f.Close()
		}
	}
	return out
}
