package rsp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/sctp"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/policy"
)

// Defaults of ListenConfig.
const (
	DefaultCapacity       = 100
	DefaultLoadUpdate     = time.Second
	DefaultDeregisterWait = 2 * time.Second
)

// ListenConfig configures a pooled listener. The zero value listens on TCP
// on every address with an ephemeral port, registers with round robin
// policy at the registrars of the environment (see the package
// documentation), and reports its active connections as its load.
type ListenConfig struct {
	// Registrars lists the registrars to register with ("tcp:host:port",
	// "sctp:host:port"); empty means RSP_REGISTRARS or the default.
	// Ignored when Endpoint is set.
	Registrars []string
	// Endpoint is the ASAP endpoint to register through; nil means one
	// shared by this process's listeners and dialers with the same
	// registrars.
	Endpoint *endpoint.Endpoint

	// LocalAddr is the address to listen on; empty means ":0".
	LocalAddr string

	// Policy is the pool element's selection policy; the zero value means
	// round robin. For adaptive policies (least used and its variants) the
	// listener fills in Load.
	Policy policy.Policy

	// Capacity is the number of active connections at which the listener
	// reports itself fully loaded; zero means DefaultCapacity. Load, if
	// set, replaces the default load (active connections / Capacity).
	Capacity int
	Load     func(active int) uint32

	// LoadUpdate is the shortest time between two re-registrations for a
	// changed load; zero means DefaultLoadUpdate.
	LoadUpdate time.Duration

	// TLSConfig, when set, makes the listener's connections TLS 1.3
	// server connections: Accept returns a *tls.Conn, whose handshake
	// runs on its first Read or Write (or Handshake), as with tls.Listen;
	// http.Server.Serve sees it is TLS and fills in Request.TLS. Its
	// certificate should name the pool handle as a DNS name, which is what
	// a Dialer with a TLSConfig verifies by default. Only over TCP. nil
	// means plain connections.
	TLSConfig *tls.Config
	// RegistrarTLSConfig, when set and Endpoint is nil, makes the
	// connection to the registrars TLS 1.3 with it (see
	// endpoint.Config.TLSConfig): RootCAs to verify the registrar, and
	// Certificates for the registrar to know the pool element by.
	RegistrarTLSConfig *tls.Config

	// AdvertiseAddr, if set, is the "host:port" to register instead of
	// the listening address, as behind a port forward.
	AdvertiseAddr string

	// Plain registers the listener as an element that does not speak
	// sessions (transport use 0, "data only"): every connection is a
	// plain one, as with a TLSConfig. Without either a listener registers
	// as speaking sessions (see the package documentation; over SCTP each
	// association says so too, spec/session.md section 6) and Accept
	// returns a *Session for each pool user that opens one, and a plain
	// connection for any other client.
	Plain bool
	// Session configures the sessions accepted.
	Session SessionConfig

	// Logger receives the listener's logs; nil discards them.
	Logger *slog.Logger

	// listen, if set, listens over TCP instead of the network (tests on
	// fake time use an in-memory one).
	listen func(ctx context.Context, network, addr string) (net.Listener, error)
}

// Listen announces on the local network address and registers it in the
// pool the address names ("pool:echo") through the environment's
// registrars.
func Listen(address string) (*Listener, error) {
	var lc ListenConfig
	return lc.Listen(context.Background(), "tcp", address)
}

// Listen listens on network ("tcp", "tcp4", "tcp6", or "sctp" where the
// kernel has it) at lc.LocalAddr and registers the listening address in the
// pool that address names. ctx bounds the registration.
func (lc *ListenConfig) Listen(ctx context.Context, network, address string) (*Listener, error) {
	handle, err := poolHandle(address)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	if lc.TLSConfig != nil && network == "sctp" {
		return nil, &net.OpError{Op: "listen", Net: network, Err: errTLSOverSCTP}
	}
	local := lc.LocalAddr
	if local == "" {
		local = ":0"
	}
	var inner net.Listener
	sessions := !lc.Plain && lc.TLSConfig == nil
	if network == "sctp" {
		var cfg mapping.Config
		if sessions {
			cfg = lc.Session.withDefaults().sctpConfig()
		}
		inner, err = listenSCTP(ctx, local, cfg)
	} else if lc.listen != nil {
		inner, err = lc.listen(ctx, network, local)
	} else {
		var nlc net.ListenConfig
		inner, err = nlc.Listen(ctx, network, local)
	}
	if err != nil {
		return nil, err
	}
	ep := lc.Endpoint
	if ep == nil {
		ep = sharedEndpoint(lc.Registrars, lc.RegistrarTLSConfig)
	}
	l := &Listener{
		Listener: inner,
		handle:   handle,
		ep:       ep,
		capacity: lc.Capacity,
		loadFn:   lc.Load,
		interval: lc.LoadUpdate,
		log:      lc.Logger,
		policy:   lc.Policy,
		tls:      lc.TLSConfig,
		changed:  make(chan struct{}, 1),
		done:     make(chan struct{}),
		quit:     make(chan struct{}),
		sessions: sessions,
		scfg:     lc.Session.withDefaults(),
		ready:    make(chan net.Conn),
	}
	if l.capacity <= 0 {
		l.capacity = DefaultCapacity
	}
	if l.interval <= 0 {
		l.interval = DefaultLoadUpdate
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.policy.Type == 0 {
		l.policy.Type = policy.RoundRobin
	}
	l.policy.Load = l.load(0)
	var regAddr net.Addr = inner.Addr()
	if lc.AdvertiseAddr != "" {
		ap, err := netip.ParseAddrPort(lc.AdvertiseAddr)
		if err != nil {
			inner.Close()
			return nil, &net.OpError{Op: "listen", Net: network, Err: fmt.Errorf("advertised address: %w", err)}
		}
		regAddr = net.TCPAddrFromAddrPort(ap)
	}
	pe, err := poolElementFor(regAddr, l.policy)
	if err != nil {
		inner.Close()
		return nil, err
	}
	if sessions {
		pe.UserTransport.Use = asap.DataPlusControl
	}
	reg, err := ep.Register(ctx, handle, pe)
	if err != nil {
		inner.Close()
		var re *endpoint.RegistrationError
		if errors.As(err, &re) && re.Has(asap.CauseInconsistentDataControl) {
			kind := "speak sessions"
			if !sessions {
				kind = "are plain"
			}
			err = fmt.Errorf("%w (this element's connections %s and the pool's do not: see ListenConfig.Plain)", err, kind)
		}
		return nil, &net.OpError{Op: "listen", Net: network, Addr: inner.Addr(), Err: fmt.Errorf("registering in pool %q: %w", handle, err)}
	}
	l.reg = reg
	if l.scfg.Logger == nil || lc.Session.Logger == nil {
		l.scfg.Logger = l.log
	}
	l.wg.Add(1)
	l.awg.Add(1)
	go l.updateLoop()
	go l.acceptLoop()
	return l, nil
}

// poolElementFor describes a listening address as a pool element. An
// unspecified address is registered as such: the registrar substitutes the
// address the element reaches it from.
func poolElementFor(a net.Addr, pol policy.Policy) (asap.PoolElement, error) {
	if sa, ok := a.(*sctp.Addr); ok {
		return asap.PoolElement{UserTransport: sctpTransport(sa), Policy: pol}, nil
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return asap.PoolElement{}, fmt.Errorf("rsp: listening address %v: %w", a, err)
	}
	addr := ap.Addr().Unmap()
	if addr.IsUnspecified() && addr.Is6() {
		// ":0" listens on both families; register the one registrars
		// see most (the registrar fills in the IPv4 address).
		addr = netip.IPv4Unspecified()
	}
	return asap.PoolElement{
		UserTransport: asap.Transport{Kind: asap.ParamTCPTransport, Port: ap.Port(), Addrs: []netip.Addr{addr}},
		Policy:        pol,
	}, nil
}

// Listener is a net.Listener whose address is registered in a pool. Close
// deregisters it before it stops accepting; Shutdown also moves its
// sessions to other elements of the pool.
type Listener struct {
	net.Listener
	handle   asap.PoolHandle
	ep       *endpoint.Endpoint
	reg      *endpoint.Registration
	capacity int
	loadFn   func(int) uint32
	interval time.Duration
	log      *slog.Logger
	tls      *tls.Config // nil: plain connections

	mu     sync.Mutex
	policy policy.Policy

	sessions  bool
	scfg      SessionConfig
	ready     chan net.Conn // accepted connections, sniffed
	errMu     sync.Mutex
	acceptErr error

	active    atomic.Int64
	changed   chan struct{}
	done      chan struct{} // closed when accepting ended
	quit      chan struct{} // closed by Close: stops updateLoop
	once      sync.Once     // closes done
	closeOnce sync.Once
	wg        sync.WaitGroup // updateLoop
	awg       sync.WaitGroup // acceptLoop

	// Sessions opened and not ended (session_shutdown.go).
	smu      sync.Mutex
	live     map[*Session]struct{}
	draining bool          // Shutdown was called
	idle     chan struct{} // closed once draining and no session is live
}

// Handle returns the pool handle the listener is registered under.
func (l *Listener) Handle() string { return string(l.handle) }

// ID returns the listener's pool element identifier.
func (l *Listener) ID() asap.PEID { return l.reg.ID() }

// Accept waits for and returns the next connection: a *Session for a pool
// user that opened one, a plain connection otherwise, which is a *tls.Conn
// when the ListenConfig had a TLSConfig. After Close it returns an error
// wrapping net.ErrClosed.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
	}
	l.errMu.Lock()
	err := l.acceptErr
	l.errMu.Unlock()
	if err == nil || errors.Is(err, net.ErrClosed) {
		return nil, &net.OpError{Op: "accept", Net: l.Addr().Network(), Addr: l.Addr(), Err: net.ErrClosed}
	}
	return nil, err
}

// acceptLoop accepts connections and tells sessions from plain ones, each
// in a goroutine of its own so that a slow client holds up no other.
func (l *Listener) acceptLoop() {
	defer l.awg.Done()
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				select {
				case <-l.done:
					return
				case <-time.After(delay):
				}
				continue
			}
			l.errMu.Lock()
			l.acceptErr = err
			l.errMu.Unlock()
			l.once.Do(func() { close(l.done) })
			return
		}
		delay = 0
		go l.sniff(c)
	}
}

// handPlain passes a plain connection to Accept, as a TLS server
// connection if the listener has a TLSConfig.
func (l *Listener) handPlain(c net.Conn) {
	cc := &countedConn{Conn: c, l: l}
	if l.tls != nil {
		l.hand(tls.Server(cc, l.tls))
		return
	}
	l.hand(cc)
}

// hand passes an accepted connection to Accept, or closes it when the
// listener closed.
func (l *Listener) hand(c net.Conn) {
	l.active.Add(1)
	l.loadChanged()
	select {
	case l.ready <- c:
	case <-l.done:
		c.Close()
	}
}

// Close deregisters the listener from its pool (waiting at most
// DefaultDeregisterWait for the registrar), then closes it. It is
// immediate: it does not wait for connections. Those already accepted,
// sessions included, stay open, as with any net.Listener, for the
// application to close; sessions opened but not yet accepted go away
// (GOAWAY): their pool users fail over. Shutdown instead moves every
// session to another element.
func (l *Listener) Close() error {
	return l.close(context.Background())
}

// close deregisters the listener (within ctx and DefaultDeregisterWait)
// and closes it.
func (l *Listener) close(ctx context.Context) error {
	err := net.ErrClosed
	l.closeOnce.Do(func() {
		close(l.quit)
		l.wg.Wait()
		ctx, cancel := context.WithTimeout(ctx, DefaultDeregisterWait)
		derr := l.reg.Close(ctx)
		cancel()
		if derr != nil {
			l.log.Warn("deregistration failed", "pool", l.handle, "err", derr)
		}
		err = l.Listener.Close()
		l.awg.Wait()
	})
	if errors.Is(err, net.ErrClosed) {
		return &net.OpError{Op: "close", Net: l.Addr().Network(), Addr: l.Addr(), Err: net.ErrClosed}
	}
	return err
}

// SetPolicy changes the policy values the listener registers (for example a
// priority or weight) and re-registers. The load of adaptive policies stays
// the listener's own.
func (l *Listener) SetPolicy(p policy.Policy) {
	l.mu.Lock()
	load := l.policy.Load
	l.policy = p
	l.policy.Load = load
	l.mu.Unlock()
	l.loadChanged()
}

// Active returns the number of accepted connections not yet closed.
func (l *Listener) Active() int { return int(l.active.Load()) }

func (l *Listener) load(active int) uint32 {
	if l.loadFn != nil {
		return l.loadFn(active)
	}
	if active >= l.capacity {
		return math.MaxUint32
	}
	return uint32(uint64(active) * math.MaxUint32 / uint64(l.capacity))
}

func (l *Listener) loadChanged() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// updateLoop re-registers when the load or policy changed, at most once per
// LoadUpdate.
func (l *Listener) updateLoop() {
	defer l.wg.Done()
	for {
		select {
		case <-l.quit:
			return
		case <-l.changed:
		}
		l.mu.Lock()
		p := l.policy
		if p.Type.Adaptive() {
			p.Load = l.load(l.Active())
		}
		changed := p != l.reg.Policy()
		l.policy = p
		l.mu.Unlock()
		if changed {
			ctx, cancel := context.WithTimeout(context.Background(), l.interval*5)
			if err := l.reg.Update(ctx, p); err != nil {
				l.log.Warn("re-registration failed", "pool", l.handle, "err", err)
			}
			cancel()
		}
		select {
		case <-l.quit:
			return
		case <-time.After(l.interval):
		}
	}
}

// countedConn is a plain accepted connection: it tracks the listener's
// active connections and first returns what the sniffing read.
type countedConn struct {
	net.Conn
	l    *Listener
	once sync.Once
}

// NetConn returns the underlying connection (a *net.TCPConn over TCP).
// Bytes already read to tell a session from a plain connection are not in
// it any more: read through the countedConn.
func (c *countedConn) NetConn() net.Conn {
	if p, ok := c.Conn.(*prefixConn); ok {
		return p.Conn
	}
	return c.Conn
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.l.active.Add(-1)
		c.l.loadChanged()
	})
	return c.Conn.Close()
}

// CloseWrite shuts down the writing side of the connection when the
// underlying connection supports it (as *net.TCPConn does).
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return &net.OpError{Op: "close", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: errors.ErrUnsupported}
}
