package benchmarks

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/internal/rsplibtest"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/registrar"
)

// concurrency is the number of concurrent pool users or pool elements.
const concurrency = 64

// depths are the numbers of requests each client keeps outstanding: one,
// as a pool user waiting for each answer, and many, as a busy proxy or
// gateway pipelining its requests, which lets a registrar answer several
// with one system call.
var depths = []int{1, 16}

// keepAliveInterval is both registrars' keep-alive interval: long, so that
// the benchmarks measure the requests, not the upkeep of the populated
// pools.
const keepAliveInterval = 10 * time.Minute

// unlimited turns a registrar's rate limits off: the benchmarks measure
// what it can do (rsplib's registrar has no such limits), from a few
// connections on one address.
const unlimited = -1

// EnvRegistrarBinary names the environment variable that points the
// benchmarks at a built cmd/rspregistrar. With it, rsp's registrar runs in
// a process of its own, as rsplib's does, so that the load generator does
// not share its process and each registrar's CPU time can be read.
const EnvRegistrarBinary = "RSP_BENCH_REGISTRAR"

func startRSPRegistrar(b *testing.B, network, addr string) Target {
	b.Helper()
	if bin := os.Getenv(EnvRegistrarBinary); bin != "" {
		if addr == "127.0.0.1:0" && network == "tcp" {
			addr = testutil.FreeAddr(b) // a port for the registrar
		}
		p := rsplibtest.StartProcess(b, nil, bin, "-listen", network+":"+addr,
			"-keepalive-interval", keepAliveInterval.String(), "-max-pes-per-pool", "1048576", "-log-level", "info",
			"-max-hr-rate", "-1", "-max-eu-rate", "-1", "-max-conns", "-1", "-max-conns-per-addr", "-1")
		deadline := time.After(20 * time.Second)
		for !strings.Contains(p.Out.String(), "serving ASAP") {
			select {
			case <-p.Exited:
				b.Fatalf("rsp's registrar ended: %v\n%s", p.Err, p.Out.String())
			case <-deadline:
				b.Fatalf("rsp's registrar does not serve at %s:\n%s", addr, p.Out.String())
			case <-time.After(50 * time.Millisecond):
			}
		}
		return Target{Name: "rsp", Network: network, Addr: addr, PID: p.Pid}
	}
	r := registrar.New(registrar.Config{
		KeepAliveInterval: keepAliveInterval, MaxPEsPerPool: 1 << 20,
		HandleResolutionRate: unlimited, UnreachableRate: unlimited, MaxConns: -1, MaxConnsPerAddr: -1,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	l, err := registrar.Listen(context.Background(), network, addr)
	if err != nil {
		b.Fatal(err)
	}
	go r.Serve(l)
	b.Cleanup(func() { r.Close() })
	return Target{Name: "rsp", Network: network, Addr: l.Addr().String()}
}

// benchTargets are the registrars measured in this run: where the kernel
// has SCTP and rsplib is installed (inside User-mode Linux), rsp's and
// rsplib's registrars over SCTP, the same workload on the same kernel;
// elsewhere rsp's over TCP on loopback.
func benchTargets(b *testing.B) []Target {
	if ok, _ := rsplibtest.Available(); ok {
		pid := rsplibtest.StartRegistrar(b, 3893, 9911,
			fmt.Sprintf("-endpointkeepalivetransmissioninterval=%d", keepAliveInterval.Milliseconds()),
			fmt.Sprintf("-maxhresitems=%d", registrar.DefaultHandleResolutionItems))
		return []Target{
			startRSPRegistrar(b, "sctp", rsplibtest.HostAddr+":3883"),
			{Name: "rsplib", Network: "sctp", Addr: rsplibtest.HostAddr + ":3893", PID: pid},
		}
	}
	return []Target{startRSPRegistrar(b, "tcp", "127.0.0.1:0")}
}

// cpuMeter reads the CPU time a registrar process and the load generator
// (this process) spend.
type cpuMeter struct {
	pid            int
	start, loadgen time.Duration
}

func startCPU(pid int) cpuMeter { return cpuMeter{pid, cpuTime(pid), cpuTime(os.Getpid())} }

// report adds the registrar's and the load generator's CPU time per
// operation to b's results, when the registrar runs in a process of its
// own.
func (m cpuMeter) report(b *testing.B) {
	if m.pid == 0 {
		return
	}
	b.ReportMetric(float64((cpuTime(m.pid)-m.start).Microseconds())/float64(b.N), "registrar-cpu-µs/op")
	b.ReportMetric(float64((cpuTime(os.Getpid())-m.loadgen).Microseconds())/float64(b.N), "loadgen-cpu-µs/op")
}

// cpuTime returns the user and system time process pid has used, from
// /proc (in clock ticks of 10 ms).
func cpuTime(pid int) time.Duration {
	f := procStat(pid)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// minorFaults returns how many minor page faults (first touches of
// memory) process pid has taken, from /proc: in User-mode Linux each costs
// about as much as a system call.
func minorFaults(pid int) int64 {
	f := procStat(pid)
	if len(f) < 8 {
		return 0
	}
	n, _ := strconv.ParseInt(f[7], 10, 64)
	return n
}

// procStat returns the fields of /proc/PID/stat after the command name
// (which is in parentheses), or nil.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	return strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
}

func BenchmarkHandleResolution(b *testing.B) {
	for _, t := range benchTargets(b) {
		for _, size := range []int{10, 10000} {
			h := asap.PoolHandle(fmt.Sprintf("hr-%d", size))
			closeFn, err := Populate(context.Background(), t, h, size, hostAddr(t), kindFor(t))
			if err != nil {
				b.Fatal(err)
			}
			for _, depth := range depths {
				b.Run(fmt.Sprintf("registrar=%s/pool=%d/depth=%d", t.Name, size, depth), func(b *testing.B) {
					clients := dialClients(b, t)
					cpu := startCPU(t.PID)
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
					cpu.report(b)
				})
			}
			closeFn()
		}
	}
}

var nextID atomic.Uint32

func BenchmarkRegistration(b *testing.B) {
	for _, t := range benchTargets(b) {
		for _, size := range []int{10, 10000} {
			h := asap.PoolHandle(fmt.Sprintf("reg-%d", size))
			closeFn, err := Populate(context.Background(), t, h, size, hostAddr(t), kindFor(t))
			if err != nil {
				b.Fatal(err)
			}
			for _, depth := range depths {
				b.Run(fmt.Sprintf("registrar=%s/pool=%d/depth=%d", t.Name, size, depth), func(b *testing.B) {
					// Each request registers a new element; they are
					// removed when the benchmark's connections close.
					base := nextID.Add(uint32(b.N)+1) - uint32(b.N)
					clients := dialClients(b, t)
					cpu := startCPU(t.PID)
					bad, err := Run(clients, b.N, depth,
						func(i int) asap.Message {
							return &asap.Registration{Handle: h, PE: pe(asap.PEID(0x40000000+base+uint32(i)), hostAddr(t), 2000, kindFor(t))}
						},
						func(m asap.Message) bool {
							r, ok := m.(*asap.RegistrationResponse)
							return ok && !r.Reject
						})
					if err != nil {
						b.Fatal(err)
					}
					if bad > 0 {
						b.Fatalf("%d of %d registrations refused", bad, b.N)
					}
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "registrations/s")
					cpu.report(b)
				})
			}
			closeFn()
		}
	}
}

// dialClients opens the benchmark's connections to t, closed when the
// benchmark ends, and restarts the timer.
func dialClients(b *testing.B, t Target) []*Client {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	clients, err := Dial(ctx, t, concurrency)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	return clients
}

// hostAddr is the address pool elements register: loopback over TCP, the
// test host's site-local address where rsplib (which refuses loopback) is
// measured.
func hostAddr(t Target) netip.Addr {
	if t.Network == "sctp" {
		return sctpHostAddr
	}
	return netip.MustParseAddr("127.0.0.1")
}

func kindFor(t Target) asap.ParamType {
	if t.Network == "sctp" {
		return asap.ParamSCTPTransport
	}
	return asap.ParamTCPTransport
}

var sctpHostAddr = netip.MustParseAddr("172.31.255.1")
