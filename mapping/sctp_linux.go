package mapping

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/rsp-go/rsp/internal/sctp"
)

func init() {
	sctpSupported = sctp.Supported
	dialSCTP = func(ctx context.Context, cfg Config, network, address string) (Conn, error) {
		raddr, err := sctp.ResolveAddr(network, address)
		if err != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Err: err}
		}
		c, err := sctp.Config{Liveness: cfg.SCTPLiveness, Adaptation: cfg.SCTPAdaptation}.Dial(ctx, network, raddr, nil)
		if err != nil {
			return nil, err
		}
		return &SCTPConn{Conn: c}, nil
	}
	listenSCTP = func(ctx context.Context, cfg Config, network, address string) (Listener, error) {
		laddr, err := sctp.ResolveAddr(network, address)
		if err != nil {
			return nil, &net.OpError{Op: "listen", Net: network, Err: err}
		}
		l, err := sctp.Config{Liveness: cfg.SCTPLiveness, Adaptation: cfg.SCTPAdaptation}.Listen(network, laddr)
		if err != nil {
			return nil, err
		}
		return sctpListener{l}, nil
	}
}

// SCTPConn is a message connection over a kernel SCTP association: each
// message keeps its boundaries and its PPID.
type SCTPConn struct {
	*sctp.Conn
	rb    []sctp.Message // ReadBatch's; one reader at a time
	share atomic.Bool    // ShareReads
	room  sctpRoom       // ReadBatch's, where it shares its reads
	wb    []sctp.Message // WriteBatch's
	wmu   sync.Mutex
}

// ShareReads sets whether ReadBatch reads into slots of a read buffer
// sized to the messages coming in, and hands out the messages longer than
// their Buf in it, each with a Lease, rather than in a buffer of their own
// (which takes another system call for a message longer than its Buf). A
// session, which keeps the messages it received until the application
// read them, shares them. Set it before the first read.
func (c *SCTPConn) ShareReads(on bool) { c.share.Store(on) }

// ReadMsg reads one message and its PPID.
func (c *SCTPConn) ReadMsg(b []byte) (int, uint32, error) {
	n, info, err := c.ReadMsgInfo(b)
	return n, info.PPID, err
}

// WriteMsg sends one message with a PPID.
func (c *SCTPConn) WriteMsg(b []byte, ppid uint32) error {
	return c.Conn.WriteMsg(b, sctp.SndInfo{PPID: ppid})
}

// ReadMsgInfo reads one message with its PPID, stream and ordering.
func (c *SCTPConn) ReadMsgInfo(b []byte) (int, MsgInfo, error) {
	n, info, err := c.Conn.ReadMsg(b)
	if errors.Is(err, sctp.ErrMessageTooLong) {
		err = &net.OpError{Op: "read", Net: "sctp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: ErrMessageTooLong}
	}
	return n, MsgInfo{PPID: info.PPID, Stream: info.Stream, Unordered: info.Unordered}, err
}

// WriteMsgInfo sends one message with a PPID, on a stream (below the
// association's Info().OutStreams), unordered if asked.
func (c *SCTPConn) WriteMsgInfo(b []byte, info MsgInfo) error {
	return c.Conn.WriteMsg(b, sctp.SndInfo{PPID: info.PPID, Stream: info.Stream, Unordered: info.Unordered})
}

// ReadBatch reads the messages that are ready, at least one, with one
// system call (a message longer than its room takes more). On a connection
// that shares its reads (ShareReads), a message longer than its Buf may
// come in the connection's read buffer, with Msg.Lease set, until the
// caller releases it; ReadBatch never writes into a Buf that came with a
// Lease: it drops it from ms (Buf and Lease nil) when it fills that slot
// again.
func (c *SCTPConn) ReadBatch(ms []Msg, limit int) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	if c.share.Load() {
		return c.readShared(ms, max(limit, 1))
	}
	if cap(c.rb) < len(ms) {
		c.rb = make([]sctp.Message, len(ms))
	}
	rb := c.rb[:len(ms)]
	for i := range ms {
		rb[i] = sctp.Message{Buf: ms[i].Buf}
	}
	n, err := c.Conn.ReadBatch(rb, limit)
	for i := range rb {
		ms[i] = Msg{Buf: rb[i].Buf, N: rb[i].N, PPID: rb[i].PPID, Stream: rb[i].Stream, Unordered: rb[i].Unordered}
		if i < n && rb[i].Err != nil {
			ms[i].Err = ErrMessageTooLong
		}
		rb[i].Buf = nil
	}
	return n, err
}

// WriteBatch sends the messages in order with as few system calls as the
// socket's buffer allows.
func (c *SCTPConn) WriteBatch(ms []Msg) (int, error) { return c.writeBatch(ms, c.Conn.WriteBatch) }

// WriteBatchNow is WriteBatch that does not wait for room in the socket's
// buffer: it sends, in order, the messages the socket takes at once and
// returns how many; the rest are not sent (fewer than len(ms) without an
// error means the buffer is full). Each message goes whole or not at all.
func (c *SCTPConn) WriteBatchNow(ms []Msg) (int, error) {
	return c.writeBatch(ms, c.Conn.WriteBatchNow)
}

// writeBatch hands ms to write as the socket's messages.
func (c *SCTPConn) writeBatch(ms []Msg, write func([]sctp.Message) (int, error)) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if cap(c.wb) < len(ms) {
		c.wb = make([]sctp.Message, len(ms))
	}
	wb := c.wb[:len(ms)]
	for i := range ms {
		wb[i] = sctp.Message{Buf: ms[i].Buf, PPID: ms[i].PPID, Stream: ms[i].Stream, Unordered: ms[i].Unordered}
	}
	n, err := write(wb)
	clear(wb)
	return n, err
}

// PeerAddrs returns the peer's addresses in the association.
func (c *SCTPConn) PeerAddrs() ([]netip.Addr, error) { return c.Conn.PeerAddrs() }

type sctpListener struct{ l *sctp.Listener }

func (l sctpListener) Accept() (Conn, error) {
	c, err := l.l.Accept()
	if err != nil {
		return nil, err
	}
	return &SCTPConn{Conn: c}, nil
}

func (l sctpListener) Close() error   { return l.l.Close() }
func (l sctpListener) Addr() net.Addr { return l.l.Addr() }
