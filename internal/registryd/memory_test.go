package registryd

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sr-wrapper/sr-wrapper/internal/registrytest"
	"github.com/sr-wrapper/sr-wrapper/internal/testsupport"
	"github.com/sr-wrapper/sr-wrapper/internal/tlstest"
)

// BenchmarkIdleConnMemory measures what an idle keep-alive connection
// costs the sr-registry binary, plain and over TLS: the growth of its Go
// heap and stacks (and of its RSS) from 1,000 connections that each made
// one request and then stay open. The server runs with GOGC=1 so that its
// heap in use is close to what is live. Run it once:
//
//	go test -run '^$' -bench IdleConnMemory -benchtime 1x ./internal/registryd
func BenchmarkIdleConnMemory(b *testing.B) {
	const conns = 1000
	bin := registrytest.BuildBinary(b, registrytest.RegistryPackage)
	b.Setenv("GOGC", "1")
	for _, withTLS := range []bool{false, true} {
		name := "plain"
		if withTLS {
			name = "tls"
		}
		b.Run(name, func(b *testing.B) {
			var args []string
			var tc *tls.Config
			if withTLS {
				ca := tlstest.NewCA(b)
				certFile, keyFile := ca.Issue(b, tlstest.Server("127.0.0.1")).Files(b)
				args = []string{"--tls-cert", certFile, "--tls-key", keyFile}
				tc = &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
			}
			p := registrytest.StartProcess(b, bin, append(args, "--metrics-listen", "127.0.0.1:0")...)
			scrape := metricsScraper(b, p, tc)
			dial := func() net.Conn {
				c, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				if tc != nil {
					return tls.Client(c, tc.Clone())
				}
				return c
			}
			for range b.N {
				warm := dial()
				oneRequest(b, warm, p.Addr)
				warm.Close()
				testsupport.EventuallyTrue(b, 10*time.Second, "the server to see the warm-up connection closed", func() bool {
					return scrape()["sr_registry_connections"] == 0
				})
				before := scrape()
				open := make([]net.Conn, 0, conns)
				for range conns {
					c := dial()
					oneRequest(b, c, p.Addr)
					open = append(open, c)
				}
				time.Sleep(time.Second)
				after := scrape()
				for _, c := range open {
					c.Close()
				}
				per := func(m string) float64 { return (after[m] - before[m]) / conns }
				b.ReportMetric(per("go_memstats_heap_inuse_bytes")+per("go_memstats_stack_inuse_bytes"), "heap+stack-B/conn")
				b.ReportMetric(per("go_memstats_heap_inuse_bytes"), "heap-B/conn")
				b.ReportMetric(per("go_memstats_stack_inuse_bytes"), "stack-B/conn")
				b.ReportMetric(per("process_resident_memory_bytes"), "rss-B/conn")
			}
		})
	}
}

// oneRequest makes a keep-alive GET /healthz on c and reads the reply.
func oneRequest(b *testing.B, c net.Conn, host string) {
	b.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", host); err != nil {
		b.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_ = c.SetDeadline(time.Time{})
}

// metricsScraper returns a function reading the process's memory
// metrics from its metrics listener (found in its "serving metrics" log
// line).
func metricsScraper(b *testing.B, p *registrytest.Process, tc *tls.Config) func() map[string]float64 {
	b.Helper()
	var url string
	for line := range strings.Lines(p.Logs()) {
		var e struct{ Msg, URL string }
		if json.Unmarshal([]byte(line), &e) == nil && e.Msg == "serving metrics" {
			url = e.URL
		}
	}
	if url == "" {
		b.Fatalf("no \"serving metrics\" line in\n%s", p.Logs())
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
	return func() map[string]float64 { return registrytest.Metrics(b, hc, url) }
}
