package endpoint_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/policy"
)

// waitLong bounds the wait for something that must happen; tests that pass
// never wait that long.
const waitLong = 5 * time.Second

// fakeRegistrar is a scripted registrar on a loopback TCP port. It logs
// every ASAP message an endpoint sends it; its responder, when set, answers
// them, and a test may send anything on any of its connections.
type fakeRegistrar struct {
	t       *testing.T
	l       mapping.Listener
	addr    string // as Config.Registrars names it
	respond func(asap.Message) []asap.Message

	rmu sync.Mutex // serializes the responder

	mu      sync.Mutex
	log     []received
	read    int           // how far next has read the log
	changed chan struct{} // closed and replaced when the log grows
	conns   map[*fakeConn]bool
	closed  bool

	wg sync.WaitGroup
}

// fakeConn is one connection an endpoint opened to a fakeRegistrar.
type fakeConn struct {
	c    mapping.Conn
	done chan struct{} // closed when the connection ended
}

// received is a message the fake registrar received, and where.
type received struct {
	m    asap.Message
	conn *fakeConn
	at   time.Time
}

// newFake starts a fake registrar; respond may be nil (the test answers).
func newFake(t *testing.T, respond func(asap.Message) []asap.Message) *fakeRegistrar {
	t.Helper()
	var lc mapping.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRegistrar{
		t:       t,
		l:       l,
		addr:    "tcp:" + l.Addr().String(),
		respond: respond,
		changed: make(chan struct{}),
		conns:   make(map[*fakeConn]bool),
	}
	f.wg.Add(1)
	go f.acceptLoop()
	t.Cleanup(f.Close)
	return f
}

func (f *fakeRegistrar) acceptLoop() {
	defer f.wg.Done()
	for {
		c, err := f.l.Accept()
		if err != nil {
			return
		}
		fc := &fakeConn{c: c, done: make(chan struct{})}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			c.Close()
			return
		}
		f.conns[fc] = true
		f.wg.Add(1)
		f.mu.Unlock()
		go f.readLoop(fc)
	}
}

func (f *fakeRegistrar) readLoop(fc *fakeConn) {
	defer f.wg.Done()
	defer close(fc.done)
	buf := make([]byte, 1<<16)
	for {
		n, ppid, err := fc.c.ReadMsg(buf)
		if err != nil {
			if errors.Is(err, mapping.ErrMessageTooLong) {
				f.t.Errorf("endpoint sent a message longer than %d bytes", len(buf))
				continue
			}
			return
		}
		if ppid != mapping.PPIDASAP {
			f.t.Errorf("endpoint sent PPID %d, want %d (ASAP)", ppid, mapping.PPIDASAP)
			continue
		}
		m, err := asap.Unmarshal(buf[:n])
		if err != nil {
			f.t.Errorf("endpoint sent an undecodable message %x: %v", buf[:n], err)
			continue
		}
		f.mu.Lock()
		f.log = append(f.log, received{m: m, conn: fc, at: time.Now()})
		close(f.changed)
		f.changed = make(chan struct{})
		f.mu.Unlock()
		if f.respond == nil {
			continue
		}
		f.rmu.Lock()
		replies := f.respond(m)
		f.rmu.Unlock()
		for _, r := range replies {
			if err := writeMsg(fc, r); err != nil {
				break
			}
		}
	}
}

func writeMsg(fc *fakeConn, m asap.Message) error {
	b, err := m.AppendBinary(nil)
	if err != nil {
		return err
	}
	return fc.c.WriteMsg(b, mapping.PPIDASAP)
}

// Close stops listening, closes every connection and waits for the fake's
// goroutines.
func (f *fakeRegistrar) Close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.l.Close()
	f.dropConns()
	f.wg.Wait()
}

// dropConns closes the connections the fake has, as a registrar that
// restarts does; it keeps listening.
func (f *fakeRegistrar) dropConns() {
	f.mu.Lock()
	conns := make([]*fakeConn, 0, len(f.conns))
	for fc := range f.conns {
		conns = append(conns, fc)
	}
	f.mu.Unlock()
	for _, fc := range conns {
		fc.c.Close()
	}
}

// send sends m to the endpoint on connection fc.
func (f *fakeRegistrar) send(fc *fakeConn, m asap.Message) {
	f.t.Helper()
	if err := writeMsg(fc, m); err != nil {
		f.t.Fatalf("sending %T: %v", m, err)
	}
}

// next returns the oldest message next has not returned yet, waiting for
// it up to waitLong.
func (f *fakeRegistrar) next() received {
	f.t.Helper()
	r, ok := f.nextWithin(waitLong)
	if !ok {
		f.t.Fatalf("fake registrar: no message from the endpoint within %v", waitLong)
	}
	return r
}

func (f *fakeRegistrar) nextWithin(d time.Duration) (received, bool) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		if f.read < len(f.log) {
			r := f.log[f.read]
			f.read++
			f.mu.Unlock()
			return r, true
		}
		ch := f.changed
		f.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return received{}, false
		}
	}
}

// nextOf returns the next message, which must be a T.
func nextOf[T asap.Message](f *fakeRegistrar) (T, *fakeConn) {
	f.t.Helper()
	r := f.next()
	m, ok := r.m.(T)
	if !ok {
		var zero T
		f.t.Fatalf("fake registrar received %T %+v, want %T", r.m, r.m, zero)
	}
	return m, r.conn
}

// messages returns the messages of type typ received so far.
func (f *fakeRegistrar) messages(typ asap.MessageType) []received {
	f.mu.Lock()
	defer f.mu.Unlock()
	var rs []received
	for _, r := range f.log {
		if r.m.Type() == typ {
			rs = append(rs, r)
		}
	}
	return rs
}

func (f *fakeRegistrar) count(typ asap.MessageType) int { return len(f.messages(typ)) }

// waitCount waits until n messages of type typ have arrived and returns
// them.
func (f *fakeRegistrar) waitCount(typ asap.MessageType, n int) []received {
	f.t.Helper()
	deadline := time.NewTimer(waitLong)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		ch := f.changed
		f.mu.Unlock()
		if rs := f.messages(typ); len(rs) >= n {
			return rs
		}
		select {
		case <-ch:
		case <-deadline.C:
			f.t.Fatalf("fake registrar: %d %v within %v, want %d", f.count(typ), typ, waitLong, n)
		}
	}
}

// pool is what the answering responder knows of a pool.
type pool struct {
	policy *policy.Policy
	pes    []asap.PoolElement
}

// answering is a responder that behaves as a registrar: it accepts every
// registration and deregistration and resolves the pools given, answering
// other handles with "unknown pool handle".
func answering(pools map[asap.PoolHandle]pool) func(asap.Message) []asap.Message {
	return func(m asap.Message) []asap.Message {
		switch m := m.(type) {
		case *asap.Registration:
			return []asap.Message{&asap.RegistrationResponse{Handle: m.Handle, ID: m.PE.ID}}
		case *asap.Deregistration:
			return []asap.Message{&asap.DeregistrationResponse{Handle: m.Handle, ID: m.ID}}
		case *asap.HandleResolution:
			return []asap.Message{resolution(pools, m.Handle)}
		}
		return nil
	}
}

func resolution(pools map[asap.PoolHandle]pool, h asap.PoolHandle) *asap.HandleResolutionResponse {
	p, ok := pools[h]
	if !ok {
		return &asap.HandleResolutionResponse{Handle: h, Causes: []asap.Cause{{Code: asap.CauseUnknownPoolHandle}}}
	}
	return &asap.HandleResolutionResponse{Handle: h, Policy: p.policy, PEs: p.pes}
}

// testPE returns a pool element served on 127.0.0.1:port.
func testPE(id asap.PEID, port uint16) asap.PoolElement {
	return asap.PoolElement{
		ID:   id,
		Life: 30 * time.Second,
		UserTransport: asap.Transport{
			Kind:  asap.ParamTCPTransport,
			Port:  port,
			Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		},
		Policy: policy.Policy{Type: policy.RoundRobin},
	}
}

// newEndpoint returns an endpoint closed at the end of the test.
func newEndpoint(t *testing.T, cfg endpoint.Config) *endpoint.Endpoint {
	t.Helper()
	ep := endpoint.New(cfg)
	t.Cleanup(func() { ep.Close() })
	return ep
}

// deadAddr returns a loopback TCP address where nothing listens, as
// Config.Registrars names it.
func deadAddr(t *testing.T) string { return "tcp:" + testutil.FreeAddr(t) }

// ctxTimeout returns a context that ends after d or at the end of the test.
func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// ids returns the identifiers of pes in order.
func ids(pes []asap.PoolElement) []asap.PEID {
	out := make([]asap.PEID, len(pes))
	for i, pe := range pes {
		out[i] = pe.ID
	}
	return out
}
