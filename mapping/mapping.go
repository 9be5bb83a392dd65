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

// Msg is one message of a batch (BatchConn).
type Msg struct {
	// Buf holds the message to send, or is the room for one received.
	Buf []byte
	// N is the length of a received message.
	N int
	// PPID is the message's PPID.
	PPID uint32
	// Err is ErrMessageTooLong for a received message over the limit
	// given to ReadBatch, which was discarded; the connection stays
	// usable.
	Err error
}

// BatchConn is a Conn that can move several messages at once, with fewer
// system calls than a ReadMsg or WriteMsg each. The connections of this
// package implement it.
type BatchConn interface {
	Conn
	// ReadBatch waits for at least one message and reads those that are
	// ready without waiting further, up to len(ms). It returns how many
	// it read into ms[:n]; it may exchange the Bufs among ms. A message
	// longer than its Buf comes in a new Buf if it is at most limit bytes
	// long, and is discarded with Err set to ErrMessageTooLong if not. At
	// the end of the stream it returns io.EOF, after the messages before
	// it.
	ReadBatch(ms []Msg, limit int) (n int, err error)
	// WriteBatch sends the messages in order. It returns how many were
	// sent: all of them unless err is set.
	WriteBatch(ms []Msg) (n int, err error)
}
