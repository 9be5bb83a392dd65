package mapping

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Errors of message connections.
var (
	// ErrMessageTooLong: a message did not fit the buffer given to ReadMsg.
	// It was discarded; the connection stays usable.
	ErrMessageTooLong = errors.New("mapping: message longer than the buffer")
	// ErrPeerTimeout: the peer sent nothing, not even a heartbeat
	// acknowledgement, for HeartbeatInterval + HeartbeatTimeout.
	ErrPeerTimeout = errors.New("mapping: peer timed out")
	// ErrFrameTimeout: a frame began but did not arrive whole within
	// FrameTimeout; the connection is closed, as the peer trickles or
	// stalls in the middle of a message.
	ErrFrameTimeout = errors.New("mapping: frame not completed within the frame timeout")
	// ErrUnsupportedNetwork: the network is not one this package maps.
	ErrUnsupportedNetwork = errors.New("mapping: unsupported network")
)

// Defaults of Config.
const (
	DefaultMaxMessageSize    = 1 << 20
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultHeartbeatTimeout  = 5 * time.Second
	DefaultFrameTimeout      = 30 * time.Second
)

// Config configures message connections: TCP's framing and heartbeats,
// and the liveness of SCTP associations. The zero value uses the defaults
// above, and the kernel's for SCTP.
type Config struct {
	// MaxMessageSize is the largest payload accepted from the peer.
	MaxMessageSize int
	// HeartbeatInterval is how long the connection may be silent before it
	// sends a heartbeat; a negative value turns heartbeats off.
	// HeartbeatTimeout is how much longer it waits for anything from the
	// peer before it fails with ErrPeerTimeout, and how long a heartbeat
	// or its acknowledgement may take to write. Heartbeats are answered by
	// ReadMsg, so liveness needs a reader, as with http.Transport. The
	// write deadline (SetWriteDeadline) bounds messages only, never
	// heartbeats: a deadline that has passed fails later WriteMsg calls
	// but leaves an idle connection up.
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration
	// FrameTimeout bounds the time from a frame's first byte to its last
	// (counted from when the reader first waits for the rest): a peer
	// that sends part of a message and then trickles or stalls fails the
	// connection with ErrFrameTimeout instead of holding it. Zero means
	// DefaultFrameTimeout, negative no bound. The read deadline
	// (SetReadDeadline) applies as well; it keeps its net.Conn meaning.
	FrameTimeout time.Duration
	// SCTPLiveness sets the SCTP heartbeat interval, retransmission
	// limits and RTO bounds of SCTP associations from their start, so
	// that a silent peer is detected within about AssocMaxRetrans+1
	// heartbeats; its zero value keeps the kernel's defaults (minutes).
	SCTPLiveness SCTPLiveness
	// SCTPAdaptation, if not zero, is the adaptation layer indication
	// (RFC 5061) SCTP associations send when they are set up; a dialed
	// SCTPConn's PeerAdaptation tells the peer's.
	SCTPAdaptation uint32
}

func (c Config) withDefaults() Config {
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if c.FrameTimeout == 0 {
		c.FrameTimeout = DefaultFrameTimeout
	}
	return c
}

// TCPConn is a message connection over a byte stream with the frame format
// of this package. ReadMsg may be called from one goroutine at a time;
// WriteMsg from any number.
type TCPConn struct {
	c   net.Conn
	cfg Config

	// Reader state, kept across calls so that a deadline in the middle of
	// a frame loses nothing. Frames are read into rb, whose bytes
	// rb.b[rr:rw] were read and not yet taken: one read system call
	// brings as many frames as have arrived and fit. rb goes back to
	// readBufPool once drained (and, where ReadBatch handed messages out
	// in it, once their Leases are released), and a connection waiting
	// for its next frame reads the header straight into hdr, so that an
	// idle connection holds no read buffer. A frame longer than rb has a
	// body of its own.
	rmu    sync.Mutex
	rb     *Lease
	rr, rw int
	full   bool // the last read into rb filled all it asked for
	raw    syscall.RawConn
	noRaw  bool // the connection has no socket to wait on (readIdle)
	hdr    [FrameHeaderLen]byte
	hdrN   int
	fh     FrameHeader
	inBody bool
	body   []byte
	bodyN  int
	share  atomic.Bool // ShareReads

	wmu       sync.Mutex
	wbroken   error       // a write failed mid-frame: the stream is unusable
	wfailed   atomic.Bool // a write failed: a TLS stream can send no close_notify
	hdrBuf    [FrameHeaderLen]byte
	batchHdrs []byte      // WriteBatch's frame headers
	batchBufs net.Buffers // WriteBatch's vector
	joined    []byte      // frames joined for a connection without writev (TLS)
	// TryWriteBatch's: the socket (nil where there is none), and what
	// of its batch the socket did not take at once, sent before
	// anything else; its headers are in tryHdrs.
	wraw    syscall.RawConn
	wrest   net.Buffers
	tryHdrs []byte
	tryBufs net.Buffers // wrest's room

	// The connection is the one owner of the socket's write deadline, so
	// that two writers never trip over each other's: wdl is the user's
	// (SetWriteDeadline), which bounds data frames; a control frame
	// (heartbeat, heartbeat acknowledgement) is bounded by
	// HeartbeatTimeout instead. wset is the deadline set on the socket;
	// ctl is set while a control frame is written. Guarded by dmu; the
	// socket's deadline changes only under dmu.
	dmu  sync.Mutex
	wdl  time.Time
	wset time.Time
	ctl  bool

	// Likewise for reads: rdl is the user's read deadline, rset the one
	// on the socket, frameDL the bound of the frame under way (while
	// framing, which the reader alone changes, is set) and frameTimeout
	// FrameTimeout. The socket's read deadline is the earlier of rdl and
	// frameDL. Guarded by dmu.
	rdl          time.Time
	rset         time.Time
	frameDL      time.Time
	framing      bool
	frameTimeout time.Duration

	ack atomic.Pointer[control] // a heartbeat acknowledgement to send

	lastRecv atomic.Int64 // unix nanoseconds
	failed   atomic.Pointer[error]
	done     chan struct{}
	once     sync.Once
}

// NewTCPConn returns a message connection over c (usually a *net.TCPConn)
// and starts its heartbeats.
func NewTCPConn(c net.Conn, cfg Config) *TCPConn {
	cfg = cfg.withDefaults()
	tc := &TCPConn{c: c, cfg: cfg, done: make(chan struct{}), frameTimeout: cfg.FrameTimeout, wraw: rawWriter(c)}
	tc.lastRecv.Store(time.Now().UnixNano())
	if cfg.HeartbeatInterval > 0 {
		go tc.heartbeat()
	}
	return tc
}

// NetConn returns the underlying connection.
func (c *TCPConn) NetConn() net.Conn { return c.c }

func (c *TCPConn) opError(op string, err error) error {
	// A connection that failed (a heartbeat timeout, say) reports why,
	// not the closed socket it left (net.Pipe's: io.ErrClosedPipe).
	if f := c.failed.Load(); f != nil && (errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe)) {
		err = *f
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return err
	}
	if err == io.EOF {
		return err
	}
	return &net.OpError{Op: op, Net: c.c.LocalAddr().Network(), Source: c.c.LocalAddr(), Addr: c.c.RemoteAddr(), Err: err}
}

// ReadMsg reads the next message into b and returns its length and PPID. It
// answers heartbeats on the way. At the end of the stream it returns io.EOF.
func (c *TCPConn) ReadMsg(b []byte) (int, uint32, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return c.readMsg(b)
}

// ReadBatch reads one message, waiting for it, and then those that are
// already buffered whole, up to len(ms), without another system call. A
// message longer than its Buf but not than limit comes in a new Buf, which
// the caller owns (ReadBatch keeps no reference to it); on a connection
// that shares its read buffers (ShareReads), that Buf may instead lie in
// the connection's read buffer, with Msg.Lease set, until the caller
// releases it. ReadBatch never writes into a Buf that came with a Lease:
// it drops it from ms (Buf and Lease nil) when it fills that slot again.
func (c *TCPConn) ReadBatch(ms []Msg, limit int) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	share := c.share.Load()
	n := 0
	for n < len(ms) {
		if n > 0 && !c.dataFrameBuffered() {
			break
		}
		payload, inRB, ppid, err := c.readFrame()
		if err != nil {
			if n > 0 && err != io.EOF {
				return n, nil // reported by the next call
			}
			return n, err
		}
		m := &ms[n]
		if m.Lease != nil {
			m.Buf, m.Lease = nil, nil
		}
		m.PPID, m.Err = ppid, nil
		switch {
		case len(payload) <= len(m.Buf):
			m.N = copy(m.Buf, payload)
		case len(payload) > limit:
			m.N, m.Err = 0, ErrMessageTooLong
		case !inRB:
			// A frame longer than the read buffer, read into a body of
			// its own, which becomes the message's: no copy.
			m.Buf, m.N = payload, len(payload)
		case share:
			c.rb.refs.Add(1)
			m.Buf, m.N, m.Lease = payload, len(payload), c.rb
		default:
			m.Buf, m.N = bytes.Clone(payload), len(payload)
		}
		n++
	}
	return n, nil
}

// ShareReads sets whether ReadBatch hands out long messages in the
// connection's read buffer, each with a Lease, rather than in a buffer
// of their own (a copy). A session, which keeps the messages it received
// until the application read them, shares them.
func (c *TCPConn) ShareReads(on bool) { c.share.Store(on) }

// readBufSize is how much one read system call brings at most: several
// frames of a bulk stream. A read buffer is twice as long, so that the
// frame read last fits whole.
const readBufSize = 128 << 10

// Lease is a connection's read buffer, which messages that ReadBatch
// handed out (Msg.Lease, with ShareReads) lie in. The buffer goes back to
// the connections' pool once the connection and every message are done
// with it.
type Lease struct {
	b    []byte
	refs atomic.Int32
	gen  atomic.Uint32 // counts the times the buffer went back to the pool
}

// Release gives up a message's hold on its read buffer: the message's Buf
// must not be used after it.
func (l *Lease) Release() {
	if l.refs.Add(-1) == 0 {
		l.gen.Add(1)
		readBufPool.Put(l)
	}
}

var readBufPool = sync.Pool{New: func() any { return &Lease{b: make([]byte, 2*readBufSize)} }}

func newReadBuf() *Lease {
	l := readBufPool.Get().(*Lease)
	l.refs.Store(1)
	return l
}

// dropReadBuf gives the drained read buffer up. rmu is held.
func (c *TCPConn) dropReadBuf() {
	if c.rb != nil {
		c.rb.Release()
		c.rb = nil
	}
	c.rr, c.rw = 0, 0
}

// dataFrameBuffered reports whether a whole data frame waits in the read
// buffer, so that reading it takes no system call. rmu is held.
func (c *TCPConn) dataFrameBuffered() bool {
	if c.inBody || c.hdrN > 0 || c.rw-c.rr < FrameHeaderLen {
		return false
	}
	fh, err := ParseFrameHeader(c.rb.b[c.rr:c.rw], c.cfg.MaxMessageSize)
	return err == nil && fh.Type == FrameData && c.rw-c.rr >= FrameHeaderLen+int(fh.Length)
}

// WriteBatch sends the messages in order with one write (writev) where
// the connection allows it.
func (c *TCPConn) WriteBatch(ms []Msg) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	for _, m := range ms {
		if uint64(len(m.Buf)) > 0xffffffff {
			return 0, c.opError("write", ErrMessageTooLong)
		}
		if m.Stream != 0 || m.Unordered {
			return 0, c.opError("write", ErrNoStreams)
		}
	}
	c.wmu.Lock()
	defer c.unlockWrites()
	if c.wbroken != nil {
		return 0, c.opError("write", c.wbroken)
	}
	c.userWriteDeadline()
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	hdrs := c.batchHdrs[:0]
	for _, m := range ms {
		hdrs = AppendFrameHeader(hdrs, FrameHeader{Type: FrameData, Length: uint32(len(m.Buf)), Tag: m.PPID})
	}
	c.batchHdrs = hdrs
	bufs := c.batchBufs[:0]
	for i, m := range ms {
		bufs = append(bufs, hdrs[i*FrameHeaderLen:(i+1)*FrameHeaderLen], m.Buf)
	}
	c.batchBufs = bufs[:0]
	written, err := writeBuffers(c.c, bufs, &c.joined)
	clear(c.batchBufs[:cap(c.batchBufs)])
	if err != nil {
		// Count the whole frames that went out.
		sent := 0
		for _, m := range ms {
			l := int64(FrameHeaderLen + len(m.Buf))
			if written < l {
				break
			}
			written -= l
			sent++
		}
		c.wfailed.Store(true)
		if written > 0 {
			c.wbroken = fmt.Errorf("stream broken by an earlier partial write: %w", err)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.wbroken = os.ErrDeadlineExceeded
			}
		}
		return sent, c.opError("write", err)
	}
	return len(ms), nil
}

// CanTryWrite reports whether TryWriteBatch can write without waiting:
// the connection is a socket of this system (not TLS, not a pipe).
func (c *TCPConn) CanTryWrite() bool { return c.wraw != nil }

// TryWriteBatch sends the messages in order, as WriteBatch does, with one
// writev that does not wait for room in the socket's buffer: what the
// socket does not take at once stays with the connection, which sends it
// before anything else, in the next write or Flush, so that frames are
// never cut. It reports whether all of ms went out; false with a nil
// error means that the rest is held, and the Bufs must stay unchanged
// until a Flush or a later write returned. Without CanTryWrite, or with a
// rest held already, it holds the whole batch. A connection that holds
// a rest sends no heartbeat acknowledgement from TryWriteBatch: the next
// write or Flush does.
func (c *TCPConn) TryWriteBatch(ms []Msg) (bool, error) {
	if len(ms) == 0 {
		return true, nil
	}
	for _, m := range ms {
		if uint64(len(m.Buf)) > 0xffffffff {
			return false, c.opError("write", ErrMessageTooLong)
		}
		if m.Stream != 0 || m.Unordered {
			return false, c.opError("write", ErrNoStreams)
		}
	}
	c.wmu.Lock()
	if c.wbroken != nil {
		c.wmu.Unlock()
		return false, c.opError("write", c.wbroken)
	}
	held := len(c.wrest) > 0
	if !held {
		c.tryHdrs = c.tryHdrs[:0]
	}
	start := len(c.tryHdrs)
	for _, m := range ms {
		c.tryHdrs = AppendFrameHeader(c.tryHdrs, FrameHeader{Type: FrameData, Length: uint32(len(m.Buf)), Tag: m.PPID})
	}
	// Where tryHdrs moves as it grows, the rest held still refers to
	// the old headers, which stay as they are.
	hdrs := c.tryHdrs[start:]
	rest := c.wrest
	if rest == nil {
		rest = c.tryBufs[:0]
	}
	for i, m := range ms {
		rest = append(rest, hdrs[i*FrameHeaderLen:(i+1)*FrameHeaderLen], m.Buf)
	}
	c.wrest, c.tryBufs = rest, rest[:0]
	if held || c.wraw == nil {
		c.wmu.Unlock()
		return false, nil
	}
	c.userWriteDeadline()
	n, err := tryWritev(c.wraw, c.wrest)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.wmu.Unlock()
		return false, nil // nothing written: the rest waits, for Flush to report
	}
	if err != nil {
		c.wfailed.Store(true)
		c.wrest = nil
		c.wbroken = fmt.Errorf("stream broken by a failed write: %w", err)
		c.wmu.Unlock()
		return false, c.opError("write", err)
	}
	c.wrest = consumeBuffers(c.wrest, n)
	if len(c.wrest) == 0 {
		c.wrest = nil
		c.unlockWrites()
		return true, nil
	}
	c.wmu.Unlock()
	return false, nil
}

// consumeBuffers drops the first n bytes of bufs.
func consumeBuffers(bufs net.Buffers, n int64) net.Buffers {
	for len(bufs) > 0 && n >= int64(len(bufs[0])) {
		n -= int64(len(bufs[0]))
		bufs[0] = nil
		bufs = bufs[1:]
	}
	if len(bufs) > 0 {
		bufs[0] = bufs[0][n:]
	}
	return bufs
}

// Flush sends what TryWriteBatch held, waiting for room as WriteBatch
// does.
func (c *TCPConn) Flush() error {
	c.wmu.Lock()
	defer c.unlockWrites()
	if c.wbroken != nil {
		return c.opError("write", c.wbroken)
	}
	c.userWriteDeadline()
	return c.flushLocked()
}

// flushLocked sends the rest TryWriteBatch held. If that fails the
// stream is broken: the rest may begin in the middle of a frame. wmu is
// held.
func (c *TCPConn) flushLocked() error {
	if len(c.wrest) == 0 {
		return nil
	}
	bufs := c.wrest
	c.wrest = nil
	if _, err := writeBuffers(c.c, bufs, &c.joined); err != nil {
		c.wfailed.Store(true)
		c.wbroken = fmt.Errorf("stream broken by an earlier partial write: %w", err)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.wbroken = os.ErrDeadlineExceeded
		}
		return c.opError("write", err)
	}
	return nil
}

// readMsg is ReadMsg with rmu held.
func (c *TCPConn) readMsg(b []byte) (int, uint32, error) {
	payload, _, ppid, err := c.readFrame()
	if err != nil {
		return 0, 0, err
	}
	if len(payload) > len(b) {
		return 0, ppid, c.opError("read", ErrMessageTooLong)
	}
	return copy(b, payload), ppid, nil
}

// readFrame reads frames up to the next data frame and returns its
// payload, valid until the next read, and whether it lies in rb. It
// answers heartbeats on the way. rmu is held.
func (c *TCPConn) readFrame() ([]byte, bool, uint32, error) {
	for {
		if !c.inBody {
			fh, err := c.readHeader()
			if err != nil {
				return nil, false, 0, err
			}
			c.fh, c.inBody, c.bodyN = fh, true, 0
			if int(fh.Length) > readBufSize {
				c.body = make([]byte, fh.Length)
				if c.rb != nil {
					c.bodyN = copy(c.body, c.rb.b[c.rr:c.rw])
					c.rr += c.bodyN
				}
			}
		}
		var payload []byte
		inRB := false
		switch l := int(c.fh.Length); {
		case l > readBufSize:
			// The rest of a long frame comes straight into its body.
			for c.bodyN < len(c.body) {
				n, err := c.readSome(c.body[c.bodyN:])
				c.bodyN += n
				if err != nil {
					if err == io.EOF {
						err = io.ErrUnexpectedEOF
					}
					return nil, false, 0, c.opError("read", err)
				}
			}
			payload, c.body = c.body, nil
		case l > 0:
			if err := c.fill(l); err != nil {
				return nil, false, 0, err
			}
			payload, inRB = c.rb.b[c.rr:c.rr+l:c.rr+l], true
			c.rr += l
		}
		c.inBody = false
		if c.framing {
			c.dmu.Lock()
			c.framing, c.frameDL = false, time.Time{}
			c.dmu.Unlock()
		}
		switch c.fh.Type {
		case FrameData:
			return payload, inRB, c.fh.Tag, nil
		case FrameHeartbeat:
			// The reader never waits for the write lock: a writer
			// that holds it may itself wait for the peer to read,
			// and the peer for this reader. The acknowledgement
			// waits in ack, and whoever holds the lock sends it.
			c.ack.Store(&control{typ: FrameHeartbeatAck, tag: c.fh.Tag, payload: bytes.Clone(payload)})
			if c.wmu.TryLock() {
				c.unlockWrites()
			}
		}
	}
}

// readHeader reads the next frame header: from the read buffer, or, on a
// connection that waits for its next frame with nothing buffered,
// straight into hdr. rmu is held.
func (c *TCPConn) readHeader() (FrameHeader, error) {
	var hdr []byte
	direct := c.hdrN > 0 || c.rr == c.rw
	if direct && c.hdrN == 0 && c.rb != nil && c.full {
		// The last read filled all it asked for: more is likely to
		// have come, so read on into a buffer, which this connection
		// keeps while it waits if nothing has.
		if c.rb.refs.Load() > 1 {
			c.rb.Release()
			c.rb = newReadBuf()
		}
		c.rr, c.rw, direct = 0, 0, false
	}
	if direct && c.hdrN == 0 {
		c.dropReadBuf()
		ok, err := c.readIdle()
		if err != nil {
			return FrameHeader{}, c.opError("read", err)
		}
		direct = !ok
	}
	if direct {
		c.dropReadBuf()
		for c.hdrN < FrameHeaderLen {
			n, err := c.readSome(c.hdr[c.hdrN:])
			c.hdrN += n
			if err != nil {
				if err == io.EOF && c.hdrN > 0 {
					err = io.ErrUnexpectedEOF
				}
				return FrameHeader{}, c.opError("read", err)
			}
		}
		c.hdrN = 0
		hdr = c.hdr[:]
	} else {
		if err := c.fill(FrameHeaderLen); err != nil {
			return FrameHeader{}, err
		}
		hdr = c.rb.b[c.rr : c.rr+FrameHeaderLen]
		c.rr += FrameHeaderLen
	}
	fh, err := ParseFrameHeader(hdr, c.cfg.MaxMessageSize)
	if err != nil {
		c.fail(err)
		return FrameHeader{}, c.opError("read", err)
	}
	return fh, nil
}

// fill reads until n bytes (at most readBufSize) are buffered in rb, with
// as few system calls as it can: a read takes all the room up to
// readBufSize, and the frame that crosses it is read up to its end only,
// into rb's second half, so that frames never move to make room. rmu is
// held.
func (c *TCPConn) fill(n int) error {
	for c.rw-c.rr < n {
		if c.rb == nil {
			c.rb, c.rr, c.rw = newReadBuf(), 0, 0
		}
		if c.rr+n > len(c.rb.b) {
			// Not reached by frames read as above; kept for safety.
			rb := newReadBuf()
			c.rw = copy(rb.b, c.rb.b[c.rr:c.rw])
			c.rr = 0
			c.rb.Release()
			c.rb = rb
		}
		end := readBufSize
		if c.rr+n > end {
			end = c.rr + n
		}
		k, err := c.readSome(c.rb.b[c.rw:end])
		c.rw += k
		c.full = c.rw == end
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return c.opError("read", err)
		}
	}
	return nil
}

// readSome reads into p from the socket, within the deadline the frame
// under way asks for. rmu is held.
func (c *TCPConn) readSome(p []byte) (int, error) {
	mid := c.inBody || c.hdrN > 0 || c.rr < c.rw
	c.readDeadline(mid)
	n, err := c.c.Read(p)
	if n > 0 {
		c.lastRecv.Store(time.Now().UnixNano())
	}
	if err != nil && mid && errors.Is(err, os.ErrDeadlineExceeded) && c.frameExpired() {
		c.fail(ErrFrameTimeout)
		err = ErrFrameTimeout
	}
	return n, err
}

// readDeadline puts the earlier of the user's read deadline and the bound
// of the frame under way (started now if mid is set and it has none yet)
// on the socket, unless it is there. rmu is held.
func (c *TCPConn) readDeadline(mid bool) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if mid && !c.framing && c.frameTimeout > 0 {
		c.framing, c.frameDL = true, time.Now().Add(c.frameTimeout)
	}
	want := c.readDeadlineLocked()
	if !want.Equal(c.rset) {
		c.rset = want
		c.c.SetReadDeadline(want)
	}
}

// readDeadlineLocked is the read deadline the socket should have. dmu is
// held.
func (c *TCPConn) readDeadlineLocked() time.Time {
	if c.framing && (c.rdl.IsZero() || c.frameDL.Before(c.rdl)) {
		return c.frameDL
	}
	return c.rdl
}

// frameExpired reports whether a deadline that ran out was the frame's.
func (c *TCPConn) frameExpired() bool {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	return c.framing && !c.frameDL.After(time.Now()) && (c.rdl.IsZero() || !c.rdl.Before(c.frameDL))
}

// SetFrameTimeout changes the connection's FrameTimeout (negative: no
// bound) from the next frame on, as a server does for the connections it
// serves.
func (c *TCPConn) SetFrameTimeout(d time.Duration) {
	c.dmu.Lock()
	c.frameTimeout = d
	c.dmu.Unlock()
}

// WriteMsg sends b as one message with the given PPID.
func (c *TCPConn) WriteMsg(b []byte, ppid uint32) error {
	if uint64(len(b)) > 0xffffffff {
		return c.opError("write", ErrMessageTooLong)
	}
	return c.writeFrame(FrameData, ppid, b)
}

// writeFrame sends one data frame within the user's write deadline.
func (c *TCPConn) writeFrame(typ uint8, tag uint32, payload []byte) error {
	c.wmu.Lock()
	defer c.unlockWrites()
	c.userWriteDeadline()
	return c.writeLocked(typ, tag, payload)
}

// control is a control frame waiting to be sent.
type control struct {
	typ     uint8
	tag     uint32
	payload []byte
}

// unlockWrites sends the heartbeat acknowledgement that waits, if any,
// and releases wmu. It checks again after releasing it: an
// acknowledgement stored while the lock was held, whose reader failed to
// take the lock, is sent by the holder. A failed acknowledgement ends the
// connection.
func (c *TCPConn) unlockWrites() {
	for {
		if a := c.ack.Swap(nil); a != nil {
			if err := c.writeControl(a.typ, a.tag, a.payload); err != nil {
				c.wmu.Unlock()
				c.fail(err)
				return
			}
		}
		c.wmu.Unlock()
		if c.ack.Load() == nil || !c.wmu.TryLock() {
			return
		}
	}
}

// writeControl sends one control frame (a heartbeat or its
// acknowledgement) within HeartbeatTimeout, whatever the user's write
// deadline: a deadline set for data frames, which may have passed long
// ago, never fails a heartbeat, and a heartbeat never waits longer than
// the peer is given to answer it. wmu is held.
func (c *TCPConn) writeControl(typ uint8, tag uint32, payload []byte) error {
	c.dmu.Lock()
	c.ctl = true
	c.wset = time.Now().Add(c.cfg.HeartbeatTimeout)
	c.c.SetWriteDeadline(c.wset)
	c.dmu.Unlock()
	err := c.writeLocked(typ, tag, payload)
	c.dmu.Lock()
	c.ctl = false
	c.dmu.Unlock()
	return err
}

// userWriteDeadline puts the user's write deadline on the socket, unless
// it is there already. wmu is held.
func (c *TCPConn) userWriteDeadline() {
	c.dmu.Lock()
	if !c.wset.Equal(c.wdl) {
		c.wset = c.wdl
		c.c.SetWriteDeadline(c.wdl)
	}
	c.dmu.Unlock()
}

// writeLocked writes one frame with wmu held.
func (c *TCPConn) writeLocked(typ uint8, tag uint32, payload []byte) error {
	if c.wbroken != nil {
		return c.opError("write", c.wbroken)
	}
	if err := c.flushLocked(); err != nil {
		return err
	}
	hdr := AppendFrameHeader(c.hdrBuf[:0], FrameHeader{Type: typ, Length: uint32(len(payload)), Tag: tag})
	bufs := net.Buffers{hdr, payload}
	n, err := writeBuffers(c.c, bufs, &c.joined)
	if err != nil {
		c.wfailed.Store(true)
		if n > 0 {
			// Part of the frame went out: the peer can no longer find
			// frame boundaries after it.
			c.wbroken = fmt.Errorf("stream broken by an earlier partial write: %w", err)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.wbroken = os.ErrDeadlineExceeded
			}
		}
		return c.opError("write", err)
	}
	return nil
}

// fail ends the connection with err as the reason later calls report.
func (c *TCPConn) fail(err error) {
	c.failed.CompareAndSwap(nil, &err)
	c.Close()
}

func (c *TCPConn) heartbeat() {
	iv, to := c.cfg.HeartbeatInterval, c.cfg.HeartbeatTimeout
	// While the peer is silent a heartbeat goes out after iv and again
	// every retry; the connection fails at iv+to of silence exactly, by a
	// timer set to the next of these times rather than on a periodic
	// tick, which could add up to a tick to the detection.
	retry := min(iv, to) / 2
	t := time.NewTimer(iv)
	defer t.Stop()
	var sent time.Time // the last heartbeat's
	for {
		select {
		case <-c.done:
			return
		case now := <-t.C:
			last := time.Unix(0, c.lastRecv.Load())
			failAt := last.Add(iv + to)
			if !now.Before(failAt) {
				c.fail(ErrPeerTimeout)
				return
			}
			hbAt := last.Add(iv)
			if sent.After(last) {
				hbAt = sent.Add(retry) // one went out in this silence
			}
			if !now.Before(hbAt) {
				// A frame being written (data, or the reader's
				// acknowledgement) holds the lock: the peer's
				// silence is measured all the same, and the
				// heartbeat is tried again after retry.
				if c.wmu.TryLock() {
					err := c.writeControl(FrameHeartbeat, rand.Uint32(), nil)
					c.unlockWrites()
					if err != nil {
						c.fail(err)
						return
					}
					sent = now
				}
				hbAt = now.Add(retry)
			}
			next := hbAt
			if failAt.Before(next) {
				next = failAt
			}
			t.Reset(time.Until(next))
		}
	}
}

// Close closes the connection.
func (c *TCPConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		close(c.done)
		// After a failed write, crypto/tls would still try to send its
		// close_notify alert for up to five seconds into a full socket
		// buffer; the stream is broken, so close the socket at once.
		if tc, ok := c.c.(*tls.Conn); ok && c.wfailed.Load() {
			err = tc.NetConn().Close()
			return
		}
		err = c.c.Close()
	})
	if err == net.ErrClosed {
		return c.opError("close", err)
	}
	return err
}

// LocalAddr returns the local network address.
func (c *TCPConn) LocalAddr() net.Addr { return c.c.LocalAddr() }

// RemoteAddr returns the remote network address.
func (c *TCPConn) RemoteAddr() net.Addr { return c.c.RemoteAddr() }

// SetDeadline sets the read and write deadlines, as net.Conn does.
func (c *TCPConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline, as net.Conn does: for future
// reads and any that is blocked now. A frame under way is bounded by
// FrameTimeout as well.
func (c *TCPConn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.rdl = t
	c.rset = c.readDeadlineLocked()
	return c.c.SetReadDeadline(c.rset)
}

// SetWriteDeadline sets the write deadline, as net.Conn does: for future
// writes of messages and any that is blocked now. It does not bound the
// connection's heartbeats, which have their own (HeartbeatTimeout).
func (c *TCPConn) SetWriteDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.wdl = t
	if c.ctl {
		return nil // applied by the next data write
	}
	c.wset = t
	return c.c.SetWriteDeadline(t)
}

// Dialer dials message connections. The zero value uses Config's defaults.
type Dialer struct {
	Config
	// NetDialer dials TCP; nil means a zero net.Dialer.
	NetDialer *net.Dialer
	// TLSConfig, when set, runs every TCP connection over TLS 1.3 with
	// it; nil means plain TCP, except on the network "tls". A config that
	// names no ServerName verifies the host of the dialed address.
	TLSConfig *tls.Config
}

// DialContext connects to address on network: "tcp", "tcp4" or "tcp6" for
// the framed TCP mapping (over TLS when TLSConfig is set), "tls", "tls4" or
// "tls6" for the framed TCP mapping over TLS (with the system's roots when
// TLSConfig is nil), "sctp" for kernel SCTP where available. The TLS
// handshake is over, and the registrar's certificate verified, when it
// returns.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (Conn, error) {
	network, useTLS := tlsNetwork(network)
	switch network {
	case "tcp", "tcp4", "tcp6":
		nd := d.NetDialer
		if nd == nil {
			nd = &net.Dialer{}
		}
		c, err := nd.DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		if useTLS || d.TLSConfig != nil {
			if c, err = dialTLS(ctx, c, d.TLSConfig, network, address); err != nil {
				return nil, err
			}
		}
		return NewTCPConn(c, d.Config), nil
	case "sctp", "sctp4", "sctp6":
		if d.TLSConfig != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Err: ErrTLSOverSCTP}
		}
		return dialSCTP(ctx, d.Config, network, address)
	}
	return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("%w: %q", ErrUnsupportedNetwork, network)}
}

// ListenConfig configures message listeners.
type ListenConfig struct {
	Config
	// TLSConfig, when set, runs every TCP connection over TLS 1.3 with
	// it: its certificate, and its ClientAuth and ClientCAs for mutual
	// TLS. nil means plain TCP.
	TLSConfig *tls.Config
	// HandshakeTimeout bounds each accepted connection's TLS handshake;
	// zero means DefaultHandshakeTimeout. HandshakeError, when set, is
	// told of each handshake that failed; that connection is closed and
	// never returned by Accept.
	HandshakeTimeout time.Duration
	HandshakeError   func(remote net.Addr, err error)
}

// Listen listens on network ("tcp", "tcp4", "tcp6", "tls", "tls4",
// "tls6", or "sctp" where the kernel has it) and address. Over TCP with a
// TLSConfig, and always over "tls", Accept returns connections whose TLS
// handshake is over.
func (lc *ListenConfig) Listen(ctx context.Context, network, address string) (Listener, error) {
	network, useTLS := tlsNetwork(network)
	switch network {
	case "tcp", "tcp4", "tcp6":
		if useTLS && lc.TLSConfig == nil {
			return nil, &net.OpError{Op: "listen", Net: "tls", Err: ErrNoTLSConfig}
		}
		var nlc net.ListenConfig
		l, err := nlc.Listen(ctx, network, address)
		if err != nil {
			return nil, err
		}
		if lc.TLSConfig != nil {
			return newTLSListener(l, lc), nil
		}
		return &tcpListener{l: l, cfg: lc.Config}, nil
	case "sctp", "sctp4", "sctp6":
		if lc.TLSConfig != nil {
			return nil, &net.OpError{Op: "listen", Net: network, Err: ErrTLSOverSCTP}
		}
		return listenSCTP(ctx, lc.Config, network, address)
	}
	return nil, &net.OpError{Op: "listen", Net: network, Err: fmt.Errorf("%w: %q", ErrUnsupportedNetwork, network)}
}

type tcpListener struct {
	l   net.Listener
	cfg Config
}

func (l *tcpListener) Accept() (Conn, error) {
	c, err := l.l.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	return NewTCPConn(c, l.cfg), nil
}

func (l *tcpListener) Close() error   { return l.l.Close() }
func (l *tcpListener) Addr() net.Addr { return l.l.Addr() }

// Pipe returns two ends of an in-memory message connection, without
// heartbeats, for tests. Like net.Pipe it is synchronous: a write waits for
// the other end's read.
func Pipe() (Conn, Conn) {
	a, b := net.Pipe()
	cfg := Config{HeartbeatInterval: -1}
	return NewTCPConn(a, cfg), NewTCPConn(b, cfg)
}
