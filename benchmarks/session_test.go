package benchmarks

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/xtaci/smux"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/registrar"
)

// The session benchmarks compare an rsp session with its peers in the same
// run: raw TCP (what a session rides on), and the multiplexers
// hashicorp/yamux and xtaci/smux (a stream over one TCP connection, as a
// session is a message stream over one). Sub-benchmark names put the peer
// in a column of its own, for benchstat -col /peer.

// sessionRegistrar runs a registrar that never drops an element for
// unreachable reports (the failover benchmarks kill elements on purpose).
func sessionRegistrar(b *testing.B) []string {
	_, reg := testutil.StartRegistrar(b, registrar.Config{MaxBadPEReports: 1 << 30})
	return []string{reg}
}

// sessionListener starts a pooled session listener in pool.
func sessionListener(b *testing.B, regs []string, pool string, cfg rsp.SessionConfig) *rsp.Listener {
	b.Helper()
	ep := endpoint.New(endpoint.Config{Registrars: regs, CacheLifetime: -1})
	b.Cleanup(func() { ep.Close() })
	lc := rsp.ListenConfig{Endpoint: ep, LocalAddr: "127.0.0.1:0", Session: cfg}
	l, err := lc.Listen(context.Background(), "tcp", "pool:"+pool)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}

// pair returns the two ends of a connection of the peer's kind.
func pair(b *testing.B, peer string) (client, server net.Conn) {
	b.Helper()
	if peer == "rsp" {
		regs := sessionRegistrar(b)
		l := sessionListener(b, regs, "bench", rsp.SessionConfig{})
		d := rsp.Dialer{Endpoint: endpoint.New(endpoint.Config{Registrars: regs})}
		b.Cleanup(func() { d.Endpoint.Close() })
		acc := make(chan net.Conn, 1)
		go func() { c, _ := l.Accept(); acc <- c }()
		c, err := d.DialContext(context.Background(), "tcp", "pool:bench")
		if err != nil {
			b.Fatal(err)
		}
		s := <-acc
		if _, ok := c.(*rsp.Session); !ok {
			b.Fatalf("dialed %T", c)
		}
		b.Cleanup(func() { c.Close(); s.Close() })
		return c, s
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	acc := make(chan net.Conn, 1)
	go func() { c, _ := l.Accept(); acc <- c }()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	s := <-acc
	b.Cleanup(func() { c.Close(); s.Close() })
	switch peer {
	case "tcp":
		return c, s
	case "yamux":
		cs, err := yamux.Client(c, nil)
		if err != nil {
			b.Fatal(err)
		}
		ss, err := yamux.Server(s, nil)
		if err != nil {
			b.Fatal(err)
		}
		return muxPair(b, func() (net.Conn, error) { return cs.Open() }, func() (net.Conn, error) { return ss.Accept() })
	case "smux":
		cs, err := smux.Client(c, nil)
		if err != nil {
			b.Fatal(err)
		}
		ss, err := smux.Server(s, nil)
		if err != nil {
			b.Fatal(err)
		}
		return muxPair(b, func() (net.Conn, error) { return cs.OpenStream() }, func() (net.Conn, error) { return ss.AcceptStream() })
	}
	b.Fatalf("unknown peer %q", peer)
	return nil, nil
}

func muxPair(b *testing.B, open, accept func() (net.Conn, error)) (net.Conn, net.Conn) {
	acc := make(chan net.Conn, 1)
	go func() { c, _ := accept(); acc <- c }()
	c, err := open()
	if err != nil {
		b.Fatal(err)
	}
	// A stream is announced with its first data.
	if _, err := c.Write([]byte{0}); err != nil {
		b.Fatal(err)
	}
	s := <-acc
	if _, err := io.ReadFull(s, make([]byte, 1)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// byteCounter counts the bytes read from a connection.
type byteCounter struct {
	mu      sync.Mutex
	n       int64
	want    int64
	reached chan struct{} // closed once n reaches want
}

// counter reads from c and counts the bytes until c ends.
func counter(c net.Conn, size int) *byteCounter {
	bc := &byteCounter{}
	go func() {
		buf := make([]byte, size)
		for {
			k, err := c.Read(buf)
			bc.add(int64(k))
			if err != nil {
				return
			}
		}
	}()
	return bc
}

func (bc *byteCounter) add(k int64) {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	bc.n += k
	if bc.reached != nil && bc.n >= bc.want {
		close(bc.reached)
		bc.reached = nil
	}
}

// waitCount waits until want bytes were read. It blocks rather than
// spins: on one CPU (User-mode Linux) a goroutine that yields in a loop
// keeps the runtime from polling the network but every 10 ms, and so
// slows the very transfer it waits for.
func waitCount(b *testing.B, bc *byteCounter, want int64) {
	bc.mu.Lock()
	if bc.n >= want {
		bc.mu.Unlock()
		return
	}
	ch := make(chan struct{})
	bc.want, bc.reached = want, ch
	bc.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		bc.mu.Lock()
		defer bc.mu.Unlock()
		b.Fatalf("received %d of %d bytes", bc.n, want)
	}
}

// BenchmarkBulk: one way bulk transfer in 32 KiB writes, until the reader
// has everything.
func BenchmarkBulk(b *testing.B) {
	benchBulk(b, pair, "tcp", "rsp", "yamux", "smux")
}

// BenchmarkMessages64: a stream of 64-byte messages, one Write each: raw
// TCP writing them one by one, and sessions, without and with an ack
// request on every message (then the benchmark waits for the last one's
// acknowledgement).
func BenchmarkMessages64(b *testing.B) {
	benchMessages64(b, pair, "tcp", "rsp")
}

// benchBulk runs the bulk benchmark over the pairs that dial makes for
// each peer.
func benchBulk(b *testing.B, dial func(*testing.B, string) (net.Conn, net.Conn), peers ...string) {
	const chunk = 32 << 10
	for _, peer := range peers {
		b.Run("peer="+peer, func(b *testing.B) {
			c, s := dial(b, peer)
			n := counter(s, 64<<10)
			buf := make([]byte, chunk)
			b.SetBytes(chunk)
			b.ResetTimer()
			cpu, faults := cpuTime(os.Getpid()), minorFaults(os.Getpid())
			for b.Loop() {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			waitCount(b, n, int64(b.N)*chunk)
			reportCPU(b, cpu)
			b.ReportMetric(float64(minorFaults(os.Getpid())-faults)/float64(b.N), "faults/op")
		})
	}
}

// benchMessages64 runs the 64-byte message benchmark over the pairs that
// dial makes for the plain peer and the session peer, and once more over
// the session peer with an ack request on every message.
func benchMessages64(b *testing.B, dial func(*testing.B, string) (net.Conn, net.Conn), plain, session string) {
	msg := make([]byte, 64)
	ackPeer := session + "-ackrequest"
	for _, peer := range []string{plain, session, ackPeer} {
		b.Run("peer="+peer, func(b *testing.B) {
			kind := peer
			if peer == ackPeer {
				kind = session
			}
			c, s := dial(b, kind)
			n := counter(s, 64<<10)
			b.SetBytes(64)
			b.ResetTimer()
			var last uint64
			for b.Loop() {
				var err error
				if peer == ackPeer {
					last, err = c.(*rsp.Session).WriteMsg(msg, rsp.WriteOptions{AckRequest: true})
				} else {
					_, err = c.Write(msg)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			waitCount(b, n, int64(b.N)*64)
			if last > 0 {
				if err := c.(*rsp.Session).WaitAcked(context.Background(), last); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRoundTrip: a 64-byte request and its echo.
func BenchmarkRoundTrip(b *testing.B) {
	for _, peer := range []string{"tcp", "rsp"} {
		b.Run("peer="+peer, func(b *testing.B) {
			c, s := pair(b, peer)
			go func() {
				buf := make([]byte, 64)
				for {
					if _, err := io.ReadFull(s, buf); err != nil {
						return
					}
					if _, err := s.Write(buf); err != nil {
						return
					}
				}
			}()
			buf := make([]byte, 64)
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// envIdleServer makes the benchmark binary serve idle connections for
// BenchmarkIdleMemory: rsp sessions in pool "idle" of the registrar it
// names, and plain TCP; it prints the plain listener's address.
const envIdleServer = "RSP_BENCH_IDLE_SERVER"

// envSCTPEcho makes the benchmark binary an rsp session echo element
// over SCTP, "registrar,pool", for BenchmarkSCTPFailover to kill;
// serveSCTPEcho serves it where the system has SCTP.
const envSCTPEcho = "RSP_BENCH_SCTP_ECHO"

var serveSCTPEcho func(spec string)

func TestMain(m *testing.M) {
	if reg := os.Getenv(envIdleServer); reg != "" {
		serveIdle(reg)
		return
	}
	if spec := os.Getenv(envSCTPEcho); spec != "" && serveSCTPEcho != nil {
		serveSCTPEcho(spec)
		return
	}
	os.Exit(m.Run())
}

func serveIdle(reg string) {
	ep := endpoint.New(endpoint.Config{Registrars: []string{reg}})
	lc := rsp.ListenConfig{Endpoint: ep, LocalAddr: "127.0.0.1:0", Capacity: 1 << 20, Session: idleSessions}
	sl, err := lc.Listen(context.Background(), "tcp", "pool:idle")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Exit(1)
	}
	fmt.Println(tl.Addr())
	for _, l := range []net.Listener{sl, tl} {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					io.Copy(io.Discard, c)
					c.Close()
				}()
			}
		}()
	}
	select {}
}

// idleSessions are the idle benchmark's sessions: heartbeats every 10 s,
// so that 10^4 of them on two cores stay idle.
var idleSessions = rsp.SessionConfig{HeartbeatInterval: 10 * time.Second}

// BenchmarkIdleMemory: the pool user's memory (heap and goroutine stacks)
// per idle connection with 10^4 of them open, sessions against plain TCP
// connections. The servers run in a process of their own.
func BenchmarkIdleMemory(b *testing.B) {
	skipInUML(b)
	n := 10000
	if s := os.Getenv("RSP_BENCH_IDLE_N"); s != "" {
		fmt.Sscan(s, &n)
	}
	regs := sessionRegistrar(b)
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envIdleServer+"="+regs[0])
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	tcpAddr := line[:len(line)-1]
	for _, peer := range []string{"tcp", "rsp"} {
		b.Run("peer="+peer, func(b *testing.B) {
			ep := endpoint.New(endpoint.Config{Registrars: regs, CacheLifetime: time.Hour})
			defer ep.Close()
			d := rsp.Dialer{Endpoint: ep, Session: idleSessions}
			for b.Loop() {
				before := memInUse()
				conns := make([]net.Conn, 0, n)
				for range n {
					var c net.Conn
					var err error
					if peer == "rsp" {
						c, err = d.DialContext(context.Background(), "tcp", "pool:idle")
					} else {
						c, err = net.Dial("tcp", tcpAddr)
					}
					if err != nil {
						b.Fatal(err)
					}
					conns = append(conns, c)
				}
				time.Sleep(100 * time.Millisecond)
				after := memInUse()
				b.ReportMetric(float64(after-before)/float64(n), "B/conn")
				for _, c := range conns {
					c.Close()
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}

// skipInUML skips a benchmark of sessions over TCP that is sized for the
// host (10^4 connections, failovers timed by heartbeats) inside User-mode
// Linux, where .ci/uml/test-sctp runs the SCTP benchmarks with large
// iteration counts.
func skipInUML(b *testing.B) {
	if os.Getenv("RSP_IN_UML") != "" {
		b.Skip("sized for the host: run it there")
	}
}

func memInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

// BenchmarkFailover: from the failure of a session's element to the first
// replayed message delivered by the next element, p50 and p99, for an
// element whose connections are reset and for a silent one (black-holed:
// noticed by heartbeats, here every 50 ms). Run it with -benchtime=Nx:
// each iteration is one failover.
func BenchmarkFailover(b *testing.B) {
	skipInUML(b)
	const hb = 50 * time.Millisecond
	for _, kind := range []string{"reset", "silent"} {
		b.Run("failure="+kind, func(b *testing.B) {
			regs := sessionRegistrar(b)
			first := make(chan struct{}, 16)
			replayed := make(chan time.Time, 16)
			proxies := map[uint32]*testutil.Proxy{}
			for range 2 {
				p := testutil.StartProxy(b, "") // told the listener's port below
				ep := endpoint.New(endpoint.Config{Registrars: regs, CacheLifetime: -1})
				b.Cleanup(func() { ep.Close() })
				lc := rsp.ListenConfig{Endpoint: ep, LocalAddr: "127.0.0.1:0", AdvertiseAddr: p.Addr(),
					Session: rsp.SessionConfig{Stateless: true, HeartbeatInterval: hb, ManualAck: true}}
				l, err := lc.Listen(context.Background(), "tcp", "pool:fo")
				if err != nil {
					b.Fatal(err)
				}
				p.SetTarget(l.Addr().String())
				b.Cleanup(func() { l.Close() })
				proxies[uint32(l.ID())] = p
				testutil.ServeEach(l.Accept, func(c net.Conn) {
					s := c.(*rsp.Session)
					for {
						if _, err := s.ReadMsg(); err != nil {
							return
						}
						if s.Resumed() {
							replayed <- time.Now()
						} else {
							first <- struct{}{}
						}
					}
				})
			}
			ep := endpoint.New(endpoint.Config{Registrars: regs, CacheLifetime: -1})
			defer ep.Close()
			d := rsp.Dialer{Endpoint: ep, Timeout: time.Second, Session: rsp.SessionConfig{HeartbeatInterval: hb}}
			var samples []time.Duration
			for b.Loop() {
				c, err := d.DialContext(context.Background(), "tcp", "pool:fo")
				if err != nil {
					b.Fatal(err)
				}
				s := c.(*rsp.Session)
				if _, err := s.Write([]byte("m")); err != nil {
					b.Fatal(err)
				}
				<-first
				p := proxies[uint32(s.Element().ID)]
				start := time.Now()
				if kind == "reset" {
					p.Reset()
				} else {
					p.BlackHole()
				}
				select {
				case t := <-replayed:
					samples = append(samples, t.Sub(start))
				case <-time.After(10 * time.Second):
					b.Fatal("no replayed message")
				}
				s.Close()
				if kind == "silent" {
					p.Restore()
				}
			}
			slices.Sort(samples)
			pct := func(q float64) float64 {
				return float64(samples[min(len(samples)-1, int(q*float64(len(samples))))]) / float64(time.Millisecond)
			}
			b.ReportMetric(pct(0.5), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
