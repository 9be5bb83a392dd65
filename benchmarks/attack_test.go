package benchmarks

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/registrar"
)

// startAttackedRegistrar runs a registrar with the default configuration
// (its default limits are what is tested) and a pool of 20 elements.
func startAttackedRegistrar(tb testing.TB) (*registrar.Registrar, string, *Pool) {
	tb.Helper()
	r, reg := testutil.StartRegistrar(tb, registrar.Config{})
	addr := strings.TrimPrefix(reg, "tcp:")
	p, err := RegisterPool(context.Background(), addr, "svc", 20)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Close)
	return r, addr, p
}

// runAttack starts IssueAttack on the registrar and returns a function
// that ends it and waits for its goroutines.
func runAttack(tb testing.TB, addr string, p *Pool) func() {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	wait, err := IssueAttack.Start(ctx, addr, p)
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	stop := func() { cancel(); wait() }
	tb.Cleanup(stop)
	return stop
}

// TestWellBehavedUserUnderAttack is the registrar's load check: under a
// flood of resolutions, trickling senders, 1000 idle connections and a peer
// reporting every element unreachable, a pool user that resolves 200 times
// a second gets 99 % of its answers within 10 ms on loopback, and no live
// element is removed. It takes about three seconds.
//
// What the 10 ms measure: the registrar, the attack and the pool user share
// one process and, in CI, two loaded cores with other tests. The attack's
// CPU is bounded by the registrar itself (it reads a flooding connection
// no faster than its rate limits allow, so the flooders wait in their own
// sockets), so what remains is the machine: on a load average of 10 a
// process is now and then not scheduled for tens of milliseconds, and then
// every round trip of that moment is late, whatever it asks for. Raising
// GOMAXPROCS to 8 did not change that (p99s of 40–90 ms at a load average
// of 10), and an echo in the same process, measured at the same time, is
// late in the same windows (p99s of 20–70 ms where the resolutions' were
// 40–120 ms, under 3 ms where theirs were under 6 ms): the stalls are the
// host's.
//
// So each measurement window runs, beside the pool user and at its pace, a
// peer measured in the same run: round trips to an echo over the same
// loopback TCP mapping in the same process. A window in which even the
// echo's p99 exceeds half the bound measured the host, not the registrar,
// and is measured again (at most four windows). The bound holds,
// unchanged, when a window in which the echo answered in time has the
// resolutions' p99 within it; one such window over the bound is measured
// again too, since a stall of the host that the echo's samples happened to
// miss (echo p99 4 ms, resolutions' 11 ms at a load average of 10) lands
// there as well, but an attack that really slows the registrar slows every
// window: the test fails when every window with the echo in time is over
// the bound. If no window has the echo in time, it is skipped with the
// numbers. The price: a
// registrar that burnt both cores under the attack would slow the echo
// too and be skipped rather than failed; its rate limits, which keep the
// flood in the flooders' sockets, are tested in the registrar package.
func TestWellBehavedUserUnderAttack(t *testing.T) {
	if os.Getenv("RSP_IN_UML") != "" {
		t.Skip("latency bounds hold on the host's loopback, not inside User-mode Linux")
	}
	const bound = 10 * time.Millisecond
	r, addr, p := startAttackedRegistrar(t)
	echo := startEcho(t)
	stop := runAttack(t, addr, p)
	testutil.WaitFor(t, 10*time.Second, "the idle connections to be served", func() bool { return r.Conns() >= IssueAttack.Idle })
	time.Sleep(200 * time.Millisecond) // the flood and the reports under way
	var lat []time.Duration
	var over []string // the calm windows over the bound
	for window := 1; ; window++ {
		var err error
		var base []time.Duration
		baseDone := make(chan error, 1)
		go func() {
			var err error
			base, err = echoLatencies(echo, 500, 5*time.Millisecond)
			baseDone <- err
		}()
		lat, err = ResolutionLatencies(context.Background(), addr, p.Handle, 500, 5*time.Millisecond)
		if err != nil {
			t.Fatalf("well-behaved pool user: %v (after %d resolutions)", err, len(lat))
		}
		if err := <-baseDone; err != nil {
			t.Fatalf("echo beside the pool user: %v", err)
		}
		p99, b99 := Quantile(lat, 0.99), Quantile(base, 0.99)
		t.Logf("window %d: resolutions under attack: p50 %v, p99 %v, max %v; echo in the same process: p50 %v, p99 %v",
			window, Quantile(lat, 0.5), p99, lat[len(lat)-1], Quantile(base, 0.5), b99)
		if b99 <= bound/2 {
			if p99 <= bound {
				break
			}
			over = append(over, fmt.Sprintf("window %d: %v (echo %v)", window, p99, b99))
		}
		if window == 4 {
			stop()
			if len(over) > 0 {
				t.Fatalf("p99 of resolutions under attack over %v in every window in which an echo in the same process answered within %v at p99: %s", bound, bound/2, strings.Join(over, "; "))
			}
			t.Skipf("the machine is too busy to measure: in every window an echo in this process took over %v at p99", bound/2)
		}
	}
	stop()
	pool, _ := r.Pool(p.Handle)
	var got []uint32
	for _, e := range pool.Elements {
		got = append(got, uint32(e.ID))
	}
	slices.Sort(got)
	if len(got) != len(p.IDs) {
		t.Errorf("pool holds %d of its %d live elements after the attack: %x", len(got), len(p.IDs), got)
	}
}

// startEcho serves, on loopback, a TCP mapping connection that sends back
// each message it reads, and returns its address.
func startEcho(tb testing.TB) string {
	tb.Helper()
	l := testutil.ListenTCP(tb)
	testutil.ServeEach(l.Accept, func(c mapping.Conn) {
		buf := make([]byte, 65536)
		for {
			n, ppid, err := c.ReadMsg(buf)
			if err != nil || c.WriteMsg(buf[:n], ppid) != nil {
				return
			}
		}
	})
	return l.Addr().String()
}

// echoLatencies has n round trips with the echo at addr, one every gap,
// as ResolutionLatencies has with the registrar, and returns how long
// each took.
func echoLatencies(addr string, n int, gap time.Duration) ([]time.Duration, error) {
	return roundTrips(context.Background(), addr, mustEncode(&asap.HandleResolution{Handle: "echo"}), n, gap, nil)
}

// BenchmarkResolutionUnderAttack measures a well-behaved pool user's
// resolution latency (one resolution a millisecond, within the default
// rate limit) with and without IssueAttack on the same registrar
// configuration, for benchstat -col /attack: p50-µs and p99-µs are its
// metrics; ns/op is the pacing and means nothing.
func BenchmarkResolutionUnderAttack(b *testing.B) {
	for _, attack := range []string{"off", "on"} {
		b.Run("attack="+attack, func(b *testing.B) {
			r, addr, p := startAttackedRegistrar(b)
			if attack == "on" {
				runAttack(b, addr, p)
				testutil.WaitFor(b, 10*time.Second, "the idle connections to be served", func() bool { return r.Conns() >= IssueAttack.Idle })
			}
			b.ResetTimer()
			lat, err := ResolutionLatencies(context.Background(), addr, p.Handle, b.N, time.Millisecond)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(Quantile(lat, 0.5))/1e3, "p50-µs")
			b.ReportMetric(float64(Quantile(lat, 0.99))/1e3, "p99-µs")
			if pool, _ := r.Pool(p.Handle); len(pool.Elements) != len(p.IDs) {
				b.Fatalf("%d of %d elements left", len(pool.Elements), len(p.IDs))
			}
		})
	}
}
