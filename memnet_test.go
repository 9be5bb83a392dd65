package rsp

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/registrar"
	"github.com/rsp-go/rsp/ulpack"
)

// memNet is an in-memory network of loopback-looking TCP addresses, with a
// registrar, for tests of pools on fake time (testing/synctest), where
// sockets cannot be used: listeners (ListenConfig.listen) and dialers
// (Dialer.dial) meet over net.Pipe.
type memNet struct {
	t    *testing.T
	r    *registrar.Registrar
	mu   sync.Mutex
	ls   map[string]*memListener
	port int
	// regTaps are what the registrar read from each connection.
	regTaps []*[]byte
}

// newMemNet starts a registrar on an in-memory network. Everything it and
// its endpoints, listeners and sessions start must end before the
// synctest bubble does: the test closes them (memNet.close closes the
// registrar last).
func newMemNet(t *testing.T) *memNet {
	return &memNet{t: t, ls: make(map[string]*memListener),
		r: registrar.New(registrar.Config{KeepAliveInterval: time.Second, KeepAliveTimeout: time.Second})}
}

func (n *memNet) close() { n.r.Close() }

// memAddrConn is one end of a pipe with TCP addresses.
type memAddrConn struct {
	net.Conn
	local, remote net.Addr
}

func (c memAddrConn) LocalAddr() net.Addr  { return c.local }
func (c memAddrConn) RemoteAddr() net.Addr { return c.remote }
func (c memAddrConn) CloseWrite() error    { return c.Conn.(*memEnd).CloseWrite() }

func (n *memNet) newAddr() *net.TCPAddr {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.port++
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000 + n.port}
}

// endpoint returns an ASAP endpoint that reaches the registrar.
func (n *memNet) endpoint() *endpoint.Endpoint {
	raddr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3863}
	return endpoint.New(endpoint.Config{
		Registrars:    []string{"tcp:" + raddr.String()},
		CacheLifetime: -1,
		Dialer: func(ctx context.Context, network, address string) (mapping.Conn, error) {
			local := n.newAddr()
			x, y := memPipe()
			tap := new([]byte)
			n.mu.Lock()
			n.regTaps = append(n.regTaps, tap)
			n.mu.Unlock()
			n.r.ServeConn(mapping.NewTCPConn(tapConn{memAddrConn{x, raddr, local}, &n.mu, tap}, mapping.Config{}))
			return mapping.NewTCPConn(memAddrConn{y, local, raddr}, mapping.Config{}), nil
		},
	})
}

func (n *memNet) listen(ctx context.Context, network, addr string) (net.Listener, error) {
	l := &memListener{n: n, addr: n.newAddr(), conns: make(chan net.Conn), done: make(chan struct{})}
	n.mu.Lock()
	n.ls[l.addr.String()] = l
	n.mu.Unlock()
	return l, nil
}

func (n *memNet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	l := n.ls[addr]
	n.mu.Unlock()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	if l == nil {
		return nil, refused
	}
	local := n.newAddr()
	x, y := memPipe()
	tap := new([]byte)
	server := tapConn{memAddrConn{y, l.addr, local}, &n.mu, tap}
	select {
	case l.conns <- server:
		n.mu.Lock()
		l.accepted = append(l.accepted, server)
		l.taps = append(l.taps, tap)
		n.mu.Unlock()
		return memAddrConn{x, local, l.addr}, nil
	case <-l.done:
		return nil, refused
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// memListener is a listener of a memNet.
type memListener struct {
	n     *memNet
	addr  *net.TCPAddr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	// Under n.mu: the server ends of the connections accepted, and what
	// was read from each.
	accepted []net.Conn
	taps     []*[]byte
}

// tapConn keeps a copy of what is read from a connection.
type tapConn struct {
	net.Conn
	mu  *sync.Mutex
	buf *[]byte
}

func (c tapConn) CloseWrite() error { return c.Conn.(memAddrConn).CloseWrite() }

func (c tapConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	*c.buf = append(*c.buf, b[:n]...)
	c.mu.Unlock()
	return n, err
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: net.ErrClosed}
	}
}

func (l *memListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.n.mu.Lock()
		delete(l.n.ls, l.addr.String())
		l.n.mu.Unlock()
	})
	return nil
}

func (l *memListener) Addr() net.Addr { return l.addr }

// memElement is a pool element on a memNet whose application reads each
// message of each session, records it, answers a message that starts with
// 'e' with its echo, and, if set, calls hold before it reads the next.
type memElement struct {
	l    *Listener
	ep   *endpoint.Endpoint
	msgs chan Message
	hold func(s *Session, m Message)
	wg   sync.WaitGroup
}

// startElement starts a pool element of pool on n. msgs (if not nil)
// receives every message its applications read.
func (n *memNet) startElement(pool string, cfg SessionConfig, msgs chan Message) *memElement {
	n.t.Helper()
	e := &memElement{ep: n.endpoint(), msgs: msgs}
	lc := ListenConfig{Endpoint: e.ep, listen: n.listen, Session: cfg}
	l, err := lc.Listen(context.Background(), "tcp", "pool:"+pool)
	if err != nil {
		n.t.Fatal(err)
	}
	e.l = l
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s := c.(*Session)
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer s.Close()
				for {
					m, err := s.ReadMsg()
					if err != nil {
						return
					}
					if e.msgs != nil {
						e.msgs <- m
					}
					if len(m.Data) > 0 && m.Data[0] == 'e' {
						if _, err := s.Write(m.Data); err != nil {
							return
						}
					}
					if e.hold != nil {
						e.hold(s, m)
					}
				}
			}()
		}
	}()
	return e
}

// stop closes the element and waits for its applications to end.
func (e *memElement) stop() {
	e.l.Close()
	e.wg.Wait()
	e.ep.Close()
}

// dialer returns a Dialer of pool users on n, with an endpoint of its own.
func (n *memNet) dialer(cfg SessionConfig) (*Dialer, func()) {
	ep := n.endpoint()
	return &Dialer{Endpoint: ep, dial: n.dial, Timeout: time.Second, Session: cfg}, func() { ep.Close() }
}

// dialSession dials a session to pool.
func (n *memNet) dialSession(d *Dialer, pool string) *Session {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", "pool:"+pool)
	if err != nil {
		n.t.Fatal(err)
	}
	s, ok := c.(*Session)
	if !ok {
		n.t.Fatalf("dialed a %T, want a *Session", c)
	}
	return s
}

// waitPool waits, on fake time, until the registrar has k elements in
// pool.
func (n *memNet) waitPool(pool string, k int) {
	n.t.Helper()
	ep := n.endpoint()
	defer ep.Close()
	for range 100 {
		res, err := ep.Resolve(context.Background(), asap.PoolHandle(pool))
		if err == nil && len(res.PEs) == k {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	n.t.Fatalf("pool %q never had %d elements", pool, k)
}

// listener returns the memListener l listens on.
func (n *memNet) listener(l *Listener) *memListener { return l.Listener.(*memListener) }

// crash ends the element as a dying process does: its connections break,
// it refuses new ones, it does not deregister (the registrar keeps it
// listed until its keep-alives time out).
func (n *memNet) crash(e *memElement) {
	n.listener(e.l).Close()
	n.breakConns(e)
}

// breakConns breaks every connection element e accepted, as a reset
// does, without a CLOSE of its sessions; e goes on accepting.
func (n *memNet) breakConns(e *memElement) {
	ml := n.listener(e.l)
	n.mu.Lock()
	conns := ml.accepted
	n.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// frames calls f with the tag and payload of each data frame of the TCP
// mapping in the byte streams bufs. n.mu is held.
func (n *memNet) frames(bufs []*[]byte, f func(tag uint32, payload []byte)) {
	n.t.Helper()
	for _, tap := range bufs {
		b := *tap
		for len(b) >= mapping.FrameHeaderLen {
			h, err := mapping.ParseFrameHeader(b, 1<<30)
			if err != nil {
				n.t.Fatalf("a bad frame on the in-memory network: %v", err)
			}
			if len(b) < mapping.FrameHeaderLen+int(h.Length) {
				break
			}
			payload := b[mapping.FrameHeaderLen : mapping.FrameHeaderLen+int(h.Length)]
			b = b[mapping.FrameHeaderLen+int(h.Length):]
			if h.Type == mapping.FrameData {
				f(h.Tag, payload)
			}
		}
	}
}

// dataFrames returns the DATA frames of the session channel that element
// e read from its connections, in the order each connection brought them.
func (n *memNet) dataFrames(e *memElement) []ulpack.Data {
	n.t.Helper()
	ml := n.listener(e.l)
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []ulpack.Data
	n.frames(ml.taps, func(tag uint32, payload []byte) {
		if tag != ulpack.PPID {
			return
		}
		if f, err := ulpack.ParseFrame(payload); err == nil {
			if d, ok := f.(*ulpack.Data); ok {
				c := *d
				c.Payload = append([]byte(nil), d.Payload...)
				out = append(out, c)
			}
		}
	})
	return out
}

// reportedUnreachable returns the elements reported unreachable to the
// registrar (ASAP_ENDPOINT_UNREACHABLE).
func (n *memNet) reportedUnreachable() []asap.PEID {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []asap.PEID
	n.frames(n.regTaps, func(tag uint32, payload []byte) {
		if tag != mapping.PPIDASAP {
			return
		}
		if m, err := asap.Unmarshal(append([]byte(nil), payload...)); err == nil {
			if u, ok := m.(*asap.EndpointUnreachable); ok {
				out = append(out, u.ID)
			}
		}
	})
	return out
}

// TestMemNetSmoke: a session over the in-memory network, on fake time.
func TestMemNetSmoke(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet(t)
		defer n.close()
		cfg := SessionConfig{Stateless: true}
		a := n.startElement("p", cfg, nil)
		b := n.startElement("p", cfg, nil)
		n.waitPool("p", 2)
		d, stop := n.dialer(SessionConfig{})
		s := n.dialSession(d, "p")
		s.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := s.WriteMsg([]byte("ehello"), WriteOptions{AckRequest: true}); err != nil {
			t.Fatal(err)
		}
		m, err := s.ReadMsg()
		if err != nil || string(m.Data) != "ehello" {
			t.Fatalf("%q %v", m.Data, err)
		}
		s.Close()
		stop()
		a.stop()
		b.stop()
	})
}

// memPipe returns the two ends of an in-memory connection that, unlike
// net.Pipe, buffers what is written (as a socket does), so that two
// peers that both write before they read do not block each other. All
// its waits are on channels, which testing/synctest sees as durably
// blocked.
func memPipe() (net.Conn, net.Conn) {
	ab, ba := make(chan []byte, 4096), make(chan []byte, 4096)
	ca, cb := make(chan struct{}), make(chan struct{})
	wa, wb := make(chan struct{}), make(chan struct{})
	a := &memEnd{rx: ba, tx: ab, closed: ca, peerClosed: cb, wclosed: wa, peerWClosed: wb, rlock: make(chan struct{}, 1)}
	b := &memEnd{rx: ab, tx: ba, closed: cb, peerClosed: ca, wclosed: wb, peerWClosed: wa, rlock: make(chan struct{}, 1)}
	for _, e := range []*memEnd{a, b} {
		e.rdl.init()
		e.wdl.init()
	}
	return a, b
}

// memEnd is one end of a memPipe.
type memEnd struct {
	rx, tx               chan []byte
	closed, peerClosed   chan struct{}
	wclosed, peerWClosed chan struct{} // CloseWrite: the reader gets io.EOF after the rest
	once, wonce          sync.Once
	rlock                chan struct{} // one reader at a time, for left
	left                 []byte
	rdl, wdl             deadline
}

func (e *memEnd) Read(b []byte) (int, error) {
	e.rlock <- struct{}{}
	defer func() { <-e.rlock }()
	if isClosedChan(e.closed) {
		return 0, io.ErrClosedPipe
	}
	if len(e.left) == 0 {
		if e.rdl.expired() {
			return 0, os.ErrDeadlineExceeded
		}
		select {
		case e.left = <-e.rx:
		case <-e.closed:
			return 0, io.ErrClosedPipe
		case <-e.peerClosed:
			select {
			case e.left = <-e.rx: // what was written before the close
			default:
				return 0, io.EOF
			}
		case <-e.peerWClosed:
			select {
			case e.left = <-e.rx:
			default:
				return 0, io.EOF
			}
		case <-e.rdl.wait():
			return 0, os.ErrDeadlineExceeded
		}
	}
	n := copy(b, e.left)
	e.left = e.left[n:]
	return n, nil
}

func (e *memEnd) Write(b []byte) (int, error) {
	switch {
	case isClosedChan(e.closed), isClosedChan(e.peerClosed), isClosedChan(e.wclosed):
		return 0, io.ErrClosedPipe
	case e.wdl.expired():
		return 0, os.ErrDeadlineExceeded
	}
	if len(b) == 0 {
		return 0, nil
	}
	select {
	case e.tx <- bytes.Clone(b):
		return len(b), nil
	case <-e.closed:
		return 0, io.ErrClosedPipe
	case <-e.peerClosed:
		return 0, io.ErrClosedPipe
	case <-e.wdl.wait():
		return 0, os.ErrDeadlineExceeded
	}
}

func (e *memEnd) Close() error {
	e.once.Do(func() { close(e.closed) })
	return nil
}

// CloseWrite shuts down the writing side, as TCP's half-close.
func (e *memEnd) CloseWrite() error {
	e.wonce.Do(func() { close(e.wclosed) })
	return nil
}

func (e *memEnd) LocalAddr() net.Addr  { return memPipeAddr{} }
func (e *memEnd) RemoteAddr() net.Addr { return memPipeAddr{} }

func (e *memEnd) SetDeadline(t time.Time) error {
	e.rdl.set(t)
	e.wdl.set(t)
	return nil
}
func (e *memEnd) SetReadDeadline(t time.Time) error  { e.rdl.set(t); return nil }
func (e *memEnd) SetWriteDeadline(t time.Time) error { e.wdl.set(t); return nil }

type memPipeAddr struct{}

func (memPipeAddr) Network() string { return "mem" }
func (memPipeAddr) String() string  { return "mem" }
