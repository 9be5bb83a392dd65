package rsp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"
	"weak"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/mapping"
)

// ErrNoServer is returned (wrapped in *net.OpError) when no pool element of
// the pool could be reached.
var ErrNoServer = errors.New("rsp: no pool element reachable")

// Dialer dials pools. The zero value resolves through the environment's
// registrars (see the package documentation), connects with a
// net.Dialer's defaults, and opens a session (see Session) to pool
// elements that speak sessions, with the defaults of SessionConfig.
type Dialer struct {
	// Registrars lists the registrars to resolve with; empty means
	// RSP_REGISTRARS or the default. Ignored when Endpoint is set.
	Registrars []string
	// Endpoint is the ASAP endpoint to resolve through; nil means one shared
	// by this process's listeners and dialers with the same registrars.
	Endpoint *endpoint.Endpoint

	// Timeout bounds each connection attempt to one pool element (zero:
	// only the context bounds it). The context bounds the whole dial.
	Timeout time.Duration
	// MaxAttempts is how many pool elements a dial tries before it fails;
	// zero means all that the registrar returned.
	MaxAttempts int
	// NetDialer connects to the pool elements; nil means a zero net.Dialer.
	NetDialer *net.Dialer

	// TLSConfig, when set, makes every connection to a pool element TLS
	// 1.3 with it, and only pool elements over TCP are tried. The
	// element's certificate must verify against RootCAs for the name
	// ServerName, which is the pool handle when TLSConfig leaves it empty:
	// an element of pool "echo" needs a certificate with the DNS name
	// "echo". An element whose certificate does not verify is skipped (not
	// reported unreachable), and the dial goes on to the next. nil means
	// plain connections.
	TLSConfig *tls.Config
	// RegistrarTLSConfig, when set and Endpoint is nil, makes the
	// connection to the registrars TLS 1.3 with it (see
	// endpoint.Config.TLSConfig).
	RegistrarTLSConfig *tls.Config

	// Plain makes every connection a plain one, as to an element that
	// does not speak sessions: the "name services only" mode.
	Plain bool
	// Session configures the sessions the dialer opens: heartbeats,
	// buffers, failover and its callbacks.
	Session SessionConfig

	// dial, if set, connects to pool elements over TCP instead of the
	// network (tests on fake time use an in-memory one).
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Dial connects to a pool element of the pool address names ("pool:echo").
// The connection is a *Session to an element that speaks sessions, and a
// plain connection (*net.TCPConn over TCP) otherwise.
func Dial(address string) (net.Conn, error) {
	var d Dialer
	return d.DialContext(context.Background(), "tcp", address)
}

// DialContext connects to a pool element of the pool that address names,
// "pool:NAME", or "NAME:PORT" as net/http and gRPC pass the URL host NAME
// (the port is ignored: the pool element's registered port is used). It
// resolves the pool, tries its elements in the order of the pool's policy,
// reports each element that does not answer to the registrar, and returns
// the first connection made. network is "tcp" (any family) or "tcp4" /
// "tcp6" to restrict the family; elements registered over SCTP are reached
// over SCTP where the kernel has it.
//
// The connection is a *Session when the element registered as speaking
// sessions (see the package documentation) and d.Plain is false. Otherwise
// it is a plain connection: a *net.TCPConn over TCP, so that libraries
// that tune TCP (gRPC sets TCP_USER_TIMEOUT for its keepalive) find one,
// and a *mapping.SCTPConn over SCTP. PoolElementOf tells which element a
// connection reached. With a TLSConfig the connection is the *tls.Conn
// (over TCP only; no sessions).
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: network, Err: err}
	}
	handle, err := poolHandle(address)
	if err != nil {
		return nil, opErr(err)
	}
	ep := d.endpoint()
	res, err := ep.Resolve(ctx, handle)
	if err != nil {
		return nil, opErr(fmt.Errorf("resolving pool %q: %w", handle, err))
	}
	attempts := 0
	var lastErr error
	for _, pe := range res.PEs {
		if d.MaxAttempts > 0 && attempts >= d.MaxAttempts {
			break
		}
		t, ok := usableTransport(network, pe.UserTransport)
		if !ok || (d.TLSConfig != nil && t.Kind != asap.ParamTCPTransport) {
			continue
		}
		attempts++
		c, err := d.dialElement(ctx, network, handle, pe, t)
		var notMember *notMemberError
		if errors.As(err, &notMember) {
			lastErr = notMember.err // reachable, but not proven a member
			continue
		}
		if err == nil {
			return c, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
		// The element did not answer: tell the registrar, once for this
		// failure, and try the next one.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		ep.ReportUnreachable(rctx, handle, pe.ID)
		rcancel()
	}
	if ctx.Err() != nil {
		return nil, opErr(ctx.Err())
	}
	if lastErr == nil {
		return nil, opErr(fmt.Errorf("%w in pool %q", ErrNoServer, handle))
	}
	return nil, opErr(fmt.Errorf("%w in pool %q: %w", ErrNoServer, handle, lastErr))
}

func (d *Dialer) endpoint() *endpoint.Endpoint {
	if d.Endpoint != nil {
		return d.Endpoint
	}
	return sharedEndpoint(d.Registrars, d.RegistrarTLSConfig)
}

// notMemberError: a pool element answered but its TLS certificate did not
// prove it a member of the pool; it is skipped, not reported.
type notMemberError struct{ err error }

func (e *notMemberError) Error() string { return e.err.Error() }
func (e *notMemberError) Unwrap() error { return e.err }

// dialElement connects to one pool element over transport t, within
// d.Timeout.
func (d *Dialer) dialElement(ctx context.Context, network string, handle asap.PoolHandle, pe asap.PoolElement, t asap.Transport) (net.Conn, error) {
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	session := !d.Plain && d.TLSConfig == nil && speaksSessions(pe.UserTransport)
	if t.Kind == asap.ParamSCTPTransport {
		// An element that indicates rsp's session protocol on the
		// association gets a session; any other (rsplib's) a plain
		// connection whose ASAP control messages are kept out of the
		// data.
		var mc mapping.Conn
		var err error
		if session {
			mc, session, err = d.dialSessionConn(ctx, d.Session.withDefaults(), "sctp", sctpAddress(t))
		} else {
			var md mapping.Dialer
			mc, err = md.DialContext(ctx, "sctp", sctpAddress(t))
		}
		if err != nil {
			return nil, err
		}
		if session {
			return d.openSession(ctx, handle, pe, mc.(mapping.BatchConn))
		}
		if !d.Plain && t.Use == asap.DataPlusControl {
			// An element with a control channel (rsplib's enhanced
			// mode): cookies, and failover as rsplib's users do it.
			return newASAPConn(d, handle, pe, mc), nil
		}
		c := newMsgStream(mc)
		notePoolElement(c, handle, pe)
		return c, nil
	}
	addr := netip.AddrPortFrom(t.Addrs[0], t.Port).String()
	if session {
		return d.dialSession(ctx, network, handle, pe, addr)
	}
	nd := d.NetDialer
	if nd == nil {
		nd = &net.Dialer{}
	}
	c, err := nd.DialContext(ctx, tcpNetwork(network), addr)
	if err != nil {
		return nil, err
	}
	if d.TLSConfig != nil {
		tc, err := d.handshake(ctx, c, handle)
		if err != nil {
			return nil, &notMemberError{err}
		}
		notePoolElement(tc.(*tls.Conn), handle, pe)
		return tc, nil
	}
	if tc, ok := c.(*net.TCPConn); ok {
		notePoolElement(tc, handle, pe)
	}
	return c, nil
}

// speaksSessions reports whether a pool element registered as perhaps
// speaking rsp's session protocol: transport use "data plus control" (1),
// over TCP as rsplib writes it, or over SCTP, where the association's
// adaptation indication tells rsp's elements from rsplib's (see
// spec/session.md).
func speaksSessions(t asap.Transport) bool {
	return (t.Kind == asap.ParamTCPTransport || t.Kind == asap.ParamSCTPTransport) && t.Use == asap.DataPlusControl
}

// sctpAddress writes an SCTP transport as "host1,host2:port".
func sctpAddress(t asap.Transport) string {
	var hosts []byte
	for i, a := range t.Addrs {
		if i > 0 {
			hosts = append(hosts, ',')
		}
		hosts = a.AppendTo(hosts)
	}
	return net.JoinHostPort(string(hosts), fmt.Sprint(t.Port))
}

// usableTransport returns the part of a pool element's user transport this
// dialer can reach: TCP, or SCTP where the kernel has it, with the
// addresses of the family network allows.
func usableTransport(network string, t asap.Transport) (asap.Transport, bool) {
	switch {
	case t.Kind == asap.ParamTCPTransport:
	case t.Kind == asap.ParamSCTPTransport && mapping.SCTPSupported():
	default:
		return t, false
	}
	var addrs []netip.Addr
	for _, a := range t.Addrs {
		if (network == "tcp4" && !a.Is4()) || (network == "tcp6" && a.Is4()) {
			continue
		}
		addrs = append(addrs, a)
	}
	t.Addrs = addrs
	return t, len(addrs) > 0
}

func tcpNetwork(network string) string {
	switch network {
	case "tcp4", "tcp6":
		return network
	}
	return "tcp"
}

// dialedPE remembers which pool element each plain connection reached,
// for PoolElementOf, until the connection is garbage.
var dialedPE struct {
	sync.Mutex
	m map[any]Element
}

// Element is a pool element a connection reached: the pool's handle and
// the element as the registrar described it.
type Element struct {
	Handle string
	asap.PoolElement
}

func notePoolElement[T any](c *T, handle asap.PoolHandle, pe asap.PoolElement) {
	key := weak.Make(c)
	dialedPE.Lock()
	if dialedPE.m == nil {
		dialedPE.m = make(map[any]Element)
	}
	dialedPE.m[key] = Element{Handle: string(handle), PoolElement: pe}
	dialedPE.Unlock()
	runtime.AddCleanup(c, func(key weak.Pointer[T]) {
		dialedPE.Lock()
		delete(dialedPE.m, key)
		dialedPE.Unlock()
	}, key)
}

// PoolElementOf returns the pool element a connection from a Dialer
// reached: a *Session's present one, or a plain connection's.
func PoolElementOf(c net.Conn) (Element, bool) {
	var key any
	switch c := c.(type) {
	case *Session:
		return c.Element(), true
	case *ASAPConn:
		return c.Element(), true
	case *net.TCPConn:
		key = weak.Make(c)
	case *msgStream:
		key = weak.Make(c)
	case *tls.Conn:
		key = weak.Make(c)
	default:
		return Element{}, false
	}
	dialedPE.Lock()
	defer dialedPE.Unlock()
	e, ok := dialedPE.m[key]
	return e, ok
}
