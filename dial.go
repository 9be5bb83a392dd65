package rsp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
)

// ErrNoServer is returned (wrapped in *net.OpError) when no pool element of
// the pool could be reached.
var ErrNoServer = errors.New("rsp: no pool element reachable")

// Dialer dials pools. The zero value resolves through the environment's
// registrars (see the package documentation) and connects with a
// net.Dialer's defaults.
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
}

// Dial connects to a pool element of the pool address names ("pool:echo").
func Dial(address string) (*Conn, error) {
	var d Dialer
	return d.DialContext(context.Background(), "tcp", address)
}

// DialContext connects to a pool element of the pool that address names
// over the transport the element registered (TCP, or SCTP where the kernel
// has it):
// "pool:NAME", or "NAME:PORT" as net/http and gRPC pass the URL host NAME
// (the port is ignored: the pool element's registered port is used). It
// resolves the pool, tries its elements in the order of the pool's policy,
// reports each element that does not answer to the registrar, and returns
// the first connection made. network is "tcp" (any family) or "tcp4" /
// "tcp6" to restrict the family.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (*Conn, error) {
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: network, Err: err}
	}
	handle, err := poolHandle(address)
	if err != nil {
		return nil, opErr(err)
	}
	ep := d.Endpoint
	if ep == nil {
		ep = sharedEndpoint(d.Registrars, d.RegistrarTLSConfig)
	}
	nd := d.NetDialer
	if nd == nil {
		nd = &net.Dialer{}
	}
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
		actx := ctx
		cancel := context.CancelFunc(func() {})
		if d.Timeout > 0 {
			actx, cancel = context.WithTimeout(ctx, d.Timeout)
		}
		var c net.Conn
		if t.Kind == asap.ParamSCTPTransport {
			c, err = dialSCTP(actx, t)
		} else {
			c, err = nd.DialContext(actx, tcpNetwork(network), netip.AddrPortFrom(t.Addrs[0], t.Port).String())
		}
		if err == nil && d.TLSConfig != nil {
			if c, err = d.handshake(actx, c, handle); err != nil {
				cancel()
				lastErr = err // reachable, but not proven a member
				continue
			}
		}
		cancel()
		if err == nil {
			return &Conn{Conn: c, handle: handle, pe: pe}, nil
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

// usableTransport returns the part of a pool element's user transport this
// dialer can reach: TCP, or SCTP where the kernel has it, with the
// addresses of the family network allows.
func usableTransport(network string, t asap.Transport) (asap.Transport, bool) {
	switch {
	case t.Kind == asap.ParamTCPTransport:
	case t.Kind == asap.ParamSCTPTransport && SCTPSupported():
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

// Conn is a connection to a pool element. Its deadlines and errors are
// those of the underlying *net.TCPConn, or *tls.Conn with a TLSConfig.
type Conn struct {
	net.Conn
	handle asap.PoolHandle
	pe     asap.PoolElement
}

// Handle returns the pool handle the connection was dialed to.
func (c *Conn) Handle() string { return string(c.handle) }

// PoolElement returns the pool element the connection reached.
func (c *Conn) PoolElement() asap.PoolElement { return c.pe }

// CloseWrite shuts down the writing side of the connection.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return &net.OpError{Op: "close", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: errors.ErrUnsupported}
}

// String describes the connection's pool element.
func (c *Conn) String() string {
	return string(c.handle) + "/" + strconv.FormatUint(uint64(c.pe.ID), 16)
}
