//go:build !linux && !darwin

package mapping

import (
	"net"
	"syscall"
)

func tryWritev(syscall.RawConn, net.Buffers) (int64, error) { return 0, nil }

// rawWriter reports that the connection cannot write without waiting.
func rawWriter(net.Conn) syscall.RawConn { return nil }
