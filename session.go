package rsp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/failover"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/ulpack"
)

// Errors of sessions. They come wrapped in *net.OpError.
var (
	// ErrNotSupported: the session's mapping cannot do what was asked
	// (SCTP streams or unordered delivery over TCP; RTT without TCP_INFO).
	ErrNotSupported = errors.New("rsp: not supported by the session's transport mapping")
	// ErrStateLost: the element failed, and the session cannot move to
	// another one without splicing two servers' byte streams: the element
	// neither handed out a cookie nor declared its messages stateless. The
	// application re-dials, as after a broken TCP connection.
	ErrStateLost = errors.New("rsp: pool element failed and its state cannot move to another")
	// ErrFailoverFailed: no element of the pool took the session over
	// within the failover's bounds.
	ErrFailoverFailed = errors.New("rsp: failover found no pool element")
	// ErrMessageTooLong: a WriteMsg longer than SessionConfig.MaxMessageSize
	// (or than MaxUnackedBytes can hold), or than the peer's MaxMessageSize
	// where it announced one (Session.MaxMessageSize). A session whose
	// failover reaches an element with a smaller limit than messages still
	// to replay fails with an error that wraps it.
	ErrMessageTooLong = errors.New("rsp: message too long")
	// ErrProtocol: the peer broke the session protocol.
	ErrProtocol = errors.New("rsp: session protocol violation")
	// ErrRefused: the element refused the session (CLOSE REFUSED).
	ErrRefused = errors.New("rsp: session refused")
	// ErrGoAway: the pool element stopped serving the session (GOAWAY,
	// as its Listener.Shutdown sends). A session fails over on it; it
	// fails with it only where it may not (SessionConfig.NoFailover), and
	// FailoverEvent.Cause wraps it.
	ErrGoAway = errors.New("rsp: pool element goes away")
)

// Session is a connection to a pool that frames messages, knows what the
// pool element processed, and fails over to another element by itself. It
// is a net.Conn: each Write sends one message, Read reads the bytes of the
// messages received in order, across message boundaries; deadlines and
// errors are those the net.Conn documentation states (*net.OpError wrapping
// os.ErrDeadlineExceeded or net.ErrClosed; io.EOF once the peer closed).
// Its message API (WriteMsg, ReadMsg, Ack) is the service draft's
// DATA_SEND, DATA_INDICATION and ULP acknowledgement.
//
// A Dialer returns a *Session for a pool element that speaks sessions; a
// pool element's Listener returns one for each pool user that opened one.
type Session struct {
	cfg    SessionConfig
	client bool
	d      *Dialer   // pool user: how to reach other elements
	l      *Listener // pool element
	handle asap.PoolHandle
	id     [16]byte
	local  net.Addr

	kick   chan struct{} // wakes the loop
	done   chan struct{} // closed when the session ends
	closed chan struct{} // closed by Close: a failover under way ends
	rdl    deadline
	wdl    deadline

	mu sync.Mutex
	// The connection: generation counts connections, so that a late
	// report of an old one's failure is told apart.
	conn    mapping.BatchConn
	gen     int
	connErr error // the present connection failed
	// handledGen is the generation whose failure the loop took up: later
	// reports of it are stale.
	handledGen int
	pe         Element
	exchanged  bool              // a message came from the element
	stateless  bool              // the element's messages stand alone (HELLO_ACK)
	peerMax    int               // the longest message the peer accepts (HELLO, HELLO_ACK); 0: not announced
	fm         *failover.Machine // pool user: the failover state machine
	fedCookie  []byte            // what the machine was told last
	fedCard    *asap.BusinessCard
	cookie     []byte
	card       *asap.BusinessCard
	echoed     []byte // pool element: the cookie a failed-over session echoed
	resumed    bool
	err        error // the session ended: why (after the queued data is read)
	closing    bool  // Close was called
	goAway     bool  // GOAWAY goes next (GoAway, or a drained shutdown)
	peerEOF    bool  // the peer sent CLOSE
	peerErr    error // the CLOSE was not NORMAL
	// Send side: ulpack's Sender keeps the frames until acknowledged (the
	// replay set); pending are those not yet written to conn.
	snd       *ulpack.Sender
	pending   [][]byte
	sent      uint64 // highest sequence number handed to the writer
	written   uint64 // highest sequence number the writer is done with
	peerAcked uint64 // the peer's acknowledgement, freed once written
	wwait     chan struct{}
	// A Write that answers a message read (turn) goes out from the
	// writing goroutine itself when no one else writes (writeInline):
	// writing is set while the loop or such a Write writes on conn;
	// loopWaits that the loop waits for it to finish. The frames up to
	// heldUpTo were handed to conn (generation heldGen), which holds a
	// rest of them for the loop to flush.
	turn      bool
	writing   bool
	loopDue   time.Time // when the loop's timer wakes it (zero: never)
	loopWaits bool
	heldUpTo  uint64
	heldGen   int
	ibatch    []mapping.Msg
	cookieTx  []byte // a cookie to send before the next acknowledgement
	cardTx    *asap.BusinessCard
	// Receive side.
	rq        []inMsg          // received, not yet read whole
	rqArr     []inMsg          // the array rq starts again at when empty (pushRQ)
	roff      int              // bytes of rq[0] read
	rcv       *ulpack.Receiver // duplicates, what was processed, when to acknowledge
	consumed  []uint64         // read whole, processed at the application's next call
	ackNow    bool             // Ack asked for an acknowledgement without delay
	rwait     chan struct{}
	failovers int
	// Liveness where the mapping has no heartbeat (session_ping.go):
	// when the peer was last heard from, and pinged. heard: a message
	// came since the loop last looked, at lastRecv or after.
	lastRecv, pingAt time.Time
	heard            bool
	// streams holds the SCTP stream and ordering of the messages not yet
	// acknowledged that asked for them (session_sctp.go).
	streams map[uint64]streamOpt
	// draining: the pool element shuts down (Listener.Shutdown,
	// session_shutdown.go); lastRead is the last message the application
	// took whole.
	draining bool
	lastRead uint64
}

// inMsg is a received message.
type inMsg struct {
	seq     uint64
	ppid    uint32
	ackReq  bool // the application's ack request
	ackNow  bool // the sender's
	payload []byte
	// lease holds the connection's read buffer that payload lies in
	// (mapping.TCPConn.ShareReads): Read releases it once it read the
	// message whole.
	lease *mapping.Lease
	from  Element
	// The SCTP stream and ordering it came with.
	stream    uint16
	unordered bool
}

// Element returns the pool element the session is connected to now (for a
// pool element's session: the element itself).
func (s *Session) Element() Element {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pe
}

// Handle returns the pool handle of the session.
func (s *Session) Handle() string { return string(s.handle) }

// ID returns the session identifier, which stays the same across failovers.
func (s *Session) ID() [16]byte { return s.id }

// Failovers returns how many times the session failed over.
func (s *Session) Failovers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failovers
}

// LocalAddr returns the local address of the present connection.
func (s *Session) LocalAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		return s.conn.LocalAddr()
	}
	return s.local
}

// RemoteAddr returns the address of the pool element the session is
// connected to, or, on a pool element, of the pool user.
func (s *Session) RemoteAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remoteLocked()
}

func (s *Session) remoteLocked() net.Addr {
	if s.conn != nil {
		return s.conn.RemoteAddr()
	}
	return sessionAddr(s.handle)
}

// sessionAddr is the address of a session between connections: its pool.
type sessionAddr string

func (a sessionAddr) Network() string { return "rsp" }
func (a sessionAddr) String() string  { return "pool:" + string(a) }

func (s *Session) opError(op string, err error) error {
	if err == io.EOF {
		return err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == op {
		return err
	}
	return &net.OpError{Op: op, Net: "rsp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: err}
}

// newSession makes a session on its first connection and starts its
// loop.
func newSession(cfg SessionConfig, client bool, handle asap.PoolHandle, id [16]byte, c mapping.BatchConn, pe Element) *Session {
	s := &Session{
		cfg:        cfg,
		client:     client,
		handle:     handle,
		id:         id,
		kick:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		closed:     make(chan struct{}),
		conn:       c,
		pe:         pe,
		handledGen: -1,
		local:      c.LocalAddr(),
		snd:        ulpack.NewSender(cfg.senderConfig()),
		rcv:        ulpack.NewReceiver(cfg.receiverConfig(), 0),
	}
	s.rdl.init()
	s.wdl.init()
	return s
}

func (s *Session) start() {
	go s.readLoop(s.conn, s.gen)
	go s.loop()
}

func (s *Session) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func broadcast(ch *chan struct{}) {
	if *ch != nil {
		close(*ch)
		*ch = nil
	}
}

func waitChan(ch *chan struct{}) chan struct{} {
	if *ch == nil {
		*ch = make(chan struct{})
	}
	return *ch
}

// settle applies the implicit acknowledgement rule at an application call:
// the message read whole before counts as processed. mu is held.
func (s *Session) settle() {
	if len(s.consumed) == 0 {
		return
	}
	if !s.cfg.ManualAck {
		for _, seq := range s.consumed {
			s.processed(seq)
		}
	}
	s.consumed = s.consumed[:0]
}

// Read reads the data of the messages received, in order.
func (s *Session) Read(b []byte) (int, error) {
	s.mu.Lock()
	s.settle()
	for {
		if s.closing {
			s.mu.Unlock()
			return 0, s.opError("read", net.ErrClosed)
		}
		if len(s.rq) > 0 {
			if len(b) == 0 {
				s.mu.Unlock()
				return 0, nil
			}
			// As many messages as fit, read across their boundaries.
			n := 0
			for n < len(b) && len(s.rq) > 0 {
				m := &s.rq[0]
				k := copy(b[n:], m.payload[s.roff:])
				n += k
				s.roff += k
				if s.roff < len(m.payload) {
					break
				}
				lease := m.lease
				s.consumedLocked(*m)
				if lease != nil {
					lease.Release() // nothing refers to it any more
				}
			}
			if n == 0 {
				continue // empty messages only: wait for bytes
			}
			s.mu.Unlock()
			return n, nil
		}
		if s.draining {
			s.drainedLocked()
			s.mu.Unlock()
			return 0, io.EOF
		}
		if s.err != nil || s.peerEOF {
			err := s.err
			if s.peerEOF {
				err = io.EOF
				if s.peerErr != nil {
					err = s.peerErr
				}
			}
			s.mu.Unlock()
			return 0, s.opError("read", err)
		}
		if s.rdl.expired() {
			s.mu.Unlock()
			return 0, s.opError("read", os.ErrDeadlineExceeded)
		}
		if len(b) == 0 {
			s.mu.Unlock()
			return 0, nil
		}
		ch := waitChan(&s.rwait)
		s.mu.Unlock()
		select {
		case <-ch:
		case <-s.rdl.wait():
		case <-s.done:
		}
		s.mu.Lock()
	}
}

// pushRQ appends m to the receive queue. The queue starts again at the
// beginning of its array whenever it is empty, so that a stream of
// messages allocates nothing once the array holds as many as wait at a
// time (consumed from the front, it would reallocate as it reached its
// end, and the garbage would start collections that drop the pooled read
// buffers). mu is held.
func (s *Session) pushRQ(m inMsg) {
	if len(s.rq) == 0 {
		s.rq = s.rqArr[:0]
	}
	s.rq = append(s.rq, m)
	if cap(s.rq) > cap(s.rqArr) {
		s.rqArr = s.rq[:0]
	}
}

// consumedLocked takes the message read whole off the queue. mu is held.
func (s *Session) consumedLocked(m inMsg) {
	s.rq[0] = inMsg{}
	s.rq = s.rq[1:]
	s.roff = 0
	if m.from.ID == s.pe.ID {
		s.consumed = append(s.consumed, m.seq)
		s.lastRead = m.seq
	}
	s.turn = true
}

// Message is a message received with ReadMsg: DATA_INDICATION.
type Message struct {
	// Data is the message's payload.
	Data []byte
	// PPID is the application's payload protocol identifier.
	PPID uint32
	// AckRequest says that the sender asked for an acknowledgement as soon
	// as the message is processed.
	AckRequest bool
	// Seq is the message's sequence number from its sender.
	Seq uint64
	// From is the pool element that sent it (for a pool element's session:
	// itself).
	From Element
	// Stream and Unordered are the SCTP stream the message came on and
	// whether it was sent for unordered delivery (zero over the TCP
	// mapping).
	Stream    uint16
	Unordered bool
}

// ReadMsg reads the next whole message; if Read took part of it, the rest.
func (s *Session) ReadMsg() (Message, error) {
	s.mu.Lock()
	s.settle()
	for {
		if s.closing {
			s.mu.Unlock()
			return Message{}, s.opError("read", net.ErrClosed)
		}
		if len(s.rq) > 0 {
			m := s.rq[0]
			msg := Message{Data: m.payload[s.roff:], PPID: m.ppid, AckRequest: m.ackReq, Seq: m.seq, From: m.from, Stream: m.stream, Unordered: m.unordered}
			s.consumedLocked(m)
			s.mu.Unlock()
			return msg, nil
		}
		if s.draining {
			s.drainedLocked()
			s.mu.Unlock()
			return Message{}, io.EOF
		}
		if s.err != nil || s.peerEOF {
			err := s.err
			if s.peerEOF {
				err = io.EOF
				if s.peerErr != nil {
					err = s.peerErr
				}
			}
			s.mu.Unlock()
			return Message{}, s.opError("read", err)
		}
		if s.rdl.expired() {
			s.mu.Unlock()
			return Message{}, s.opError("read", os.ErrDeadlineExceeded)
		}
		ch := waitChan(&s.rwait)
		s.mu.Unlock()
		select {
		case <-ch:
		case <-s.rdl.wait():
		case <-s.done:
		}
		s.mu.Lock()
	}
}

// Ack acknowledges m and every message from the same element before it:
// the element never replays them. With SessionConfig.ManualAck it is the
// only way messages are acknowledged; without, it acknowledges earlier
// than the implicit rule.
func (s *Session) Ack(m Message) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock() // opError takes mu
		return s.opError("ack", net.ErrClosed)
	}
	defer s.mu.Unlock()
	if m.From.ID != s.pe.ID || m.Seq <= s.rcv.Acked() {
		return nil
	}
	now := time.Now()
	for seq := s.rcv.Acked() + 1; seq <= m.Seq; seq++ {
		s.rcv.Processed(now, seq) // those not received yet stay unprocessed
	}
	s.drainedLocked()
	s.wake()
	return nil
}

// WriteOptions are the options of WriteMsg: DATA_SEND's.
type WriteOptions struct {
	// AckRequest asks the receiver to acknowledge the message as soon as
	// it processed it, rather than coalesced with later ones.
	AckRequest bool
	// PPID is the application's payload protocol identifier, delivered
	// with the message.
	PPID uint32
	// Stream and Unordered ask for an SCTP stream and unordered delivery,
	// where the session's connection is an SCTP association (Stream below
	// its outbound streams); the TCP mapping has neither and fails with
	// ErrNotSupported. A message that may overtake others is still
	// delivered once (spec/session.md 5.3); replayed after a failover to
	// an element reached over TCP it goes in order.
	Stream    uint16
	Unordered bool
	// Element, if non-zero, is the pool element the message is for; a
	// session connected to another one fails with ErrNotSupported (a
	// session talks to one element at a time: dial it instead).
	Element asap.PEID
	// Addr, if set, is the transport address the message is for, with the
	// same rule as Element.
	Addr net.Addr
}

// Write sends b as one message (several if b is longer than
// MaxMessageSize). It returns once the message is queued to be sent; it
// blocks, within the write deadline, while the messages not yet
// acknowledged fill the session's buffer.
func (s *Session) Write(b []byte) (int, error) {
	n := 0
	for {
		_, k, err := s.write(b[n:], WriteOptions{}, true)
		n += k
		if err != nil {
			return n, err
		}
		if n == len(b) {
			return n, nil
		}
	}
}

// MaxMessageSize returns the longest message WriteMsg sends: the
// session's SessionConfig.MaxMessageSize (within what MaxUnackedBytes can
// hold), or the peer's limit where it announced a smaller one in the
// session's handshake (a pool element's in its HELLO_ACK, which changes
// with the element after a failover; a pool user's in its HELLO, in whole
// KiB). Peers that predate the announcement announce none.
func (s *Session) MaxMessageSize() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxSendLocked()
}

// maxSendLocked is MaxMessageSize. mu is held.
func (s *Session) maxSendLocked() int {
	return sendLimit(s.cfg, s.peerMax)
}

// sendLimit is the longest message a session under cfg sends to a peer
// that accepts at most peerMax (0: not announced).
func sendLimit(cfg SessionConfig, peerMax int) int {
	m := cfg.maxMessage()
	if peerMax > 0 {
		m = min(m, peerMax)
	}
	return m
}

// tooLong is the error of a message of n bytes over limit, the session's
// own or (peerMax, when it is the smaller) the peer's.
func (s *Session) tooLong(n, limit, peerMax int) error {
	if peerMax > 0 && limit == peerMax && peerMax < s.cfg.maxMessage() {
		peer := "pool element"
		if !s.client {
			peer = "pool user"
		}
		return fmt.Errorf("%w: %d bytes, over the %s's limit of %d", ErrMessageTooLong, n, peer, limit)
	}
	return ErrMessageTooLong
}

// WriteMsg sends b as one message with the options of o (DATA_SEND) and
// returns its sequence number, which Acked and WaitAcked compare with.
func (s *Session) WriteMsg(b []byte, o WriteOptions) (uint64, error) {
	if o.Stream != 0 || o.Unordered {
		if err := s.checkStream(o.Stream); err != nil {
			return 0, s.opError("write", err)
		}
	}
	if o.Element != 0 || o.Addr != nil {
		s.mu.Lock()
		pe, remote := s.pe, s.remoteLocked()
		s.mu.Unlock()
		if (o.Element != 0 && o.Element != pe.ID) || (o.Addr != nil && o.Addr.String() != remote.String()) {
			return 0, s.opError("write", fmt.Errorf("%w: sending to an element other than the session's", ErrNotSupported))
		}
	}
	seq, _, err := s.write(b, o, false)
	return seq, err
}

// write queues b as one message; with split (Write) only as much of b
// as the longest message holds, where without it a longer b fails. It
// returns the message's sequence number and how many bytes of b it
// holds.
func (s *Session) write(b []byte, o WriteOptions, split bool) (uint64, int, error) {
	s.mu.Lock()
	s.settle()
	for {
		switch {
		case s.closing, s.goAway:
			s.mu.Unlock()
			return 0, 0, s.opError("write", net.ErrClosed)
		case s.err != nil:
			err := s.err
			s.mu.Unlock()
			return 0, 0, s.opError("write", err)
		case s.peerEOF:
			s.mu.Unlock()
			return 0, 0, s.opError("write", syscall.EPIPE)
		case s.wdl.expired():
			s.mu.Unlock()
			return 0, 0, s.opError("write", os.ErrDeadlineExceeded)
		}
		// The limit may change while the write waits: a failover to an
		// element that announced another.
		if limit := s.maxSendLocked(); len(b) > limit {
			if !split {
				err := s.tooLong(len(b), limit, s.peerMax)
				s.mu.Unlock()
				return 0, 0, s.opError("write", err)
			}
			b = b[:limit]
		}
		if s.snd.Fits(len(b)) {
			break
		}
		ch := waitChan(&s.wwait)
		s.mu.Unlock()
		select {
		case <-ch:
		case <-s.wdl.wait():
		case <-s.done:
		}
		s.mu.Lock()
	}
	seq, err := s.queueLocked(b, o.AckRequest, o.PPID)
	if err == nil && (o.Stream != 0 || o.Unordered) {
		s.setStreamLocked(seq, o.Stream, o.Unordered)
	}
	s.drainedLocked() // a reply goes before the GOAWAY
	turn := s.turn
	s.turn = false
	if err != nil {
		s.mu.Unlock()
		return 0, 0, s.opError("write", err)
	}
	if turn && s.writeInline() {
		return seq, len(b), nil
	}
	s.mu.Unlock()
	s.wake()
	return seq, len(b), nil
}

// inlineWriter is a connection that can write without waiting for room
// (mapping.TCPConn on a socket).
type inlineWriter interface {
	CanTryWrite() bool
	TryWriteBatch([]mapping.Msg) (bool, error)
}

// writeInline writes what is due from the calling goroutine, without a
// hand-off to the loop, when no one else writes and the session is not
// failing over or closing: a reply goes out at once, as on a plain
// socket, while a stream of Writes is batched by the loop. The
// connection sends what the socket takes without waiting and holds the
// rest, which the loop flushes, so that Write never waits for the peer.
// It reports whether it took the write; it then releases mu, which is
// held.
func (s *Session) writeInline() bool {
	tw, ok := s.conn.(inlineWriter)
	if !ok || !tw.CanTryWrite() || s.writing || s.heldUpTo != 0 || s.closing || s.goAway || s.connErr != nil || s.err != nil || s.handledGen == s.gen || len(s.streams) > 0 {
		return false
	}
	s.writing = true
	batch := s.collect(s.ibatch[:0], time.Now())
	gen, upTo := s.gen, s.sent
	s.mu.Unlock()
	sent, err := tw.TryWriteBatch(batch)
	clear(batch)
	s.mu.Lock()
	s.ibatch = batch[:0]
	s.writing = false
	wake := s.loopWaits || len(s.pending) > 0
	s.loopWaits = false
	if s.gen == gen {
		switch {
		case err != nil:
			if s.connErr == nil && gen != s.handledGen {
				s.connErr = err
			}
			wake = true
		case sent:
			s.writtenLocked(upTo)
		default:
			s.heldUpTo, s.heldGen = upTo, gen
			wake = true
		}
	}
	s.mu.Unlock()
	if wake {
		s.wake()
	}
	return true
}

// queueLocked numbers a message and keeps it until acknowledged (the
// Sender sets Ack Now when its buffer is half full). mu is held.
func (s *Session) queueLocked(b []byte, ackRequest bool, ppid uint32) (uint64, error) {
	seq, frame, err := s.snd.Push(ppid, b, ackRequest)
	if err != nil {
		return 0, err
	}
	s.pending = append(s.pending, frame)
	return seq, nil
}

// processed records that the application processed message seq and
// wakes the loop when that makes an acknowledgement due or sets its
// timer. mu is held.
func (s *Session) processed(seq uint64) {
	// The time counts only for the first message processed since the
	// last acknowledgement, which starts the acknowledgement's delay:
	// no reading of the clock for each message.
	var now time.Time
	if s.rcv.Deadline().IsZero() {
		now = time.Now()
	}
	s.rcv.Processed(now, seq)
	// The loop's timer, if set no later than the acknowledgement's
	// deadline, wakes it in time (and a reply written before may carry
	// the acknowledgement): no wake-up for each message.
	if after := s.rcv.Deadline(); s.rcv.AckDue(now) || (!after.IsZero() && (s.loopDue.IsZero() || after.Before(s.loopDue))) {
		s.wake()
	}
}

// Acked returns the highest sequence number the present element (or, for
// messages replayed, the element that took them over) acknowledged: every
// message written up to it was processed.
func (s *Session) Acked() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snd.Acked()
}

// WaitAcked waits until the message with sequence number seq and those
// before it are acknowledged, or ctx ends, or the session fails.
func (s *Session) WaitAcked(ctx context.Context, seq uint64) error {
	s.mu.Lock()
	for s.snd.Acked() < seq {
		if s.closing {
			s.mu.Unlock()
			return s.opError("wait", net.ErrClosed)
		}
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return s.opError("wait", err)
		}
		ch := waitChan(&s.wwait)
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
		}
		s.mu.Lock()
	}
	s.mu.Unlock()
	return nil
}

// SetCookie hands the pool user a cookie (ASAP_COOKIE): the state a new
// pool element needs to take the session over, which the session echoes
// to it after a failover (see EchoedCookie). A session whose element set a
// cookie may fail over even when its element is not stateless. The cookie
// goes out before the acknowledgement of the messages processed so far.
func (s *Session) SetCookie(cookie []byte) error {
	if s.client {
		return s.opError("cookie", fmt.Errorf("%w: a pool user sets no cookie", ErrNotSupported))
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock() // opError takes mu
		return s.opError("cookie", net.ErrClosed)
	}
	defer s.mu.Unlock()
	s.cookieTx = append([]byte(nil), cookie...)
	s.wake()
	return nil
}

// Cookie returns the last cookie the pool element handed the session (a
// pool user's), or nil.
func (s *Session) Cookie() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cookie
}

// EchoedCookie returns, on a pool element, the cookie a session that
// failed over to it echoed (ASAP_COOKIE_ECHO), or nil. Accept returns the
// session with it.
func (s *Session) EchoedCookie() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.echoed
}

// Resumed reports whether, on a pool element, the session failed over to
// it from another element.
func (s *Session) Resumed() bool { return s.resumed }

// BusinessCard returns the last business card (ASAP_BUSINESS_CARD) the
// pool element sent: its pool and the elements to fail over to, in order.
func (s *Session) BusinessCard() *asap.BusinessCard {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.card
}

// Close closes the session: the messages written are sent, then the peer
// reads io.EOF (on a pool element that shuts down, Listener.Shutdown, the
// pool user fails over instead). Blocked Reads and Writes return
// net.ErrClosed. Close does not wait for the peer's acknowledgements.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return s.opError("close", net.ErrClosed)
	}
	s.settle()
	s.closing = true
	close(s.closed)
	s.goAway = s.goAway || s.draining // a pool user fails over
	broadcast(&s.rwait)
	broadcast(&s.wwait)
	s.mu.Unlock()
	s.wake()
	return nil
}

// GoAway closes a pool element's session as Close does, but tells the
// pool user that this element stops serving it (GOAWAY, as when the
// server shuts down), with the acknowledgement of what it processed: the
// pool user fails over to another element rather than end the session.
// Listener.Shutdown does this for every session once its application has
// processed what it read.
func (s *Session) GoAway() error {
	if s.client {
		return s.opError("close", fmt.Errorf("%w: a pool user sends no GOAWAY", ErrNotSupported))
	}
	s.mu.Lock()
	s.goAway = true
	s.mu.Unlock()
	return s.Close()
}

// CloseWrite is not supported: a session closes as a whole.
func (s *Session) CloseWrite() error {
	return s.opError("close", fmt.Errorf("%w: half-closed sessions", ErrNotSupported))
}

// SetDeadline sets the read and write deadlines.
func (s *Session) SetDeadline(t time.Time) error {
	if err := s.SetReadDeadline(t); err != nil {
		return err
	}
	return s.SetWriteDeadline(t)
}

// SetReadDeadline sets the deadline for Read and ReadMsg, as net.Conn
// documents.
func (s *Session) SetReadDeadline(t time.Time) error {
	if s.isClosed() {
		return s.opError("set", net.ErrClosed)
	}
	s.rdl.set(t)
	return nil
}

// SetWriteDeadline sets the deadline for Write and WriteMsg, as net.Conn
// documents.
func (s *Session) SetWriteDeadline(t time.Time) error {
	if s.isClosed() {
		return s.opError("set", net.ErrClosed)
	}
	s.wdl.set(t)
	return nil
}

func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// newSessionID returns a random session identifier.
func newSessionID() [16]byte {
	var id [16]byte
	rand.Read(id[:])
	return id
}

// deadline is a settable deadline whose expiry closes a channel, as in
// net.Pipe.
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{}
}

func (d *deadline) init() { d.cancel = make(chan struct{}) }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // wait for the timer's close
	}
	d.timer = nil
	closed := isClosedChan(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		ch := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(ch) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func (d *deadline) expired() bool { return isClosedChan(d.wait()) }

func isClosedChan(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// PathInfo is what the kernel knows of a session's present path: the
// smoothed round-trip time, the retransmission timeout and the path MTU.
type PathInfo struct {
	RTT, RTO time.Duration
	PathMTU  int
}

// PathInfo returns the kernel's RTT, RTO and path MTU of the session's
// present connection (TCP_INFO on Linux; SCTP_STATUS of the primary path
// over SCTP), or an error wrapping
// ErrNotSupported where the mapping cannot know them.
func (s *Session) PathInfo() (PathInfo, error) {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	// A *mapping.SCTPConn, where the kernel has SCTP.
	if sc, ok := c.(sctpInfoConn); ok {
		return s.sctpPathInfo(sc)
	}
	tc, ok := c.(interface{ NetConn() net.Conn })
	if !ok {
		return PathInfo{}, s.opError("pathinfo", fmt.Errorf("%w: path information over this mapping", ErrNotSupported))
	}
	nc := tc.NetConn()
	if p, ok := nc.(*prefixConn); ok {
		nc = p.Conn
	}
	rtt, rto, pmtu, err := tcpInfo(nc)
	if err != nil {
		return PathInfo{}, s.opError("pathinfo", err)
	}
	return PathInfo{RTT: rtt, RTO: rto, PathMTU: pmtu}, nil
}
