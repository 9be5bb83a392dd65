//go:build !linux

package rsp

import (
	"net"
	"time"
)

// tcpInfo: only Linux's TCP_INFO is read.
func tcpInfo(net.Conn) (rtt, rto time.Duration, pmtu int, err error) {
	return 0, 0, 0, ErrNotSupported
}
