// Package mapping carries messages between RSerPool endpoints over a
// transport: kernel SCTP, where each message keeps its boundaries and its
// payload protocol identifier (PPID), or TCP with the frame format of
// spec/tcp-mapping.md, which adds the boundaries, the PPID-like channel tag
// and heartbeats that TCP lacks. An in-memory mapping serves tests.
//
// Over TCP the frames can run inside TLS 1.3 (Dialer.TLSConfig,
// ListenConfig.TLSConfig, or the network "tls"); over SCTP there is no TLS,
// and the links need IPsec or a private network for protection.
package mapping

import (
	"bytes"
	"errors"
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

// MsgInfo is what a message carries besides its bytes: its PPID and,
// where the transport has them (SCTP), its stream and whether it is
// delivered unordered.
type MsgInfo struct {
	PPID   uint32
	Stream uint16
	// Unordered: delivered as soon as it arrives, not in its stream's
	// order.
	Unordered bool
}

// MsgInfoConn is a Conn with per-message streams and unordered delivery,
// as an SCTP association has them.
type MsgInfoConn interface {
	Conn
	// ReadMsgInfo is ReadMsg that also tells the message's stream and
	// ordering.
	ReadMsgInfo(b []byte) (int, MsgInfo, error)
	// WriteMsgInfo sends b as one message with info's PPID, on its
	// stream, unordered if asked.
	WriteMsgInfo(b []byte, info MsgInfo) error
}

// ErrNoStreams is returned when a message asks for a stream other than 0,
// or for unordered delivery, on a connection whose transport has neither
// (the TCP mapping).
var ErrNoStreams = errors.New("mapping: the transport has no streams or unordered delivery")

// ReadMsgInfo reads the next message from c with its MsgInfo: through c's
// own ReadMsgInfo where c is a MsgInfoConn; elsewhere every message is on
// stream 0, in order.
func ReadMsgInfo(c Conn, b []byte) (int, MsgInfo, error) {
	if ic, ok := c.(MsgInfoConn); ok {
		return ic.ReadMsgInfo(b)
	}
	n, ppid, err := c.ReadMsg(b)
	return n, MsgInfo{PPID: ppid}, err
}

// WriteMsgInfo sends b on c with info: through c's own WriteMsgInfo where
// c is a MsgInfoConn. Elsewhere a message on stream 0 in order is sent with
// WriteMsg, and any other fails with a *net.OpError wrapping ErrNoStreams,
// never sent otherwise than asked.
func WriteMsgInfo(c Conn, b []byte, info MsgInfo) error {
	if ic, ok := c.(MsgInfoConn); ok {
		return ic.WriteMsgInfo(b, info)
	}
	if info.Stream != 0 || info.Unordered {
		return &net.OpError{Op: "write", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: ErrNoStreams}
	}
	return c.WriteMsg(b, info.PPID)
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
	// Stream and Unordered are the message's SCTP stream and ordering
	// (MsgInfo); over a transport without them (the TCP mapping) they
	// are zero, and WriteBatch refuses a message that sets them with
	// ErrNoStreams.
	Stream    uint16
	Unordered bool
	// Lease, set by ReadBatch on a received message whose Buf lies in a
	// read buffer the connection shares (TCPConn.ShareReads,
	// SCTPConn.ShareReads), is to be released once the caller is done
	// with Buf.
	Lease *Lease
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

// Batched returns c as a BatchConn: c itself when it is one, else an
// adapter that reads and writes one message per call.
func Batched(c Conn) BatchConn {
	if bc, ok := c.(BatchConn); ok {
		return bc
	}
	return &oneAtATime{Conn: c}
}

// oneAtATime is a BatchConn over a Conn that has no batches of its own.
type oneAtATime struct {
	Conn
	scratch []byte // room for a message up to the limit; one reader
}

func (c *oneAtATime) ReadBatch(ms []Msg, limit int) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	if len(c.scratch) < limit {
		c.scratch = make([]byte, limit)
	}
	n, info, err := ReadMsgInfo(c.Conn, c.scratch[:limit])
	m := &ms[0]
	m.PPID, m.Stream, m.Unordered, m.Err = info.PPID, info.Stream, info.Unordered, nil
	switch {
	case errors.Is(err, ErrMessageTooLong):
		m.N, m.Err = 0, ErrMessageTooLong
	case err != nil:
		return 0, err
	case n <= len(m.Buf):
		m.N = copy(m.Buf, c.scratch[:n])
	default:
		m.Buf, m.N = bytes.Clone(c.scratch[:n]), n
	}
	return 1, nil
}

func (c *oneAtATime) WriteBatch(ms []Msg) (int, error) {
	for i, m := range ms {
		if err := WriteMsgInfo(c.Conn, m.Buf, MsgInfo{PPID: m.PPID, Stream: m.Stream, Unordered: m.Unordered}); err != nil {
			return i, err
		}
	}
	return len(ms), nil
}
