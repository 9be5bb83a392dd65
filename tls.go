package rsp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/rsp-go/rsp/asap"
)

// TLS on the data path. A Dialer with a TLSConfig runs a TLS 1.3 client
// handshake with each pool element it connects to and checks the
// element's certificate; a ListenConfig with a TLSConfig makes its
// Listener hand out TLS server connections (*tls.Conn). Only TCP pool
// elements take part: a Dialer with a TLSConfig skips pool elements over
// SCTP, and a ListenConfig with one refuses to listen over SCTP.

// errTLSOverSCTP: TLS was asked for on the data path over SCTP.
var errTLSOverSCTP = fmt.Errorf("rsp: TLS over SCTP: %w", errors.ErrUnsupported)

// elementTLS returns the client configuration for a pool element of pool
// handle: cfg with TLS 1.3 at least and, when cfg names no server, the pool
// handle as the name the element's certificate must carry (a SAN DNS
// name).
func elementTLS(cfg *tls.Config, handle asap.PoolHandle) *tls.Config {
	cfg = cfg.Clone()
	cfg.MinVersion = max(cfg.MinVersion, tls.VersionTLS13)
	if cfg.ServerName == "" {
		cfg.ServerName = string(handle)
	}
	return cfg
}

// handshake runs the TLS client handshake with a pool element over c,
// closing c when it fails.
func (d *Dialer) handshake(ctx context.Context, c net.Conn, handle asap.PoolHandle) (net.Conn, error) {
	tc := tls.Client(c, elementTLS(d.TLSConfig, handle))
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, &net.OpError{Op: "dial", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	return tc, nil
}

// DialTLSContext connects to a pool element as DialContext does, over TLS
// (with the system's roots when TLSConfig is nil), and returns the
// *tls.Conn, as http.Transport.DialTLSContext wants it: net/http needs to
// see the *tls.Conn to fill in Response.TLS and to use HTTP/2 (TLSConfig's
// NextProtos "h2").
func (d *Dialer) DialTLSContext(ctx context.Context, network, address string) (net.Conn, error) {
	dd := *d
	if dd.TLSConfig == nil {
		dd.TLSConfig = &tls.Config{}
	}
	return dd.DialContext(ctx, network, address)
}
