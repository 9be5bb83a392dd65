package rsp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/registrar"
)

// testRegistrar runs a registrar on loopback with fast keep-alives and
// returns it with its registrar list.
func testRegistrar(t testing.TB) (*registrar.Registrar, []string) {
	t.Helper()
	return testRegistrarWith(t, registrar.Config{
		KeepAliveInterval: 200 * time.Millisecond,
		KeepAliveTimeout:  300 * time.Millisecond,
	})
}

// testRegistrarWith is testRegistrar with cfg.
func testRegistrarWith(t testing.TB, cfg registrar.Config) (*registrar.Registrar, []string) {
	t.Helper()
	r := registrar.New(cfg)
	l, err := registrar.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(l)
	t.Cleanup(func() { r.Close() })
	return r, []string{"tcp:" + l.Addr().String()}
}

// newEndpoint returns an ASAP endpoint of its own, as a separate process
// would have.
func newEndpoint(t testing.TB, registrars []string) *endpoint.Endpoint {
	t.Helper()
	ep := endpoint.New(endpoint.Config{Registrars: registrars, CacheLifetime: 100 * time.Millisecond})
	t.Cleanup(func() { ep.Close() })
	return ep
}

// pooled is a pooled listener with an ASAP endpoint of its own, as a
// separate server process would have.
type pooled struct {
	ep        *endpoint.Endpoint
	l         *rsp.Listener
	frozen    chan struct{}
	freezeOne sync.Once
}

func startPooled(t testing.TB, registrars []string, pool string) *pooled {
	t.Helper()
	p := &pooled{frozen: make(chan struct{})}
	var d mapping.Dialer
	p.ep = endpoint.New(endpoint.Config{
		Registrars: registrars,
		Dialer: func(ctx context.Context, network, addr string) (mapping.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &freezableConn{Conn: c, frozen: p.frozen, closed: make(chan struct{})}, nil
		},
	})
	t.Cleanup(func() { p.ep.Close() })
	lc := rsp.ListenConfig{Endpoint: p.ep, LocalAddr: "127.0.0.1:0"}
	l, err := lc.Listen(context.Background(), "tcp", "pool:"+pool)
	if err != nil {
		t.Fatal(err)
	}
	p.l = l
	t.Cleanup(func() { l.Close() })
	return p
}

// crash stops the server as a dying process would: no deregistration, its
// registrar connection and its sockets just go away.
func (p *pooled) crash() {
	p.ep.Close()
	p.l.Close()
}

// freeze makes the server's registrar connection silent: it neither reads
// nor writes any more, while staying open, as a hung host's.
func (p *pooled) freeze() { p.freezeOne.Do(func() { close(p.frozen) }) }

// freezableConn is a registrar connection that can go silent.
type freezableConn struct {
	mapping.Conn
	frozen    chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
}

func (c *freezableConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func (c *freezableConn) ReadMsg(b []byte) (int, uint32, error) {
	n, ppid, err := c.Conn.ReadMsg(b)
	select {
	case <-c.frozen:
		<-c.closed // nothing arrives until the end
		return 0, 0, net.ErrClosed
	default:
	}
	return n, ppid, err
}

func (c *freezableConn) WriteMsg(b []byte, ppid uint32) error {
	select {
	case <-c.frozen:
		return nil
	default:
		return c.Conn.WriteMsg(b, ppid)
	}
}

// pooledHTTP is a pooled HTTP server that answers with its name.
type pooledHTTP struct {
	*pooled
	srv  *http.Server
	done chan error
}

func startPooledHTTP(t testing.TB, registrars []string, pool, name string, configure ...func(*http.Server)) *pooledHTTP {
	t.Helper()
	s := &pooledHTTP{pooled: startPooled(t, registrars, pool), done: make(chan error, 1)}
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name)
	})}
	for _, f := range configure {
		f(s.srv)
	}
	go func() { s.done <- s.srv.Serve(s.l) }()
	t.Cleanup(func() { s.srv.Close() })
	return s
}

// crash kills the server without deregistration.
func (s *pooledHTTP) crash() {
	s.pooled.crash()
	s.srv.Close()
}

func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, timeout, what, cond)
}

func poolSize(r *registrar.Registrar, h string) int {
	p, _ := r.Pool(asap.PoolHandle(h))
	return len(p.Elements)
}

func TestHTTPFailover(t *testing.T) {
	r, regs := testRegistrar(t)
	servers := []*pooledHTTP{
		startPooledHTTP(t, regs, "web", "a"),
		startPooledHTTP(t, regs, "web", "b"),
		startPooledHTTP(t, regs, "web", "c"),
	}
	waitFor(t, "three servers in the pool", 2*time.Second, func() bool { return poolSize(r, "web") == 3 })

	d := &rsp.Dialer{Endpoint: newEndpoint(t, regs), Timeout: time.Second}
	client := &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
			DisableKeepAlives: true,
		},
		Timeout: 5 * time.Second,
	}
	get := func() (string, error) {
		resp, err := client.Get("http://web/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	seen := map[string]int{}
	for range 9 {
		name, err := get()
		if err != nil {
			t.Fatal(err)
		}
		seen[name]++
	}
	if len(seen) != 3 {
		t.Errorf("answers %v: want all three servers used under round robin", seen)
	}

	servers[0].crash()
	start := time.Now()
	for range 20 {
		name, err := get()
		if err != nil {
			t.Fatalf("GET after a server died: %v", err)
		}
		if name == "a" {
			t.Fatal("answer from the dead server")
		}
	}
	waitFor(t, "the dead server to leave the pool", 2*time.Second, func() bool { return poolSize(r, "web") == 2 })
	t.Logf("dead server left the pool %v after it died", time.Since(start))
}

func TestDeadServerLeavesWithinKeepAliveTimeout(t *testing.T) {
	r, regs := testRegistrar(t)
	s := startPooledHTTP(t, regs, "ka", "a")
	waitFor(t, "registration", 2*time.Second, func() bool { return poolSize(r, "ka") == 1 })
	// Stop answering keep-alives without closing anything: the endpoint's
	// registrar connection stays open but goes silent, as a hung host's.
	s.freeze()
	start := time.Now()
	waitFor(t, "the silent server to leave the pool", 2*time.Second, func() bool { return poolSize(r, "ka") == 0 })
	if took := time.Since(start); took > time.Second {
		t.Errorf("took %v, want within keep-alive interval + timeout (500ms)", took)
	}
	// A frozen server's listener would wait DefaultDeregisterWait (2 s) at
	// the test's end for a deregistration that is never answered.
	s.crash()
}

func TestListenerCloseDeregisters(t *testing.T) {
	r, regs := testRegistrar(t)
	s := startPooledHTTP(t, regs, "bye", "a")
	waitFor(t, "registration", 2*time.Second, func() bool { return poolSize(r, "bye") == 1 })
	if err := s.l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := poolSize(r, "bye"); n != 0 {
		t.Fatalf("pool has %d elements after Close, want 0 (deregistered before Close returned)", n)
	}
	if err := <-s.done; !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve returned %v, want net.ErrClosed", err)
	}
	if _, err := s.l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
}

func TestShutdownWithIdleTimeout(t *testing.T) {
	_, regs := testRegistrar(t)
	s := startPooledHTTP(t, regs, "idle", "a", func(s *http.Server) { s.IdleTimeout = 100 * time.Millisecond })
	d := &rsp.Dialer{Endpoint: newEndpoint(t, regs)}
	c, err := d.DialContext(context.Background(), "tcp", "pool:idle")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: idle\r\n\r\n")
	buf := make([]byte, 512)
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	// The connection is idle and kept alive; Shutdown must not wait for it
	// beyond the idle timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v after %v", err, time.Since(start))
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Shutdown took %v", took)
	}
}

func TestDialUnknownPool(t *testing.T) {
	_, regs := testRegistrar(t)
	d := &rsp.Dialer{Endpoint: newEndpoint(t, regs)}
	_, err := d.DialContext(context.Background(), "tcp", "pool:missing")
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		t.Fatalf("error %v: want a *net.OpError from dial", err)
	}
	if !errors.Is(err, endpoint.ErrUnknownPool) {
		t.Fatalf("error %v: want endpoint.ErrUnknownPool", err)
	}
}

func TestDialSkipsRefusingServerAndReportsIt(t *testing.T) {
	// A keep-alive timeout long enough that a loaded machine's stall does
	// not remove an element that answers; the check below waits past it.
	const keepAliveTimeout = time.Second
	r, regs := testRegistrarWith(t, registrar.Config{
		KeepAliveInterval: 200 * time.Millisecond,
		KeepAliveTimeout:  keepAliveTimeout,
	})
	live := startPooledHTTP(t, regs, "skip", "live")
	_ = live
	// A registration for a port where nothing listens.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	tr, err := rsp.ParseTransport("tcp:" + deadAddr)
	if err != nil {
		t.Fatal(err)
	}
	tr.Use = asap.DataPlusControl // as the live element, which speaks sessions
	if _, err := newEndpoint(t, regs).Register(context.Background(), "skip", asap.PoolElement{UserTransport: tr, Policy: rsp.RoundRobinPolicy}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two elements", 2*time.Second, func() bool { return poolSize(r, "skip") == 2 })

	// Round robin puts the dead element first for every other pool user;
	// each dial still succeeds, and reports it.
	for range 8 {
		d := &rsp.Dialer{Endpoint: newEndpoint(t, regs)}
		c, err := d.DialContext(context.Background(), "tcp", "pool:skip")
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	// The reports make the registrar probe the element; its endpoint
	// answers the keep-alives, so it stays (one pool user's reports
	// cannot empty a pool), and dials go on skipping it.
	time.Sleep(keepAliveTimeout + keepAliveTimeout/2)
	if n := poolSize(r, "skip"); n != 2 {
		t.Fatalf("pool holds %d elements after the reports, want both: the refusing one answers its keep-alives", n)
	}
}
