package testutil

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy forwards TCP connections from a loopback port to a target until
// it is black-holed: then it keeps the connections open but forwards
// nothing more in either direction and accepts no new ones, as a peer
// that hangs or a network that drops everything does.
type Proxy struct {
	l         net.Listener
	target    string        // set before targetSet is closed
	targetSet chan struct{} // closed once target is known
	done      chan struct{} // closed by Close
	closeOnce sync.Once

	mu    sync.Mutex
	holed bool
	conns map[net.Conn]struct{}
}

// StartProxy starts a proxy to target ("host:port") for the test's
// duration. An empty target is given later with SetTarget: a server that
// advertises the proxy's address can then listen on a port of its own
// choosing (":0") rather than on a port taken back from the system, which
// another socket may take first. Until then connections wait.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{l: l, targetSet: make(chan struct{}), done: make(chan struct{}), conns: make(map[net.Conn]struct{})}
	if target != "" {
		p.SetTarget(target)
	}
	go p.accept()
	t.Cleanup(func() { p.Close() })
	return p
}

// SetTarget sets the address the proxy forwards to, once, if StartProxy
// was given none.
func (p *Proxy) SetTarget(target string) {
	p.target = target
	close(p.targetSet)
}

// Addr returns the proxy's address, "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// BlackHole stops all forwarding; connections stay open.
func (p *Proxy) BlackHole() {
	p.mu.Lock()
	p.holed = true
	p.mu.Unlock()
}

// Restore ends a black hole: the connections that were black-holed are
// closed (their streams lost data) and new ones are forwarded again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.holed = false
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
	p.mu.Unlock()
}

// Reset ends every connection through the proxy with a TCP reset, on both
// sides, as a host that died does; new connections are forwarded.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
		delete(p.conns, c)
	}
}

// Close stops the proxy and closes its connections.
func (p *Proxy) Close() {
	p.closeOnce.Do(func() { close(p.done) })
	p.l.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

func (p *Proxy) isHoled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.holed
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.holed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			// Black-holed: the connection is accepted and then ignored
			// until Restore or Close.
			go func() {
				io.Copy(io.Discard, c)
			}()
			p.mu.Lock()
			p.conns[c] = struct{}{}
			p.mu.Unlock()
			continue
		}
		go func() {
			select {
			case <-p.targetSet:
			case <-p.done:
				c.Close()
				return
			}
			d, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				return
			}
			if !p.track(d) {
				c.Close()
				d.Close()
				return
			}
			go p.pipe(d, c)
			p.pipe(c, d)
		}()
	}
}

// pipe copies from src to dst until either fails, dropping what it reads
// while the proxy is black-holed.
func (p *Proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.isHoled() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	src.Close()
	dst.Close()
}
