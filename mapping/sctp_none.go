package mapping

import (
	"context"
	"errors"
	"net"

	"github.com/rsp-go/rsp/internal/sctp"
)

// ErrSCTPUnavailable is returned when the kernel has no SCTP.
var ErrSCTPUnavailable = errors.New("mapping: the kernel has no SCTP")

var (
	// dialSCTP and listenSCTP are set where kernel SCTP is implemented.
	dialSCTP = func(ctx context.Context, cfg Config, network, address string) (Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: network, Err: ErrSCTPUnavailable}
	}
	listenSCTP = func(ctx context.Context, cfg Config, network, address string) (Listener, error) {
		return nil, &net.OpError{Op: "listen", Net: network, Err: ErrSCTPUnavailable}
	}
	sctpSupported = func() bool { return false }
)

// SCTPSupported reports whether the kernel provides SCTP sockets.
func SCTPSupported() bool { return sctpSupported() }

// SCTP association settings and status, as package sctp defines them:
// SCTPLiveness in Config sets how quickly an association notices a silent
// peer; SCTPConn.Info returns an SCTPInfo, with an SCTPPathInfo (round-trip
// time, retransmission timeout, path MTU) per peer address.
type (
	SCTPLiveness = sctp.Liveness
	SCTPInfo     = sctp.Info
	SCTPPathInfo = sctp.PathInfo
)
