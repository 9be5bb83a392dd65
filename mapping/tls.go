package mapping

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// TLS over the TCP mapping. A Dialer or ListenConfig with a TLSConfig runs
// every TCP connection over TLS 1.3 (crypto/tls), the frames of this
// package inside it; the network "tls" (or "tls4", "tls6") asks for TLS
// over TCP explicitly. SCTP connections never use TLS: over SCTP the links
// are as rsplib has them, and need IPsec or a private network for
// protection. So that nothing configured for TLS goes out in the clear, a
// Dialer or ListenConfig with a TLSConfig refuses SCTP (ErrTLSOverSCTP);
// use one without for SCTP.

// DefaultHandshakeTimeout bounds the TLS handshake of an accepted
// connection when ListenConfig.HandshakeTimeout is zero.
const DefaultHandshakeTimeout = 10 * time.Second

// maxPendingHandshakes bounds the accepted connections whose TLS handshake
// is under way at once; more are closed at once.
const maxPendingHandshakes = 1024

// Errors of TLS connections.
var (
	// ErrNoTLSConfig: the network "tls" was asked of a ListenConfig
	// without a TLSConfig (a server needs a certificate).
	ErrNoTLSConfig = errors.New("mapping: tls network without a TLS configuration")
	// ErrTLSOverSCTP: a Dialer or ListenConfig with a TLSConfig was
	// asked for SCTP, which has no TLS here.
	ErrTLSOverSCTP = errors.New("mapping: no TLS over SCTP")
)

// tlsNetwork returns the TCP network under a TLS network name.
func tlsNetwork(network string) (string, bool) {
	switch network {
	case "tls":
		return "tcp", true
	case "tls4":
		return "tcp4", true
	case "tls6":
		return "tcp6", true
	}
	return network, false
}

// clientTLS returns the configuration of a TLS dial to address: cfg (or
// the zero configuration, which verifies the server with the system's
// roots) with TLS 1.3 at least and, when cfg names no server, the host of
// address as the name to verify.
func clientTLS(cfg *tls.Config, address string) *tls.Config {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg = cfg.Clone()
	cfg.MinVersion = max(cfg.MinVersion, tls.VersionTLS13)
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(address); err == nil {
			cfg.ServerName = host
		}
	}
	return cfg
}

// serverTLS returns cfg with TLS 1.3 at least.
func serverTLS(cfg *tls.Config) *tls.Config {
	cfg = cfg.Clone()
	cfg.MinVersion = max(cfg.MinVersion, tls.VersionTLS13)
	return cfg
}

// dialTLS runs a TLS client handshake over c, bounded by ctx.
func dialTLS(ctx context.Context, c net.Conn, cfg *tls.Config, network, address string) (*tls.Conn, error) {
	tc := tls.Client(c, clientTLS(cfg, address))
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, &net.OpError{Op: "dial", Net: network, Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	return tc, nil
}

// TLSConnectionState returns the TLS state of c when it is a TCP message
// connection over TLS whose handshake is complete (as it is once a message
// has been read or written).
func TLSConnectionState(c Conn) (tls.ConnectionState, bool) {
	tc, ok := c.(*TCPConn)
	if !ok {
		return tls.ConnectionState{}, false
	}
	t, ok := tc.c.(*tls.Conn)
	if !ok {
		return tls.ConnectionState{}, false
	}
	st := t.ConnectionState()
	return st, st.HandshakeComplete
}

// WriteThrough is a connection that wraps another and writes to it
// unchanged (one that changes only how it reads, say). The TCP mapping
// sends its frames straight to the connection it returns, in one writev
// where that is a *net.TCPConn.
type WriteThrough interface {
	WriteThrough() net.Conn
}

// ReadThrough is a connection that wraps another and, once it has no
// bytes of its own left to give (a prefix read ahead), reads from it
// unchanged: ReadThrough returns it then, nil before. The TCP mapping
// waits for a frame on the socket it returns without holding a read
// buffer.
type ReadThrough interface {
	ReadThrough() net.Conn
}

// writeBuffers writes bufs to w: with one writev where w has it (a
// *net.TCPConn), else joined in *scratch, so that a TLS connection sends a
// frame as one record rather than one per buffer. A wrapper of w that
// writes through (WriteThrough) is looked past: net.Buffers would write
// each buffer with a system call of its own to a connection it does not
// know, a frame's header in a TCP segment apart from its payload.
func writeBuffers(w net.Conn, bufs net.Buffers, scratch *[]byte) (int64, error) {
	for {
		wt, ok := w.(WriteThrough)
		if !ok {
			break
		}
		w = wt.WriteThrough()
	}
	if _, ok := w.(*tls.Conn); !ok {
		return bufs.WriteTo(w)
	}
	b := (*scratch)[:0]
	for _, x := range bufs {
		b = append(b, x...)
	}
	n, err := w.Write(b)
	if cap(b) > 64<<10 {
		b = nil // do not keep a large buffer for small messages
	}
	*scratch = b[:0]
	return int64(n), err
}

// tlsListener accepts TCP connections and runs each one's TLS handshake
// in a goroutine of its own, bounded by a timeout, so that a peer that
// connects and stays silent holds up neither Accept nor anyone else.
// Accept returns the connections whose handshake succeeded.
type tlsListener struct {
	l       net.Listener
	cfg     Config
	tls     *tls.Config
	timeout time.Duration
	onErr   func(net.Addr, error)

	conns   chan Conn
	errs    chan error
	pending chan struct{}   // a token per handshake under way
	ctx     context.Context // cancelled by Close, ending the handshakes
	stop    context.CancelFunc
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

func newTLSListener(l net.Listener, lc *ListenConfig) *tlsListener {
	tl := &tlsListener{
		l:       l,
		cfg:     lc.Config,
		tls:     serverTLS(lc.TLSConfig),
		timeout: lc.HandshakeTimeout,
		onErr:   lc.HandshakeError,
		conns:   make(chan Conn),
		errs:    make(chan error),
		pending: make(chan struct{}, maxPendingHandshakes),
		done:    make(chan struct{}),
	}
	tl.ctx, tl.stop = context.WithCancel(context.Background())
	if tl.timeout <= 0 {
		tl.timeout = DefaultHandshakeTimeout
	}
	tl.wg.Add(1)
	go tl.acceptLoop()
	return tl
}

func (l *tlsListener) acceptLoop() {
	defer l.wg.Done()
	for {
		c, err := l.l.Accept()
		if err != nil {
			select {
			case l.errs <- err:
			case <-l.done:
				return
			}
			var t interface{ Temporary() bool }
			if errors.As(err, &t) && t.Temporary() {
				continue
			}
			return
		}
		select {
		case l.pending <- struct{}{}:
		default:
			c.Close() // too many handshakes under way
			continue
		}
		l.wg.Add(1)
		go l.handshake(c)
	}
}

func (l *tlsListener) handshake(c net.Conn) {
	defer l.wg.Done()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	tc := tls.Server(c, l.tls)
	ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	<-l.pending
	if err != nil {
		c.Close()
		if l.onErr != nil {
			l.onErr(c.RemoteAddr(), err)
		}
		return
	}
	mc := NewTCPConn(tc, l.cfg)
	select {
	case l.conns <- mc:
	case <-l.done:
		mc.Close()
	}
}

func (l *tlsListener) Accept() (Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: l.l.Addr().Network(), Addr: l.l.Addr(), Err: net.ErrClosed}
	}
}

// Close closes the listener and ends the handshakes under way; connections
// already accepted stay open.
func (l *tlsListener) Close() error {
	err := net.ErrClosed
	l.once.Do(func() {
		close(l.done)
		l.stop()
		err = l.l.Close()
	})
	l.wg.Wait()
	if err == net.ErrClosed {
		return &net.OpError{Op: "close", Net: l.l.Addr().Network(), Addr: l.l.Addr(), Err: err}
	}
	return err
}

func (l *tlsListener) Addr() net.Addr { return l.l.Addr() }
