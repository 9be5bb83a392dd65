//go:build linux

package interop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/pingpong"
	"github.com/rsp-go/rsp/internal/rsplibtest"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/policy"
)

const pingPongPool = "PingPongPool"

// pingPongUser is a PingPong pool user over rsp's SCTP mapping and its
// ASAP control channel intake: it keeps the last cookie and, when its
// element fails, reports it unreachable, connects to another and echoes
// the cookie before its next Ping, as rsplib's pool users do.
type pingPongUser struct {
	t      *testing.T
	ep     *endpoint.Endpoint
	c      *mapping.ControlConn
	pe     asap.PEID
	failed []asap.PEID
	state  pingpong.Client
	cookie []byte
	buf    []byte
}

// connect connects to an element of the pool that has not failed, and
// echoes the last cookie to it.
func (u *pingPongUser) connect(ctx context.Context) {
	u.t.Helper()
	for ctx.Err() == nil {
		res, err := u.ep.Resolve(ctx, pingPongPool)
		if err == nil {
			for _, pe := range res.PEs {
				if slices.Contains(u.failed, pe.ID) {
					continue
				}
				t := pe.UserTransport
				d := mapping.Dialer{Config: mapping.Config{SCTPLiveness: mapping.SCTPLiveness{HeartbeatInterval: 200 * time.Millisecond,
					PathMaxRetrans: 2, AssocMaxRetrans: 2, RTOMin: 50 * time.Millisecond, RTOMax: 200 * time.Millisecond, RTOInitial: 200 * time.Millisecond}}}
				dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				mc, err := d.DialContext(dctx, "sctp", netip.AddrPortFrom(t.Addrs[0], t.Port).String())
				cancel()
				if err != nil {
					u.t.Logf("PE %08x: %v", uint32(pe.ID), err)
					continue
				}
				u.c, u.pe = mapping.NewControlConn(mc), pe.ID
				if u.cookie != nil {
					if err := u.c.WriteControl(&asap.CookieEcho{Cookie: u.cookie}); err != nil {
						u.t.Fatalf("echoing the cookie to PE %08x: %v", uint32(pe.ID), err)
					}
				}
				return
			}
		}
		u.ep.Invalidate(pingPongPool)
		time.Sleep(200 * time.Millisecond)
	}
	u.t.Fatalf("no PingPong element to fail over to (failed: %08x)", u.failed)
}

// ping sends ping and waits up to wait for its Pong. An error means the
// element failed.
func (u *pingPongUser) ping(p pingpong.Ping, wait time.Duration) (pingpong.Pong, error) {
	b, err := p.AppendBinary(nil)
	if err != nil {
		return pingpong.Pong{}, err
	}
	u.c.SetDeadline(time.Now().Add(wait))
	if err := u.c.WriteMsg(b, pingpong.PPID); err != nil {
		return pingpong.Pong{}, err
	}
	n, ppid, err := u.c.ReadMsg(u.buf)
	if err != nil {
		return pingpong.Pong{}, err
	}
	if ppid != pingpong.PPID {
		return pingpong.Pong{}, fmt.Errorf("a data message with PPID %d", ppid)
	}
	return pingpong.ParsePong(u.buf[:n])
}

// run sends count Pings, each answered in order, failing over when the
// element fails; it returns how many failovers it took.
func (u *pingPongUser) run(ctx context.Context, count int) (failovers int) {
	u.t.Helper()
	for range count {
		p := u.state.NextPing([]byte("ping from rsp"))
		for {
			pong, err := u.ping(p, time.Second)
			if err == nil {
				if pong.MessageNo != p.MessageNo || !u.state.Pong(pong) {
					u.t.Fatalf("PE %08x answered ping #%d with %+v after reply #%d", uint32(u.pe), p.MessageNo, pong, u.state.LastReplyNo()-1)
				}
				// The element sends a cookie after each Pong: the one
				// read so far names this reply.
				if b := u.c.Cookie(); b != nil {
					if ck, err := pingpong.ParseCookie(b); err != nil || ck.ReplyNo != pong.ReplyNo {
						u.t.Fatalf("PE %08x's cookie before reply #%d: %+v, %v", uint32(u.pe), pong.ReplyNo, ck, err)
					}
				}
				break
			}
			// The cookie after the last Pong came before the failure;
			// a failed write leaves it unread: read what is left.
			u.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			u.c.ReadMsg(u.buf)
			ck, cerr := pingpong.ParseCookie(u.c.Cookie())
			if cerr != nil || ck.ReplyNo != u.state.LastReplyNo()+1 {
				u.t.Fatalf("PE %08x failed at ping #%d (%v) with cookie %+v (%v), want the one after reply #%d", uint32(u.pe), p.MessageNo, err, ck, cerr, u.state.LastReplyNo())
			}
			u.cookie = u.c.Cookie()
			u.t.Logf("PE %08x failed at ping #%d: %v", uint32(u.pe), p.MessageNo, err)
			u.c.Close()
			u.failed = append(u.failed, u.pe)
			u.ep.ReportUnreachable(ctx, pingPongPool, u.pe)
			u.connect(ctx)
			failovers++
		}
	}
	return failovers
}

// startRsplibPingPong starts rspserver -pingpong and waits until the
// registrar resolves it; it returns the process and its PE identifier.
func startRsplibPingPong(t *testing.T, ep *endpoint.Endpoint, registrar string) (*rsplibtest.Process, asap.PEID) {
	t.Helper()
	return rsplibtest.StartServer(t, ep, registrar, pingPongPool, "-pingpong", nil)
}

// TestPingPongRSPUserWithRsplibServers: an rsp pool user speaks rsplib's
// PingPong protocol to rsplib's rspserver -pingpong elements over SCTP,
// taking each ASAP cookie from PPID 11. The element it uses is killed
// (SIGKILL), then the next is stopped (SIGSTOP): each time the user fails
// over, echoes the last cookie to the next element, and the reply numbers
// go on without a gap, the ping numbering carried on.
func TestPingPongRSPUserWithRsplibServers(t *testing.T) {
	rsplibtest.Require(t)
	registrar := fmt.Sprintf("%s:3883", hostAddr)
	rsplibtest.StartRegistrar(t, 3883, 9911)
	ep := endpoint.New(endpoint.Config{Registrars: []string{"sctp:" + registrar}})
	defer ep.Close()
	procs := map[asap.PEID]*rsplibtest.Process{}
	for range 3 {
		p, id := startRsplibPingPong(t, ep, registrar)
		procs[id] = p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	u := &pingPongUser{t: t, ep: ep, buf: make([]byte, 65536)}
	u.connect(ctx)
	defer func() { u.c.Close() }()
	if n := u.run(ctx, 5); n != 0 {
		t.Fatalf("%d failovers before any element failed", n)
	}
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGSTOP} {
		victim := u.pe
		// The element dies between requests: after the cookie that
		// follows its last Pong, which the user reads before it sees
		// the failure. (Killed between the two, the echoed cookie is the
		// one before, and the next element repeats a reply number, as
		// with rsplib's own users.)
		time.Sleep(300 * time.Millisecond)
		t.Logf("%v to PE %08x after reply #%d", sig, uint32(victim), u.state.LastReplyNo())
		if err := syscall.Kill(procs[victim].Pid, sig); err != nil {
			t.Fatal(err)
		}
		if sig == syscall.SIGSTOP {
			defer syscall.Kill(procs[victim].Pid, syscall.SIGCONT)
		}
		if n := u.run(ctx, 5); n != 1 || u.pe == victim {
			t.Fatalf("after %v to PE %08x: %d failovers, now on PE %08x; want one, to another element", sig, uint32(victim), n, uint32(u.pe))
		}
	}
	if u.state.Gaps != 0 || u.state.LastReplyNo() != 15 {
		t.Errorf("after 15 pings: last reply #%d, %d gaps; want #15 and none", u.state.LastReplyNo(), u.state.Gaps)
	}
}

// pingPongElement is an rsp pool element serving PingPong over SCTP with
// cookies, registered in rsplib's registrar; kill ends it as a crash does
// (its associations end, its registration stays).
type pingPongElement struct {
	reg *endpoint.Registration
	l   mapping.Listener
	mu  sync.Mutex
	cs  []mapping.Conn
}

func startPingPongElement(t *testing.T, ep *endpoint.Endpoint) *pingPongElement {
	t.Helper()
	var lc mapping.ListenConfig
	l, err := lc.Listen(context.Background(), "sctp", hostAddr+":0")
	if err != nil {
		t.Fatal(err)
	}
	e := &pingPongElement{l: l}
	_, ps, _ := net.SplitHostPort(l.Addr().String())
	pn, _ := strconv.Atoi(ps)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.reg, err = ep.Register(ctx, pingPongPool, asap.PoolElement{
		UserTransport: asap.Transport{Kind: asap.ParamSCTPTransport, Port: uint16(pn), Use: asap.DataPlusControl, Addrs: []netip.Addr{netip.MustParseAddr(hostAddr)}},
		Policy:        policy.Policy{Type: policy.RoundRobin},
	})
	if err != nil {
		l.Close()
		t.Fatalf("registering a PingPong element with rsplib's registrar: %v", err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.cs = append(e.cs, c)
			e.mu.Unlock()
			go func() {
				if err := pingpong.Serve(mapping.NewControlConn(c)); err != nil && !errors.Is(err, net.ErrClosed) {
					t.Logf("PE %08x: %v", uint32(e.reg.ID()), err)
				}
			}()
		}
	}()
	t.Cleanup(e.kill)
	return e
}

// kill ends the element's associations and its listener, without
// deregistering.
func (e *pingPongElement) kill() {
	e.l.Close()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.cs {
		c.Close()
	}
}

// pingPongPEEnv, when set to a registrar's address, makes
// TestHelperPingPongPE a PingPong pool element process.
const pingPongPEEnv = "RSP_TEST_PINGPONG_PE"

// TestHelperPingPongPE is not a test: run as a child process, it serves
// PingPong as an rsp element registered with the registrar pingPongPEEnv
// names, until it is killed.
func TestHelperPingPongPE(t *testing.T) {
	reg := os.Getenv(pingPongPEEnv)
	if reg == "" {
		t.Skip("a helper process of TestRsplibPingPongClientWithRSPElements")
	}
	ep := endpoint.New(endpoint.Config{Registrars: []string{"sctp:" + reg}})
	e := startPingPongElement(t, ep)
	fmt.Println(rsplibtest.ReadyLine(e.reg.ID()))
	select {}
}

// startPingPongProcess starts a PingPong element process registered with
// reg and waits until it serves; it returns the process and its PE
// identifier.
func startPingPongProcess(t *testing.T, reg string) (*rsplibtest.Process, asap.PEID) {
	t.Helper()
	return rsplibtest.StartElementProcess(t, []string{pingPongPEEnv + "=" + reg}, "-test.run=^TestHelperPingPongPE$", "-test.timeout=5m")
}

// TestRsplibPingPongClientWithRSPElements: rsplib's pingpongclient uses a
// pool of three rsp PingPong element processes. The element it uses is
// killed (SIGKILL: the kernel aborts its associations) and the client
// fails over to another, echoing the cookie. The next one it uses is
// stopped (SIGSTOP), and the client stays with it: rsplib's pool user
// fails over only when its association fails (SCTP COMM_LOST or
// SHUTDOWN_COMP, or a send or receive error other than EAGAIN; it has no
// timeout of its own for answers), and a stopped process's kernel keeps
// the association up: it answers the client's heartbeats and acknowledges
// its pings, and once the element's receive buffer is full it answers the
// zero window probes, which reset the client's retransmission count.
// Measured inside User-mode Linux: stopped for 90 s with pings every
// 100 ms, and for 120 s with a 4 KiB receive buffer (the window closed
// after 3 s; 56 probes, against the client's limit of 8 retransmissions),
// pingpongclient did not fail over. Here the stop lasts stopFor: no ack
// comes from anyone meanwhile; resumed (SIGCONT), the element answers the
// pings queued for it. Stopped again, it is then killed as a supervisor
// ends a hung process, and the client fails over at once (the kill's
// ABORT ends the association) with the cookie echoed. Its reply numbers
// go on without a gap throughout: the cookie carries them.
func TestRsplibPingPongClientWithRSPElements(t *testing.T) {
	rsplibtest.Require(t)
	registrar := fmt.Sprintf("%s:3893", hostAddr)
	rsplibtest.StartRegistrar(t, 3893, 9921)
	procs := map[asap.PEID]*rsplibtest.Process{}
	for range 3 {
		p, id := startPingPongProcess(t, registrar)
		procs[id] = p
	}
	client := rsplibtest.StartPingPongClient(t, registrar, pingPongPool, 100*time.Millisecond)
	out, acks := client.Out, client.Acks
	wait := func(what string, limit time.Duration, cond func([]rsplibtest.Ack) bool) time.Duration {
		start := time.Now()
		for !cond(acks()) {
			if time.Since(start) > limit {
				t.Fatalf("pingpongclient: %s within %v; its output:\n%s", what, limit, out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(start)
	}
	// current waits for the next ack and returns the element that sent
	// it, with a moment for the cookie that follows its Pong. (An element
	// that dies between its Pong and its cookie has the client echo the
	// cookie before, and the next element repeats a reply number.)
	current := func(what string) asap.PEID {
		n := len(acks())
		wait("no ack "+what, 30*time.Second, func(a []rsplibtest.Ack) bool { return len(a) > n })
		time.Sleep(20 * time.Millisecond)
		a := acks()
		pe := a[len(a)-1].PE
		if procs[pe] == nil {
			t.Fatalf("acks from PE %08x, not an rsp element process", uint32(pe))
		}
		return pe
	}
	signal := func(pe asap.PEID, sig syscall.Signal) {
		if err := syscall.Kill(procs[pe].Pid, sig); err != nil {
			t.Fatal(err)
		}
		t.Logf("%v to PE %08x after %d acks", sig, uint32(pe), len(acks()))
	}
	fromOthers := func(than ...asap.PEID) func([]rsplibtest.Ack) int {
		return func(a []rsplibtest.Ack) int {
			n := 0
			for _, m := range a {
				if !slices.Contains(than, m.PE) {
					n++
				}
			}
			return n
		}
	}
	failovers := func() int { return strings.Count(out.String(), "FAILOVER") }

	wait("no 5 acks", 30*time.Second, func(a []rsplibtest.Ack) bool { return len(a) >= 5 })
	killed := current("before the kill")
	signal(killed, syscall.SIGKILL)
	took := wait("no ack from another element after the kill", 10*time.Second, func(a []rsplibtest.Ack) bool { return fromOthers(killed)(a) > 0 })
	t.Logf("first ack from another element %v after the kill", took)
	wait("no 5 acks from another element after the kill", 30*time.Second, func(a []rsplibtest.Ack) bool { return fromOthers(killed)(a) >= 5 })

	stopped := current("after the kill")
	if stopped == killed {
		t.Fatalf("acks from the killed PE %08x", uint32(killed))
	}
	signal(stopped, syscall.SIGSTOP)
	defer syscall.Kill(procs[stopped].Pid, syscall.SIGCONT)
	// A Pong on its way when the stop came may still be printed.
	time.Sleep(500 * time.Millisecond)
	before, failed := len(acks()), failovers()
	const stopFor = 5 * time.Second
	time.Sleep(stopFor)
	if n := len(acks()); n != before || failovers() != failed {
		t.Fatalf("pingpongclient got %d acks in %v from a stopped element and the others; want none, and no failover:\n%s", n-before, stopFor, out.String())
	}
	signal(stopped, syscall.SIGCONT)
	// The element answers the pings queued while it was stopped, in a
	// burst; once it has answered the last ping sent, it is idle again
	// between pings.
	wait("no 5 acks after the stopped element resumed, the last for the last ping", 30*time.Second, func(a []rsplibtest.Ack) bool {
		return len(a) >= before+5 && a[len(a)-1].MessageNo == client.Sent()
	})
	if n := fromOthers(killed, stopped)(acks()); n != 0 {
		t.Fatalf("%d acks from the third element: the client left the stopped element", n)
	}

	if pe := current("after the resume"); pe != stopped {
		t.Fatalf("acks from PE %08x after the resume, want the resumed PE %08x", uint32(pe), uint32(stopped))
	}
	signal(stopped, syscall.SIGSTOP)
	time.Sleep(time.Second)
	signal(stopped, syscall.SIGKILL)
	took = wait("no ack from the third element after the stopped one was killed", 10*time.Second, func(a []rsplibtest.Ack) bool { return fromOthers(killed, stopped)(a) > 0 })
	t.Logf("first ack from the third element %v after the stopped element was killed", took)
	wait("no 5 acks from the third element", 30*time.Second, func(a []rsplibtest.Ack) bool { return fromOthers(killed, stopped)(a) >= 5 })

	all := acks()
	for i, m := range all {
		if m.ReplyNo != uint64(i+1) {
			t.Errorf("ack %d %q: reply #%d, want #%d (the cookie carries the reply numbers across failover)", i, m.Line, m.ReplyNo, i+1)
		}
	}
	if regexp.MustCompile(`Detected gap`).MatchString(out.String()) {
		t.Errorf("pingpongclient detected a gap:\n%s", out.String())
	}
}

// TestPingPongRSPDialerWithRsplibServers: rsp's Dialer, given rsplib's
// PingPong pool, returns an *rsp.ASAPConn (rsplib's elements speak the
// control channel, not rsp sessions); the element in use is killed
// (SIGKILL), then the next stopped (SIGSTOP, which the application notices
// by its timeout and answers with Failover): each time the connection
// moves to another element, echoes the last cookie, and the reply numbers
// go on without a gap.
func TestPingPongRSPDialerWithRsplibServers(t *testing.T) {
	rsplibtest.Require(t)
	registrar := fmt.Sprintf("%s:3943", hostAddr)
	rsplibtest.StartRegistrar(t, 3943, 9951)
	ep := endpoint.New(endpoint.Config{Registrars: []string{"sctp:" + registrar}})
	defer ep.Close()
	procs := map[asap.PEID]*rsplibtest.Process{}
	for range 3 {
		p, id := startRsplibPingPong(t, ep, registrar)
		procs[id] = p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d := rsp.Dialer{Endpoint: ep, Timeout: 2 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", "pool:"+pingPongPool)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, ok := nc.(*rsp.ASAPConn)
	if !ok {
		t.Fatalf("dialing rsplib's PingPong pool gave a %T, want an *rsp.ASAPConn", nc)
	}
	var state pingpong.Client
	buf := make([]byte, 65536)
	exchange := func(p pingpong.Ping) (pingpong.Pong, error) {
		b, _ := p.AppendBinary(nil)
		if err := c.WriteMsg(b, pingpong.PPID); err != nil {
			return pingpong.Pong{}, err
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err != nil {
			return pingpong.Pong{}, err
		}
		return pingpong.ParsePong(buf[:n])
	}
	run := func(count int) {
		for range count {
			p := state.NextPing([]byte("ping from rsp.Dial"))
			for tries := 0; ; tries++ {
				before := c.Failovers()
				pong, err := exchange(p)
				if err == nil {
					if pong.MessageNo != p.MessageNo || !state.Pong(pong) {
						t.Fatalf("ping #%d answered with %+v", p.MessageNo, pong)
					}
					break
				}
				if tries == 3 {
					t.Fatalf("ping #%d: %v", p.MessageNo, err)
				}
				// The ping went to an element that failed: moved
				// already (a kill), or to be moved (a stop).
				if c.Failovers() == before {
					if ferr := c.Failover(ctx); ferr != nil {
						t.Fatalf("Failover after %v: %v", err, ferr)
					}
				}
				t.Logf("ping #%d again after %v, now to PE %08x", p.MessageNo, err, uint32(c.Element().ID))
			}
		}
	}
	run(5)
	for i, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGSTOP} {
		// The element sends a cookie after each Pong: read until the
		// one after the last has come (a read that times out takes the
		// control messages on its way), so that the element dies after
		// it and the echo carries on from there.
		testutil.WaitFor(t, 10*time.Second, "the cookie after the last Pong", func() bool {
			c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if n, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("a read between requests: %q, %v", buf[:n], err)
			}
			ck, err := pingpong.ParseCookie(c.Cookie())
			return err == nil && ck.ReplyNo == state.LastReplyNo()+1
		})
		victim := c.Element().ID
		if err := syscall.Kill(procs[victim].Pid, sig); err != nil {
			t.Fatal(err)
		}
		if sig == syscall.SIGSTOP {
			defer syscall.Kill(procs[victim].Pid, syscall.SIGCONT)
		}
		run(5)
		if c.Failovers() != i+1 || c.Element().ID == victim {
			t.Fatalf("after %v to PE %08x: %d failovers, on PE %08x", sig, uint32(victim), c.Failovers(), uint32(c.Element().ID))
		}
	}
	if state.Gaps != 0 || state.LastReplyNo() != 15 {
		t.Errorf("after 15 pings: last reply #%d, %d gaps; want #15 and none", state.LastReplyNo(), state.Gaps)
	}
}
