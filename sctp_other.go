//go:build !linux

package rsp

import (
	"context"
	"net"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
)

// dialSCTP fails: kernel SCTP is used on Linux only.
func dialSCTP(ctx context.Context, t asap.Transport) (net.Conn, error) {
	return nil, &net.OpError{Op: "dial", Net: "sctp", Err: mapping.ErrSCTPUnavailable}
}

// listenSCTP fails: kernel SCTP is used on Linux only.
func listenSCTP(local string) (net.Listener, error) {
	return nil, &net.OpError{Op: "listen", Net: "sctp", Err: mapping.ErrSCTPUnavailable}
}
