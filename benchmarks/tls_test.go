package benchmarks

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/internal/testpki"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/registrar"
)

// tlsModes are the two sides of the TLS benchmarks, named so that
// benchstat -col /tls sets them side by side.
var tlsModes = []string{"off", "on"}

// startTLSTarget runs an in-process registrar on loopback TCP, with mutual
// TLS when on, and returns it as a load generator's target.
func startTLSTarget(b *testing.B, ca *testpki.CA, on bool) Target {
	b.Helper()
	cfg := registrar.Config{
		KeepAliveInterval: keepAliveInterval, MaxPEsPerPool: 1 << 20,
		HandleResolutionRate: unlimited, UnreachableRate: unlimited, MaxConns: -1, MaxConnsPerAddr: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	var client *tls.Config
	if on {
		cfg.TLSConfig = testpki.ServerConfig(ca.MustIssue(b, "registrar", "127.0.0.1"), ca.Pool())
		client = testpki.ClientConfig(ca.Pool(), ca.MustIssue(b, "load"))
	}
	r := registrar.New(cfg)
	l, err := r.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go r.Serve(l)
	b.Cleanup(func() { r.Close() })
	return Target{Name: "rsp", Network: "tcp", Addr: l.Addr().String(), TLS: client}
}

// BenchmarkTLSHandleResolution measures handle resolutions per second by 64
// clients of a registrar over TCP, with and without mutual TLS, in the same
// run. The TLS handshakes happen before the timer starts: this is the cost
// of TLS on established connections.
func BenchmarkTLSHandleResolution(b *testing.B) {
	ca := testpki.New(b, "bench CA")
	for _, mode := range tlsModes {
		t := startTLSTarget(b, ca, mode == "on")
		const h = asap.PoolHandle("hr-tls")
		for _, depth := range depths {
			b.Run(fmt.Sprintf("tls=%s/depth=%d", mode, depth), func(b *testing.B) {
				// The pool is populated for each run, so that its
				// elements' connections are fresh.
				stop, err := Populate(context.Background(), t, h, 10, hostAddr(t), kindFor(t))
				if err != nil {
					b.Fatal(err)
				}
				defer stop()
				clients := dialClients(b, t)
				cpu := cpuTime(os.Getpid())
				bad, err := Run(clients, b.N, depth,
					func(int) asap.Message { return &asap.HandleResolution{Handle: h} },
					func(m asap.Message) bool {
						r, ok := m.(*asap.HandleResolutionResponse)
						return ok && len(r.PEs) > 0
					})
				if err != nil {
					b.Fatal(err)
				}
				if bad > 0 {
					b.Fatalf("%d of %d resolutions failed", bad, b.N)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "resolutions/s")
				reportCPU(b, cpu)
			})
		}
	}
}

// BenchmarkTLSBulk measures the throughput of one connection from a pool
// user to a pooled listener (rsp.Listen, rsp.Dialer), with and without
// TLS, in the same run: the client writes b.N chunks of 64 KiB and the
// element reads them to the end.
func BenchmarkTLSBulk(b *testing.B) {
	const chunk = 64 << 10
	ca := testpki.New(b, "bench CA")
	_, regs := testutil.StartRegistrar(b, registrar.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for _, mode := range tlsModes {
		pool := "bulk-" + mode
		// Plain connections both ways: TLS has no sessions, so the
		// work without TLS is a plain TCP connection too.
		lc := rsp.ListenConfig{Registrars: []string{regs}, LocalAddr: "127.0.0.1:0", Plain: true}
		d := rsp.Dialer{Registrars: []string{regs}, Timeout: 5 * time.Second, Plain: true}
		if mode == "on" {
			lc.TLSConfig = testpki.ServerConfig(ca.MustIssue(b, "element", pool), nil)
			d.TLSConfig = testpki.ClientConfig(ca.Pool())
		}
		l, err := lc.Listen(context.Background(), "tcp", "pool:"+pool)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { l.Close() })
		testutil.ServeEach(l.Accept, func(c net.Conn) {
			if _, err := io.Copy(io.Discard, c); err == nil {
				c.Write([]byte{1}) // all read
			}
		})
		b.Run("tls="+mode, func(b *testing.B) {
			c, err := d.DialContext(context.Background(), "tcp", "pool:"+pool)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, chunk)
			b.SetBytes(chunk)
			b.ResetTimer()
			cpu := cpuTime(os.Getpid())
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
				b.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.ReadFull(c, buf[:1]); err != nil {
				b.Fatalf("the element did not read everything: %v", err)
			}
			b.StopTimer()
			reportCPU(b, cpu)
		})
	}
}

// reportCPU adds the CPU time this process (both ends of the TLS
// benchmarks: the registrar or the element, and the clients) used per
// operation since start: a measure less disturbed than the wall clock by
// other programs on a busy machine.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64((cpuTime(os.Getpid())-start).Microseconds())/float64(b.N), "cpu-µs/op")
}
