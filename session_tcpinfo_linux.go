package rsp

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// tcpInfo reads the kernel's TCP_INFO of a session's connection.
func tcpInfo(c net.Conn) (rtt, rto time.Duration, pmtu int, err error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return 0, 0, 0, ErrNotSupported
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0, 0, 0, err
	}
	var info *unix.TCPInfo
	var serr error
	if err := rc.Control(func(fd uintptr) {
		info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil {
		return 0, 0, 0, err
	}
	if serr != nil {
		return 0, 0, 0, serr
	}
	return time.Duration(info.Rtt) * time.Microsecond, time.Duration(info.Rto) * time.Microsecond, int(info.Pmtu), nil
}
