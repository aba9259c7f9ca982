package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/api"
	"github.com/sr-wrapper/sr-wrapper/internal/registry/etcdconf"
	"github.com/sr-wrapper/sr-wrapper/internal/server"
)

// serverHandle is the server under load, in this process or in a child.
type serverHandle struct {
	addr string
	// heap returns the server's live heap and stacks after two GCs.
	heap func() (uint64, error)
	stop func() error
	// profile starts the child's CPU profile (nil in process).
	profile func() error
	// cpu returns the server process's CPU time so far (0 in process,
	// where it cannot be told apart from the load generator's).
	cpu func() (time.Duration, error)
	// pid is the child's process id (0 in process).
	pid int
}

// heapAfterGC returns the live heap plus goroutine stacks after two
// collections (the second empties the sync.Pools the first only moved
// aside). Stacks count because every connection has a goroutine.
func heapAfterGC() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc + ms.StackInuse
}

// serve starts a dev-mode server on a loopback port, with a temporary
// data dir, or on etcd when storeURL is an etcd:// URL.
func serve(limits api.ResourceLimits, storeURL string) (addr string, stop func() error, err error) {
	dir, err := os.MkdirTemp("", "registryload-")
	if err != nil {
		return "", nil, err
	}
	cfg := server.Config{Dev: true, DataDir: dir, Limits: limits}
	if storeURL != "" {
		ec, err := etcdconf.ParseURLOf("-store", storeURL)
		if err != nil {
			return "", nil, err
		}
		cfg.DataDir, cfg.Etcd = "", &ec
	}
	srv, err := server.New(cfg)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	for storeURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := srv.Ready(ctx)
		cancel()
		if err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond) // etcd connects in the background
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		os.RemoveAll(dir)
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	return l.Addr().String(), func() error {
		cancel()
		err := <-done
		return errors.Join(err, os.RemoveAll(dir))
	}, nil
}

func startInProcess(limits api.ResourceLimits) (serverHandle, error) {
	addr, stop, err := serve(limits, "")
	if err != nil {
		return serverHandle{}, err
	}
	return serverHandle{addr: addr, heap: func() (uint64, error) { return heapAfterGC(), nil }, stop: stop,
		cpu: func() (time.Duration, error) { return 0, nil }}, nil
}

// startChild re-executes this program as the server (-child-server). The
// child prints "addr HOST:PORT", answers each "mem" line on its stdin with
// "mem HEAPALLOC", and shuts down gracefully when its stdin closes.
func startChild(sessionLimit, procs int, cpuprof string) (serverHandle, error) {
	return startChildOn(sessionLimit, procs, cpuprof, "")
}

// startChildOn is startChild with the child's state on etcd at storeURL
// (when not empty). It returns once the child's store is ready.
func startChildOn(sessionLimit, procs int, cpuprof, storeURL string) (serverHandle, error) {
	exe, err := os.Executable()
	if err != nil {
		return serverHandle{}, err
	}
	args := []string{"-child-server", "-child-session-limit", strconv.Itoa(sessionLimit), "-child-store", storeURL}
	if cpuprof != "" {
		args = append(args, "-cpuprofile", cpuprof+".server")
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	if procs != 0 {
		cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(procs))
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return serverHandle{}, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return serverHandle{}, err
	}
	if err := cmd.Start(); err != nil {
		return serverHandle{}, fmt.Errorf("start server child: %w", err)
	}
	out := bufio.NewReader(outPipe)
	line, err := out.ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "addr ")
	if err != nil || !ok {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return serverHandle{}, fmt.Errorf("server child did not report its address: %q %v", line, err)
	}
	// ask sends a question ("mem", "cpu") and returns the value of the
	// child's answer, "<question> <value>".
	ask := func(question string) (string, error) {
		if _, err := io.WriteString(in, question+"\n"); err != nil {
			return "", err
		}
		line, err := out.ReadString('\n')
		v, ok := strings.CutPrefix(strings.TrimSpace(line), question+" ")
		if err != nil || !ok {
			return "", fmt.Errorf("server child %s: %q %v", question, line, err)
		}
		return v, nil
	}
	heap := func() (uint64, error) {
		v, err := ask("mem")
		if err != nil {
			return 0, err
		}
		return strconv.ParseUint(v, 10, 64)
	}
	stop := func() error {
		in.Close()
		return cmd.Wait()
	}
	profile := func() error {
		_, err := io.WriteString(in, "profile\n")
		return err
	}
	cpu := func() (time.Duration, error) {
		v, err := ask("cpu")
		if err != nil {
			return 0, err
		}
		return time.ParseDuration(v)
	}
	return serverHandle{addr: addr, heap: heap, stop: stop, profile: profile, cpu: cpu, pid: cmd.Process.Pid}, nil
}

// runChild is the server child process.
func runChild(o options) error {
	addr, stop, err := serve(api.ResourceLimits{Session: o.childMax}, o.childStore)
	if err != nil {
		return err
	}
	fmt.Printf("addr %s\n", addr)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "mem":
			fmt.Printf("mem %d\n", heapAfterGC())
		case "cpu":
			fmt.Printf("cpu %s\n", selfCPU())
		case "profile":
			// The heartbeat phases start: profile them only.
			if o.cpuprof != "" {
				stopProfile, err := startCPUProfile(o.cpuprof)
				if err != nil {
					return err
				}
				defer stopProfile()
			}
		}
	}
	return stop()
}
