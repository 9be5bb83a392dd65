package rsp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/failover"
	"github.com/rsp-go/rsp/internal/stall"
	"github.com/rsp-go/rsp/internal/testutil"
)

// e2eHeartbeat is the pool users' heartbeat in the tests that time the
// recovery from a silent element: long enough that a loaded machine's
// scheduling delays stay small beside it.
const e2eHeartbeat = 200 * time.Millisecond

// resetHeartbeat is the heartbeat of the tests whose elements fail by a
// reset, which a session notices at once: there heartbeats only have to
// keep a healthy element from being taken for a silent one. At 100 ms
// (250 ms of silence fail a connection) a loaded machine, whose test
// process was measured kept from running for up to 360 ms at once, made
// healthy elements "time out": extra failovers, and sessions that lost
// their last element.
const resetHeartbeat = time.Second

// blackHoleHeartbeat is the heartbeat of the tests that need a silent
// element noticed, but do not time it: 1 s of silence fails a connection.
const blackHoleHeartbeat = 400 * time.Millisecond

// deliveries counts the messages pool elements' applications received, by
// session and sequence number, across elements.
type deliveries struct {
	mu sync.Mutex
	n  map[[16]byte]map[uint64]int
}

func (d *deliveries) add(id [16]byte, seq uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n == nil {
		d.n = make(map[[16]byte]map[uint64]int)
	}
	if d.n[id] == nil {
		d.n[id] = make(map[uint64]int)
	}
	d.n[id][seq]++
}

func (d *deliveries) of(id [16]byte) map[uint64]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[uint64]int)
	for k, v := range d.n[id] {
		out[k] = v
	}
	return out
}

// sessionPE is a pool element that serves sessions behind a loopback proxy
// (the address it registers), which the test resets or black-holes.
type sessionPE struct {
	ep    *endpoint.Endpoint
	l     *rsp.Listener
	proxy *testutil.Proxy
	asap  *testutil.Proxy // between the endpoint and its registrar (peOptions.asapProxy)
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
	once  sync.Once
}

// peOptions configure a test pool element.
type peOptions struct {
	stateless bool
	cookie    bool // set a cookie "n=<seq>" after each message
	heartbeat time.Duration
	echoed    chan []byte // receives each resumed session's echoed cookie
	got       *deliveries
	msgs      chan rsp.Message // receives each message, if set
	serve     func(net.Conn)   // serves each connection instead, if set
	manualAck bool
	network   string // "sctp": listen over SCTP on loopback, without a proxy; else TCP
	// asapProxy puts a proxy (sessionPE.asap) between the endpoint and
	// its registrar (the first of regs), so that the element can be
	// black-holed whole, keep-alives and all.
	asapProxy bool
}

func startSessionPE(t testing.TB, regs []string, pool string, o peOptions) *sessionPE {
	t.Helper()
	p := &sessionPE{}
	if o.asapProxy {
		p.asap = testutil.StartProxy(t, strings.TrimPrefix(regs[0], "tcp:"))
		regs = []string{"tcp:" + p.asap.Addr()}
	}
	p.ep = endpoint.New(endpoint.Config{Registrars: regs, CacheLifetime: -1})
	lc := rsp.ListenConfig{Endpoint: p.ep, LocalAddr: "127.0.0.1:0",
		Session: rsp.SessionConfig{Stateless: o.stateless, HeartbeatInterval: o.heartbeat, ManualAck: o.manualAck}}
	network := "sctp"
	if o.network != "sctp" {
		network = "tcp"
		// The listener's own port is known once it listens: the proxy
		// in front of it, whose address it advertises, learns it then.
		p.proxy = testutil.StartProxy(t, "")
		lc.AdvertiseAddr = p.proxy.Addr()
	}
	var err error
	p.l, err = lc.Listen(context.Background(), network, "pool:"+pool)
	if err != nil {
		t.Fatal(err)
	}
	if p.proxy != nil {
		p.proxy.SetTarget(p.l.Addr().String())
	}
	t.Cleanup(p.crash)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := p.l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer c.Close()
				if o.serve != nil {
					o.serve(c)
					return
				}
				s, ok := c.(*rsp.Session)
				if !ok {
					io.Copy(c, c)
					return
				}
				first := true
				for {
					m, err := s.ReadMsg()
					if err != nil {
						return
					}
					if first && s.Resumed() && o.echoed != nil {
						o.echoed <- s.EchoedCookie()
					}
					first = false
					if o.got != nil {
						o.got.add(s.ID(), m.Seq)
					}
					if o.msgs != nil {
						o.msgs <- m
					}
					if o.cookie {
						s.SetCookie([]byte("n=" + strconv.FormatUint(m.Seq, 10)))
					}
					if len(m.Data) > 0 && m.Data[0] == 'e' {
						if _, err := s.Write(m.Data); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return p
}

// crash ends the element as a dying process does: its connections are
// reset (over TCP), it does not deregister.
func (p *sessionPE) crash() {
	p.once.Do(func() {
		if p.proxy != nil {
			p.proxy.Reset()
		}
		p.ep.Close()
		p.l.Close()
		if p.proxy != nil {
			p.proxy.Close()
		}
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
}

func startSessionPool(t testing.TB, n int, pool string, o peOptions) (map[asap.PEID]*sessionPE, []string) {
	t.Helper()
	r, regs := testRegistrar(t)
	pes := make(map[asap.PEID]*sessionPE)
	for range n {
		p := startSessionPE(t, regs, pool, o)
		pes[p.l.ID()] = p
	}
	waitFor(t, "the pool", 2*time.Second, func() bool { return poolSize(r, pool) == n })
	return pes, regs
}

func dialSession(t testing.TB, regs []string, pool string, cfg rsp.SessionConfig) *rsp.Session {
	t.Helper()
	d := &rsp.Dialer{Endpoint: newEndpoint(t, regs), Timeout: time.Second, Session: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", "pool:"+pool)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := c.(*rsp.Session)
	if !ok {
		t.Fatalf("dialed a %T, want a *rsp.Session", c)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// checkDeliveries checks what the elements received of messages 1..n of
// session id against the failovers: every message at least once; one that
// no failover replayed (acknowledged before it) exactly once; none more
// often than once per element it could reach.
func checkDeliveries(t testing.TB, got map[uint64]int, n uint64, fos []rsp.FailoverEvent) {
	t.Helper()
	for seq := uint64(1); seq <= n; seq++ {
		bound := 1
		for _, f := range fos {
			if seq >= f.FirstReplayed && seq < f.FirstReplayed+uint64(f.Replayed) {
				bound++
			}
		}
		switch c := got[seq]; {
		case c == 0:
			t.Errorf("message %d never delivered", seq)
		case bound == 1 && c != 1:
			t.Errorf("message %d, acknowledged before any failover replayed it, delivered %d times", seq, c)
		case c > bound:
			t.Errorf("message %d delivered %d times, more than the bound %d", seq, c, bound)
		}
	}
}

// TestSessionFailsOverOnReset streams numbered messages with ack requests
// while the element the session is on is killed (its connections reset),
// twice: the session carries on on another element, and every message is
// delivered at least once, those acknowledged before a failover exactly
// once.
func TestSessionFailsOverOnReset(t *testing.T) {
	got := new(deliveries)
	pes, regs := startSessionPool(t, 3, "reset", peOptions{stateless: true, got: got})
	fch := make(chan rsp.FailoverEvent, 10)
	s := dialSession(t, regs, "reset", rsp.SessionConfig{HeartbeatInterval: resetHeartbeat, Failovers: fch})
	const n = 300
	for i := uint64(1); i <= n; i++ {
		seq, err := s.WriteMsg([]byte(strconv.FormatUint(i, 10)), rsp.WriteOptions{AckRequest: true})
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if seq != i {
			t.Fatalf("message %d numbered %d", i, seq)
		}
		if i == 100 || i == 200 {
			// Kill the element once it acknowledged most; what it did
			// not is replayed.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := s.WaitAcked(ctx, i-10)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			pes[s.Element().ID].crash()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitAcked(ctx, n); err != nil {
		t.Fatalf("waiting for the acknowledgement of all: %v (acked %d)", err, s.Acked())
	}
	fos := testutil.Drain(fch)
	if len(fos) != 2 || s.Failovers() != 2 {
		t.Fatalf("%d failover indications, Failovers() %d; want 2", len(fos), s.Failovers())
	}
	for _, f := range fos {
		if f.Old.ID == f.New.ID || f.New.ID == 0 {
			t.Errorf("failover from %08x to %08x", uint32(f.Old.ID), uint32(f.New.ID))
		}
	}
	checkDeliveries(t, got.of(s.ID()), n, fos)
}

// TestSessionReadsAcrossFailover: a pool user reading replies (an echo)
// goes on reading after its element died, with no error.
func TestSessionReadsAcrossFailover(t *testing.T) {
	pes, regs := startSessionPool(t, 2, "echo", peOptions{stateless: true})
	fch := make(chan rsp.FailoverEvent, 10)
	s := dialSession(t, regs, "echo", rsp.SessionConfig{HeartbeatInterval: resetHeartbeat, Failovers: fch})
	s.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	for i := range 20 {
		msg := fmt.Sprintf("echo %d", i)
		if _, err := s.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		n, err := s.Read(buf)
		if err != nil || string(buf[:n]) != msg {
			t.Fatalf("read %q, %v; want %q", buf[:n], err, msg)
		}
		if i == 10 {
			pes[s.Element().ID].crash()
		}
	}
	if s.Failovers() != 1 {
		t.Errorf("Failovers() = %d, want 1 (events %+v)", s.Failovers(), testutil.Drain(fch))
	}
}

// TestSessionSilentElement: an element behind a black hole (connections
// open, nothing passes) is noticed within three heartbeats, and the
// session fails over. The bound has half a heartbeat of margin, plus the
// time the process was measured not to run (stall.Stalls): on a loaded
// machine the detection came 200 ms late with the process descheduled.
func TestSessionSilentElement(t *testing.T) {
	const hb = e2eHeartbeat
	pes, regs := startSessionPool(t, 2, "silent", peOptions{stateless: true, heartbeat: hb})
	fch := make(chan rsp.FailoverEvent, 1)
	s := dialSession(t, regs, "silent", rsp.SessionConfig{HeartbeatInterval: hb, Failovers: fch})
	if _, err := s.WriteMsg([]byte("1"), rsp.WriteOptions{AckRequest: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first acknowledgement", time.Second, func() bool { return s.Acked() == 1 })
	old := s.Element().ID
	stalls := stall.Measure(t)
	start := time.Now()
	pes[old].proxy.BlackHole()
	if _, err := s.WriteMsg([]byte("2"), rsp.WriteOptions{AckRequest: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-fch:
		detect := time.Since(start) - f.Took
		stalls.Stop()
		stalled, longest := stalls.Total()
		if f.Old.ID != old || f.New.ID == old {
			t.Errorf("failover from %08x to %08x, want from %08x", uint32(f.Old.ID), uint32(f.New.ID), uint32(old))
		}
		if detect > 3*hb+hb/2+stalled {
			t.Errorf("silent element noticed after %v, want within three heartbeats (%v; the process stalled for %v, at most %v at once)", detect, 3*hb, stalled, longest)
		}
		t.Logf("noticed after %v, failed over in %v; the process stalled for %v, at most %v at once", detect, f.Took, stalled, longest)
	case <-time.After(5 * time.Second):
		t.Fatal("no failover from a silent element")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.WaitAcked(ctx, 2); err != nil {
		t.Fatal(err)
	}
}

// TestSessionStateCannotMove: an element that set no cookie and is not
// stateless holds state a byte stream cannot carry to another element
// (HTTP/2, TLS): when it dies the session fails promptly with
// ErrStateLost, wrapped in *net.OpError, instead of splicing.
func TestSessionStateCannotMove(t *testing.T) {
	pes, regs := startSessionPool(t, 2, "stateful", peOptions{})
	s := dialSession(t, regs, "stateful", rsp.SessionConfig{HeartbeatInterval: resetHeartbeat})
	s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Write([]byte("echo")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if _, err := s.Read(buf); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	pes[s.Element().ID].crash()
	_, err := s.Read(buf)
	var oe *net.OpError
	if !errors.As(err, &oe) || !errors.Is(err, rsp.ErrStateLost) {
		t.Fatalf("read after the element died: %v, want *net.OpError with ErrStateLost", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("failed after %v, want promptly", d)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, rsp.ErrStateLost) {
		t.Errorf("write after the failure: %v, want ErrStateLost", err)
	}
}

// TestSessionCookieEcho: the new element receives the last cookie the old
// one handed out, before the first replayed message.
func TestSessionCookieEcho(t *testing.T) {
	echoed := make(chan []byte, 1)
	got := new(deliveries)
	pes, regs := startSessionPool(t, 2, "cookie", peOptions{cookie: true, echoed: echoed, got: got})
	s := dialSession(t, regs, "cookie", rsp.SessionConfig{HeartbeatInterval: resetHeartbeat})
	for i := 1; i <= 5; i++ {
		if _, err := s.WriteMsg([]byte("m"), rsp.WriteOptions{AckRequest: true}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "five acknowledgements", 2*time.Second, func() bool { return s.Acked() == 5 })
	waitFor(t, "the cookie", 2*time.Second, func() bool { return string(s.Cookie()) == "n=5" })
	pes[s.Element().ID].crash()
	if _, err := s.WriteMsg([]byte("m"), rsp.WriteOptions{AckRequest: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-echoed:
		if string(c) != "n=5" {
			t.Errorf("new element got cookie %q, want n=5", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no resumed session reached the new element")
	}
	checkDeliveries(t, got.of(s.ID()), 6, nil)
}

// TestSessionFailoverCallback: the callback runs once the new element is
// connected and before the replay; its resynchronisation message reaches
// the new element first. A callback that refuses makes the session try
// another element.
func TestSessionFailoverCallback(t *testing.T) {
	msgs := make(chan rsp.Message, 100)
	pes, regs := startSessionPool(t, 3, "callback", peOptions{stateless: true, msgs: msgs})
	var calls []rsp.Failover
	var mu sync.Mutex
	refused := false
	cfg := rsp.SessionConfig{HeartbeatInterval: blackHoleHeartbeat, OnFailover: func(ctx context.Context, f *rsp.Failover) error {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, *f)
		if !refused {
			refused = true
			return errors.New("not this one")
		}
		return f.Send([]byte("resync"))
	}}
	s := dialSession(t, regs, "callback", cfg)
	if _, err := s.WriteMsg([]byte("first"), rsp.WriteOptions{AckRequest: true}); err != nil {
		t.Fatal(err)
	}
	<-msgs
	waitFor(t, "the acknowledgement", time.Second, func() bool { return s.Acked() == 1 })
	// The element stops answering; meanwhile two messages wait unacked.
	old := s.Element().ID
	pes[old].proxy.BlackHole()
	for _, m := range []string{"a", "b"} {
		if _, err := s.WriteMsg([]byte(m), rsp.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"resync", "a", "b"} {
		select {
		case m := <-msgs:
			if string(m.Data) != want {
				t.Fatalf("new element got %q, want %q", m.Data, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("new element got nothing, want %q", want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 || calls[0].New.ID == calls[1].New.ID || calls[1].Old.ID != old || calls[1].Replay != 2 {
		t.Errorf("callback calls %+v: want two, for two new elements, with 2 to replay", calls)
	}
}

// TestSessionFailoverCallbackEndsSession: a callback whose error wraps
// failover.ErrRefused ends the session instead of trying another element,
// and the session's next Read reports it.
func TestSessionFailoverCallbackEndsSession(t *testing.T) {
	msgs := make(chan rsp.Message, 100)
	pes, regs := startSessionPool(t, 3, "callback-end", peOptions{stateless: true, msgs: msgs})
	var mu sync.Mutex
	calls := 0
	cfg := rsp.SessionConfig{HeartbeatInterval: blackHoleHeartbeat, OnFailover: func(ctx context.Context, f *rsp.Failover) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return fmt.Errorf("no resync possible: %w", failover.ErrRefused)
	}}
	s := dialSession(t, regs, "callback-end", cfg)
	if _, err := s.WriteMsg([]byte("first"), rsp.WriteOptions{AckRequest: true}); err != nil {
		t.Fatal(err)
	}
	<-msgs
	waitFor(t, "the acknowledgement", time.Second, func() bool { return s.Acked() == 1 })
	pes[s.Element().ID].proxy.BlackHole()
	// Noticed after a second of silence; the rest is margin for a loaded
	// machine (once more than 5 s at a load average of 19).
	s.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, err := s.Read(make([]byte, 16))
	if !errors.Is(err, failover.ErrRefused) {
		t.Fatalf("Read after a refusing callback: %v, want an error wrapping failover.ErrRefused", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) {
		t.Errorf("Read error %T is not a *net.OpError", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Errorf("callback called %d times, want once: the session must not try further elements", calls)
	}
}

// TestSessionPathInfo: the kernel's RTT, RTO and path MTU of the session's
// connection, on both sides.
func TestSessionPathInfo(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("TCP_INFO is read on Linux only")
	}
	accepted := make(chan *rsp.Session, 1)
	_, regs := startSessionPool(t, 1, "path", peOptions{serve: func(c net.Conn) {
		accepted <- c.(*rsp.Session)
		io.Copy(io.Discard, c)
	}})
	s := dialSession(t, regs, "path", rsp.SessionConfig{})
	s.Write([]byte("x"))
	for _, s := range []*rsp.Session{s, <-accepted} {
		pi, err := s.PathInfo()
		if err != nil {
			t.Fatal(err)
		}
		if pi.RTO <= 0 || pi.PathMTU < 576 || pi.RTT < 0 {
			t.Errorf("path info %+v: want a positive RTO and a path MTU of at least 576", pi)
		}
	}
}

// TestSessionWriteBlocksWhenUnackedFull: with the buffer of unacknowledged
// messages full, Write blocks until its deadline, failing with
// os.ErrDeadlineExceeded; the element's Ack frees room and writes go on.
// Stream and unordered delivery have no TCP mapping: ErrNotSupported.
func TestSessionWriteBlocksWhenUnackedFull(t *testing.T) {
	got := make(chan rsp.Message, 16)
	var elem *rsp.Session
	var mu sync.Mutex
	_, regs := startSessionPool(t, 1, "full", peOptions{serve: func(c net.Conn) {
		s := c.(*rsp.Session)
		mu.Lock()
		elem = s
		mu.Unlock()
		for {
			m, err := s.ReadMsg()
			if err != nil {
				return
			}
			got <- m
		}
	}, manualAck: true})
	s := dialSession(t, regs, "full", rsp.SessionConfig{MaxUnackedMessages: 4})
	for i := range 4 {
		if _, err := s.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	s.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	start := time.Now()
	_, err := s.Write([]byte{4})
	var oe *net.OpError
	if !errors.As(err, &oe) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write into a full buffer: %v, want *net.OpError with os.ErrDeadlineExceeded", err)
	}
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Errorf("write failed after %v, before its deadline", d)
	}
	var last rsp.Message
	for range 4 {
		last = <-got
	}
	mu.Lock()
	e := elem
	mu.Unlock()
	if err := e.Ack(last); err != nil {
		t.Fatal(err)
	}
	s.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if _, err := s.Write([]byte{4}); err != nil {
		t.Fatalf("write after the acknowledgement: %v", err)
	}
	if s.Acked() != 4 {
		t.Errorf("Acked() = %d, want 4", s.Acked())
	}
	for _, o := range []rsp.WriteOptions{{Stream: 2}, {Unordered: true}, {Element: 12345}} {
		if _, err := s.WriteMsg([]byte("x"), o); !errors.Is(err, rsp.ErrNotSupported) {
			t.Errorf("WriteMsg with %+v: %v, want ErrNotSupported", o, err)
		}
	}
}

// TestSessionCloseEndsFailover: a session closed while it fails over (its
// only element died, no other is registered yet) stops failing over, as
// one closed before its element died never starts: an element that joins
// the pool later gets no connection from it. Before, the failover went on
// for up to FailoverTimeout, connected to the new element, and only then
// ended.
func TestSessionCloseEndsFailover(t *testing.T) {
	const pool = "close-fo"
	pes, regs := startSessionPool(t, 1, pool, peOptions{stateless: true})
	s := dialSession(t, regs, pool, rsp.SessionConfig{HeartbeatInterval: resetHeartbeat,
		FailoverTimeout: 30 * time.Second, FailoverBackoff: 50 * time.Millisecond})
	if _, err := s.WriteMsg([]byte("1"), rsp.WriteOptions{AckRequest: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the acknowledgement", 2*time.Second, func() bool { return s.Acked() == 1 })
	pes[s.Element().ID].crash()
	time.Sleep(300 * time.Millisecond) // noticed at once (a reset): failing over
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	late := startSessionPE(t, regs, pool, peOptions{stateless: true})
	// The failover's rounds come every 50 ms, doubling to 4 s: one found
	// the new element within a second.
	time.Sleep(2 * time.Second)
	late.mu.Lock()
	defer late.mu.Unlock()
	if n := len(late.conns); n != 0 {
		t.Errorf("the element that joined after Close accepted %d connections, want none: the closed session went on failing over", n)
	}
}
