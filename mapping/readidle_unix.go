//go:build unix

package mapping

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// readIdle reads the next bytes of a connection that waits for its next
// frame with nothing buffered, into a read buffer it takes only once they
// have come: an idle connection holds none, and the bytes of the header
// and of the frames after it come with one read, as on a plain socket. It
// reports false where the connection is not a socket it can wait on so;
// the caller then reads the header into hdr. rmu is held.
func (c *TCPConn) readIdle() (bool, error) {
	rc := c.rawConn()
	if rc == nil {
		return false, nil
	}
	c.readDeadline(false)
	var n int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		if c.rb == nil {
			c.rb = newReadBuf()
		}
		for {
			n, rerr = syscall.Read(int(fd), c.rb.b[:readBufSize])
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			c.dropReadBuf() // wait without it
			return false
		}
		return true
	})
	switch {
	case err != nil: // the wait failed: the deadline, a closed connection
		var oe *net.OpError
		if errors.As(err, &oe) {
			err = oe.Err
		}
	case rerr != nil:
		err = os.NewSyscallError("read", rerr)
	case n == 0:
		err = io.EOF
	}
	if err != nil {
		c.dropReadBuf()
		return true, err
	}
	c.rr, c.rw, c.full = 0, n, n == readBufSize
	c.lastRecv.Store(time.Now().UnixNano())
	return true, nil
}

// rawConn returns the socket under the connection, once no wrapper has
// bytes of its own to give (ReadThrough), or nil.
func (c *TCPConn) rawConn() syscall.RawConn {
	if c.raw != nil || c.noRaw {
		return c.raw
	}
	nc := c.c
	for {
		rt, ok := nc.(ReadThrough)
		if !ok {
			break
		}
		if nc = rt.ReadThrough(); nc == nil {
			return nil // not yet
		}
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		c.noRaw = true
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		c.noRaw = true
		return nil
	}
	c.raw = rc
	return rc
}
