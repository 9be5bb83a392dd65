package rsp

import (
	"context"
	"net"
	"net/netip"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/internal/sctp"
	"github.com/rsp-go/rsp/mapping"
)

// sctpTransport describes an SCTP listening address as a pool element's
// user transport.
func sctpTransport(a *sctp.Addr) asap.Transport {
	addrs := a.IPs
	if len(addrs) == 0 {
		addrs = []netip.Addr{netip.IPv4Unspecified()}
	}
	return asap.Transport{Kind: asap.ParamSCTPTransport, Port: uint16(a.Port), Use: asap.DataOnly, Addrs: addrs}
}

// sctpListener is a net.Listener over an SCTP mapping listener.
type sctpListener struct {
	l mapping.Listener
}

func listenSCTP(ctx context.Context, local string, cfg mapping.Config) (net.Listener, error) {
	lc := mapping.ListenConfig{Config: cfg}
	l, err := lc.Listen(ctx, "sctp", local)
	if err != nil {
		return nil, err
	}
	return &sctpListener{l}, nil
}

func (l *sctpListener) Accept() (net.Conn, error) {
	c, err := l.l.Accept()
	if err != nil {
		return nil, err
	}
	return newMsgStream(c), nil
}

func (l *sctpListener) Close() error   { return l.l.Close() }
func (l *sctpListener) Addr() net.Addr { return l.l.Addr() }
