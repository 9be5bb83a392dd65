package mapping

import (
	"context"
	"errors"
	"net"
)

// ErrSCTPUnavailable is returned when the kernel has no SCTP.
var ErrSCTPUnavailable = errors.New("mapping: the kernel has no SCTP")

var (
	// dialSCTP and listenSCTP are set where kernel SCTP is implemented.
	dialSCTP = func(ctx context.Context, network, address string) (Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: network, Err: ErrSCTPUnavailable}
	}
	listenSCTP = func(ctx context.Context, network, address string) (Listener, error) {
		return nil, &net.OpError{Op: "listen", Net: network, Err: ErrSCTPUnavailable}
	}
	sctpSupported = func() bool { return false }
)

// SCTPSupported reports whether the kernel provides SCTP sockets.
func SCTPSupported() bool { return sctpSupported() }
