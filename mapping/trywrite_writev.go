//go:build linux || darwin

package mapping

import (
	"errors"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxIovecs is how many buffers one writev takes (IOV_MAX on Linux).
const maxIovecs = 1024

// tryWritev writes what the socket takes of bufs now, without waiting:
// 0 and no error when it takes nothing. rc is the socket (rawWriter).
func tryWritev(rc syscall.RawConn, bufs net.Buffers) (int64, error) {
	iov := [][]byte(bufs)
	if len(iov) > maxIovecs {
		iov = iov[:maxIovecs]
	}
	var n int
	var werr error
	err := rc.Write(func(fd uintptr) bool {
		for {
			n, werr = unix.Writev(int(fd), iov)
			if werr != unix.EINTR {
				return true
			}
		}
	})
	switch {
	case err != nil: // the deadline, a closed connection
		var oe *net.OpError
		if errors.As(err, &oe) {
			err = oe.Err
		}
		return 0, err
	case werr == unix.EAGAIN:
		return 0, nil
	case werr != nil:
		return 0, os.NewSyscallError("writev", werr)
	}
	return int64(n), nil
}

// rawWriter returns the socket that the connection's frames go to
// (through WriteThrough wrappers), or nil where there is none (TLS, a
// pipe).
func rawWriter(nc net.Conn) syscall.RawConn {
	for {
		wt, ok := nc.(WriteThrough)
		if !ok {
			break
		}
		nc = wt.WriteThrough()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
