//go:build linux

package benchmarks

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/rsplibtest"
	"github.com/rsp-go/rsp/internal/sctp"
	"github.com/rsp-go/rsp/internal/testutil"
)

func init() { serveSCTPEcho = sctpEcho }

func sctpEcho(spec string) {
	reg, pool, _ := strings.Cut(spec, ",")
	rsplibtest.ServeSCTPEcho(reg, pool)
}

// BenchmarkSCTPFailover: the time from killing (SIGKILL) the pool element
// a pool user uses to the user's next answer from another element, for an
// rsp session over SCTP (peer=rsp-sctp: the next message written right
// after the kill, until its echo is read) and for rsplib's own
// pingpongclient against rspserver -pingpong elements (peer=rsplib: until
// the client prints its next Ack from another element, read from its
// output, line-buffered, every millisecond; its pings go every 20 ms, so
// up to 20 ms of it is the ping interval). Both use the same rsplib registrar, in the same
// run, inside User-mode Linux; compare with benchstat -col /peer. Each
// iteration starts two element processes, so run with -test.benchtime=Nx.
func BenchmarkSCTPFailover(b *testing.B) {
	if !sctp.Supported() {
		b.Skip("the kernel has no SCTP; run the SCTP benchmarks inside User-mode Linux with .ci/uml/test-sctp")
	}
	rsplibtest.Require(b)
	reg := fmt.Sprintf("%s:3953", rsplibtest.HostAddr)
	rsplibtest.StartRegistrar(b, 3953, 9953)
	b.Run("peer=rsp-sctp", func(b *testing.B) {
		var total time.Duration
		for i := range b.N {
			b.StopTimer()
			// A pool of its own: the registrar may still list the
			// elements killed before.
			total += rspFailover(b, reg, fmt.Sprintf("failover-%d-%d", time.Now().UnixNano(), i))
		}
		b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "ms/failover")
		b.ReportMetric(0, "ns/op")
	})
	b.Run("peer=rsplib", func(b *testing.B) {
		ep := endpoint.New(endpoint.Config{Registrars: []string{"sctp:" + reg}})
		defer ep.Close()
		seen := map[asap.PEID]bool{}
		var total time.Duration
		for range b.N {
			b.StopTimer()
			total += rsplibFailover(b, ep, reg, seen)
		}
		b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "ms/failover")
		b.ReportMetric(0, "ns/op")
	})
}

// rspFailover starts two echo element processes, runs a session to one,
// kills it and returns how long the next echo took.
func rspFailover(b *testing.B, reg, pool string) time.Duration {
	procs := map[asap.PEID]*rsplibtest.Process{}
	for range 2 {
		p, id := rsplibtest.StartElementProcess(b, []string{envSCTPEcho + "=" + reg + "," + pool}, "-test.run=^$", "-test.bench=^$")
		procs[id] = p
	}
	defer func() {
		for _, p := range procs {
			syscall.Kill(p.Pid, syscall.SIGKILL)
		}
	}()
	d := rsp.Dialer{Registrars: []string{"sctp:" + reg}, Timeout: 2 * time.Second,
		Session: rsp.SessionConfig{HeartbeatInterval: 200 * time.Millisecond, FailoverTimeout: 10 * time.Second}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", "pool:"+pool)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	s, ok := c.(*rsp.Session)
	if !ok {
		b.Fatalf("dialed a %T, want a session", c)
	}
	buf := make([]byte, 16)
	echo := func(msg string) {
		if _, err := s.Write([]byte(msg)); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(s, buf[:len(msg)]); err != nil || string(buf[:len(msg)]) != msg {
			b.Fatalf("echo of %q: %q, %v", msg, buf[:len(msg)], err)
		}
	}
	echo("first")
	victim := s.Element().ID
	if procs[victim] == nil {
		b.Fatalf("the session uses PE %08x, not an echo element process", uint32(victim))
	}
	b.StartTimer()
	start := time.Now()
	syscall.Kill(procs[victim].Pid, syscall.SIGKILL)
	echo("second")
	took := time.Since(start)
	b.StopTimer()
	if s.Element().ID == victim {
		b.Fatalf("the echo came from the killed PE %08x", uint32(victim))
	}
	return took
}

// rsplibFailover starts two rspserver -pingpong elements and
// pingpongclient, kills the element the client uses and returns how long
// until the client's next Ack from the other.
func rsplibFailover(b *testing.B, ep *endpoint.Endpoint, reg string, seen map[asap.PEID]bool) time.Duration {
	procs := map[asap.PEID]*rsplibtest.Process{}
	defer func() {
		for _, p := range procs {
			syscall.Kill(p.Pid, syscall.SIGKILL)
		}
	}()
	for range 2 {
		p, id := rsplibtest.StartServer(b, ep, reg, "PingPongPool", "-pingpong", seen)
		procs[id] = p
	}
	client := rsplibtest.StartPingPongClient(b, reg, "PingPongPool", 20*time.Millisecond)
	defer syscall.Kill(client.Pid, syscall.SIGKILL)
	acks := client.Acks
	testutil.WaitFor(b, 20*time.Second, "pingpongclient's first acks", func() bool { return len(acks()) >= 3 })
	a := acks()
	victim := a[len(a)-1].PE
	if procs[victim] == nil {
		b.Fatalf("acks from PE %08x, not a new rspserver", uint32(victim))
	}
	b.StartTimer()
	start := time.Now()
	syscall.Kill(procs[victim].Pid, syscall.SIGKILL)
	deadline := start.Add(30 * time.Second)
	for {
		if slices.ContainsFunc(acks()[len(a):], func(m rsplibtest.Ack) bool { return m.PE != victim }) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("pingpongclient: no ack from another element 30 s after the kill:\n%s", client.Out.String())
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	b.StopTimer()
	return took
}
