// Package mapping carries messages between RSerPool endpoints over a
// transport: kernel SCTP, where each message keeps its boundaries and its
// payload protocol identifier (PPID), or TCP with the frame format documented
// in this package, which adds the boundaries, the PPID-like channel tag and
// heartbeats that TCP lacks. An in-memory mapping serves tests.
package mapping

import (
	"net"
	"time"
)

// Payload protocol identifiers (SCTP PPIDs) of RSerPool.
const (
	PPIDASAP uint32 = 11
	PPIDENRP uint32 = 12
)

// Conn is a message-oriented connection. Every message carries a PPID. It
// has the deadlines of net.Conn; its errors are *net.OpError wrapping the
// cause (os.ErrDeadlineExceeded, net.ErrClosed, io.EOF at the end).
type Conn interface {
	// ReadMsg reads the next message into b and returns its length and PPID.
	// A message longer than b is discarded and ErrMessageTooLong returned;
	// the connection stays usable.
	ReadMsg(b []byte) (n int, ppid uint32, err error)
	// WriteMsg sends b as one message with the given PPID.
	WriteMsg(b []byte, ppid uint32) error

	Close() error
	LocalAddr() net.Addr
	RemoteAddr() net.Addr
	SetDeadline(t time.Time) error
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
}

// Listener accepts message-oriented connections.
type Listener interface {
	Accept() (Conn, error)
	Close() error
	Addr() net.Addr
}
