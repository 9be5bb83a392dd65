package registrar

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
)

// peerConn is one ASAP connection to a pool element or pool user. A reader
// goroutine decodes and handles requests; a writer goroutine sends what the
// registrar queues, so that a slow peer never blocks the registrar. Answers
// to the peer's own requests wait for room in the queue: a peer that sends
// faster than it reads is read more slowly, and one that stops reading is
// dropped when a write takes longer than WriteTimeout. Messages the
// registrar sends of its own accord (keep-alives, probes, expiry notices)
// never wait: when the queue is full, the connection is dropped.
type peerConn struct {
	r    *Registrar
	c    mapping.Conn
	out  chan []byte
	done chan struct{}
	once sync.Once
	// why is what ended the connection, set once before done closes
	// (closeFor); nil when it was closed without a reason.
	why error

	// wmu serializes writes. pending counts the messages queued and not
	// yet written, so that the reader writes an answer itself only when
	// nothing is waiting before it. deadline is the write deadline set
	// last, renewed only when it comes near (see write).
	wmu      sync.Mutex
	pending  atomic.Int64
	deadline time.Time

	pes  *peState   // the first element registered over this connection (see ownLocked); guarded by r.mu
	addr netip.Addr // the peer's address for the connection limits

	// Reader goroutine only.
	hrLimit  tokenBucket
	euLimit  tokenBucket
	sel      []*asap.PoolElement
	resp     asap.HandleResolutionResponse
	peer     []netip.Addr    // see peerAddrs
	addrs    []netip.Addr    // the user transport addresses registered last, shared (see validate)
	lastAck  asap.PoolHandle // see ackHandle
	asapT    *asap.Transport // see asapTransport
	peerInfo *Peer           // see authorized

	// batching is set while the reader handles a batch of requests; their
	// answers collect in replies and go out together (see readBatches).
	batching bool
	replies  []mapping.Msg
	// enrpHeld are the ENRP links with handle updates of the batch's
	// registrations queued, which the reader writes itself before the
	// batch's answers (see registeredLocked).
	enrpHeld []*link
	// acks are the keep-alive acknowledgements of the batch, handled
	// together with one hold of r.mu (see flushAcks).
	acks []peKey
	// kaWait are the elements whose keep-alive found the send queue full
	// (guarded by r.mu); kaWaiting says there are some, for the writer,
	// which sends their keep-alives when it has made room.
	kaWait    []*peState
	kaWaiting atomic.Bool
	// kaSent are the elements whose keep-alives were queued, from
	// kaHead on in the order they were, guarded by r.mu: a peer answers
	// in that order, so that an acknowledgement mostly names the element
	// at kaHead and needs no look-up in r.owned (see sentLocked).
	kaSent []*peState
	kaHead int
	// lastAckAt is when the peer last answered a keep-alive (on the
	// schedule's clock), ackLate how long after its keep-alive went out
	// the last answer with a known sending time came, and skipped the
	// element whose keep-alive was the first outstanding when the peer
	// answered a later one (see behindLocked); guarded by r.mu.
	lastAckAt, ackLate int64
	skipped            *peState
	// kicked is set while the connection is on r.kicks (see kickLocked),
	// and kaRun holds the elements whose keep-alives the schedule's run
	// queued for it, encoded once the run is over; guarded by r.mu.
	kicked bool
	kaRun  []*peState
	// kaBuf holds the keep-alives queued for the writer, encoded back to
	// back, each ending at its kaEnds offset; kaKick tells the writer
	// they wait. It takes them all at once and sends them with one
	// batched write: the keep-alives of a connection that come due
	// together cost one buffer and one write, not a pooled buffer and a
	// hand-over each. Guarded by kaMu.
	kaMu   sync.Mutex
	kaBuf  []byte
	kaEnds []int
	kaKick chan struct{}
	// limited is set when a request of the batch was over a rate limit:
	// a connection with a reader of its own then reads on only when the
	// limit allows a batch again (see pause).
	limited bool
}

// Batched reads: how many messages one read takes at most, and the room
// for each (a longer message comes in a buffer of its own, up to
// MaxMessageSize).
const (
	readBatch     = 16
	readBatchSlot = 4096
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func newPeerConn(r *Registrar, c mapping.Conn) *peerConn {
	return &peerConn{
		r:         r,
		c:         c,
		out:       make(chan []byte, r.cfg.SendQueue),
		kaKick:    make(chan struct{}, 1),
		done:      make(chan struct{}),
		addr:      connAddr(c),
		lastAckAt: math.MinInt64,
		hrLimit:   newTokenBucket(r.cfg.HandleResolutionRate),
		euLimit:   newTokenBucket(r.cfg.UnreachableRate),
	}
}

// close closes the connection once; the reader goroutine then cleans up.
func (pc *peerConn) close() { pc.closeFor(nil) }

// closeFor closes the connection once, for the reason why (reported in
// the log when its pool elements are removed), unless it is closed
// already.
func (pc *peerConn) closeFor(why error) {
	pc.once.Do(func() {
		pc.why = why
		close(pc.done)
		pc.c.Close()
	})
}

// errNotKeepingUp is why the registrar closes a connection whose send
// queue is full when it has something of its own accord to send.
var errNotKeepingUp = errors.New("send queue full")

// closed reports whether the connection was closed.
func (pc *peerConn) closed() bool {
	select {
	case <-pc.done:
		return true
	default:
		return false
	}
}

// send encodes m and queues it for the writer. It never blocks: a peer that
// does not keep up is disconnected. It may be called with r.mu held.
func (pc *peerConn) send(m asap.Message) {
	if b, ok := pc.encode(m); ok {
		pc.sendBytes(b)
	}
}

// reply encodes the answer to one of the peer's requests and queues it,
// waiting for room. Only the reader goroutine calls it, without r.mu.
func (pc *peerConn) reply(m asap.Message) {
	if b, ok := pc.encode(m); ok {
		pc.replyBytes(b)
	}
}

// encode returns m's wire form in a buffer from bufPool.
func (pc *peerConn) encode(m asap.Message) ([]byte, bool) {
	bp := bufPool.Get().(*[]byte)
	b, err := m.AppendBinary((*bp)[:0])
	if err != nil {
		pc.r.cfg.Logger.Error("encoding ASAP message", "type", m.Type(), "err", err)
		bufPool.Put(bp)
		return nil, false
	}
	return b, true
}

// replyBytes queues an encoded answer, waiting until the writer makes room
// or the connection ends. The wait is bounded: a writer that cannot send
// within WriteTimeout closes the connection.
func (pc *peerConn) replyBytes(b []byte) {
	if pc.batching {
		pc.replies = append(pc.replies, mapping.Msg{Buf: b, PPID: mapping.PPIDASAP})
		return
	}
	// When nothing is queued, the reader writes the answer itself, which
	// spares a hand-over to the writer goroutine per request.
	if pc.pending.Load() == 0 && pc.wmu.TryLock() {
		if pc.pending.Load() == 0 {
			pc.write(b)
			pc.wmu.Unlock()
			return
		}
		pc.wmu.Unlock()
	}
	pc.pending.Add(1)
	select {
	case pc.out <- b:
	case <-pc.done:
		pc.pending.Add(-1)
	}
}

// flushReplies sends the answers collected while handling a batch: with
// one batched write when nothing is queued before them, else through the
// queue, in order. Reader goroutine only.
func (pc *peerConn) flushReplies(bc mapping.BatchConn) {
	if len(pc.replies) == 0 {
		return
	}
	if pc.pending.Load() == 0 && pc.wmu.TryLock() {
		if pc.pending.Load() == 0 {
			pc.writeBatch(bc, pc.replies)
			pc.wmu.Unlock()
			clear(pc.replies)
			pc.replies = pc.replies[:0]
			return
		}
		pc.wmu.Unlock()
	}
	for i, m := range pc.replies {
		pc.replyBytes(m.Buf)
		pc.replies[i] = mapping.Msg{}
	}
	pc.replies = pc.replies[:0]
}

// writeBatch is write for several messages, whose buffers come from
// bufPool.
func (pc *peerConn) writeBatch(bc mapping.BatchConn, ms []mapping.Msg) {
	pc.writeMsgs(bc, ms)
	for _, m := range ms {
		b := m.Buf[:0]
		bufPool.Put(&b)
	}
}

// writeMsgs sends messages with one batched write with wmu held; a failed
// write closes the connection.
func (pc *peerConn) writeMsgs(bc mapping.BatchConn, ms []mapping.Msg) {
	pc.renewWriteDeadline()
	if _, err := bc.WriteBatch(ms); err != nil {
		pc.r.cfg.Logger.Debug("write failed; closing connection", "peer", pc.c.RemoteAddr(), "err", err)
		pc.closeFor(err)
	}
}

// renewWriteDeadline keeps the write deadline at least WriteTimeout away.
// It is renewed only when fewer than WriteTimeout (plus the clock's
// granularity) remain, so that each write has at least WriteTimeout and at
// most about twice that, while the clock is read rarely: reading it is a
// system call on some kernels. wmu is held.
func (pc *peerConn) renewWriteDeadline() {
	if d, renew := pc.r.writeDeadline(pc.deadline); renew {
		pc.deadline = d
		pc.c.SetWriteDeadline(d)
	}
}

// writeDeadline returns the write deadline that should follow cur, and
// whether it is a new one: see renewWriteDeadline.
func (r *Registrar) writeDeadline(cur time.Time) (time.Time, bool) {
	timeout := r.cfg.WriteTimeout
	now := r.coarseNow()
	if cur.Sub(now) >= timeout+clockGranularity {
		return cur, false
	}
	return now.Add(2*timeout + clockGranularity), true
}

// write sends one encoded message with wmu held and returns its buffer to
// bufPool; a failed write closes the connection.
func (pc *peerConn) write(b []byte) {
	pc.renewWriteDeadline()
	err := pc.c.WriteMsg(b, mapping.PPIDASAP)
	b = b[:0]
	bufPool.Put(&b)
	if err != nil {
		pc.r.cfg.Logger.Debug("write failed; closing connection", "peer", pc.c.RemoteAddr(), "err", err)
		pc.closeFor(err)
	}
}

// sendBytes queues an encoded message; b should come from bufPool.
func (pc *peerConn) sendBytes(b []byte) {
	if pc.trySendBytes(b) {
		return
	}
	select {
	case <-pc.done:
	default:
		pc.r.cfg.Logger.Warn("peer does not keep up; closing its connection", "peer", pc.c.RemoteAddr())
		pc.closeFor(errNotKeepingUp)
	}
}

// trySendBytes queues an encoded message for the writer unless SendQueue
// messages are waiting to be written already, and reports whether it did.
// It never blocks and never closes the connection.
func (pc *peerConn) trySendBytes(b []byte) bool {
	// The messages not yet written count, those the writer holds for its
	// next write too: at SendQueue the queue is full.
	if pc.pending.Add(1) > int64(pc.r.cfg.SendQueue) {
		pc.pending.Add(-1)
		return false
	}
	select {
	case pc.out <- b:
		return true
	default:
		pc.pending.Add(-1)
		return false
	}
}

// queueKeepAlive encodes a keep-alive into kaBuf for the writer unless
// SendQueue messages are waiting to be written already, and reports
// whether it did; the caller then kicks the writer (kickWriter). It never
// blocks.
func (pc *peerConn) queueKeepAlive(ka asap.EndpointKeepAlive) bool {
	if pc.pending.Add(1) > int64(pc.r.cfg.SendQueue) {
		pc.pending.Add(-1)
		return false
	}
	pc.kaMu.Lock()
	b, err := ka.AppendBinary(pc.kaBuf)
	if err == nil {
		pc.kaBuf = b
		pc.kaEnds = append(pc.kaEnds, len(b))
	}
	pc.kaMu.Unlock()
	if err != nil {
		pc.pending.Add(-1)
		pc.r.cfg.Logger.Error("encoding ASAP message", "type", asap.TypeEndpointKeepAlive, "err", err)
		return false
	}
	return true
}

// queueKeepAlives encodes the keep-alives to sts into kaBuf for the
// writer, with one hold of kaMu and one count in pending for them all;
// the caller made sure that the send queue has room for them, and kicks
// the writer. r.mu is held.
func (pc *peerConn) queueKeepAlives(sts []*peState) {
	pc.pending.Add(int64(len(sts)))
	pc.kaMu.Lock()
	for _, st := range sts {
		b, err := (&asap.EndpointKeepAlive{Server: pc.r.id, Handle: st.key.handle, ID: st.key.id}).AppendBinary(pc.kaBuf)
		if err != nil {
			pc.pending.Add(-1)
			pc.r.cfg.Logger.Error("encoding ASAP message", "type", asap.TypeEndpointKeepAlive, "err", err)
			continue
		}
		pc.kaBuf = b
		pc.kaEnds = append(pc.kaEnds, len(b))
	}
	pc.kaMu.Unlock()
}

// kickWriter tells the writer that keep-alives wait in kaBuf.
func (pc *peerConn) kickWriter() {
	select {
	case pc.kaKick <- struct{}{}:
	default:
	}
}

// writeKeepAlives sends the keep-alives waiting in kaBuf with one batched
// write, and keeps buf and ends, the buffers it had the last time, as the
// next ones; it returns the buffers it sent from. Writer only.
func (pc *peerConn) writeKeepAlives(bc mapping.BatchConn, batch []mapping.Msg, buf []byte, ends []int) ([]mapping.Msg, []byte, []int) {
	pc.kaMu.Lock()
	b, e := pc.kaBuf, pc.kaEnds
	pc.kaBuf, pc.kaEnds = buf[:0], ends[:0]
	pc.kaMu.Unlock()
	if len(e) == 0 {
		return batch, b, e
	}
	start := 0
	for _, end := range e {
		batch = append(batch, mapping.Msg{Buf: b[start:end], PPID: mapping.PPIDASAP})
		start = end
	}
	pc.wmu.Lock()
	pc.writeMsgs(bc, batch)
	pc.pending.Add(-int64(len(batch)))
	pc.wmu.Unlock()
	clear(batch)
	if cap(b) > maxKeepAliveBuf {
		b, e = nil, nil // keep no large buffer
	}
	return batch[:0], b, e
}

// maxKeepAliveBuf is the largest keep-alive buffer a connection keeps.
const maxKeepAliveBuf = 64 << 10

// queueFull reports whether SendQueue messages wait to be written.
func (pc *peerConn) queueFull() bool { return pc.pending.Load() >= int64(pc.r.cfg.SendQueue) }

// writeLoop sends what is queued. The messages waiting together (such as
// the keep-alives of many elements of one connection, due at once) go out
// with one batched write, up to writeBatch of them.
func (pc *peerConn) writeLoop() {
	defer pc.r.wg.Done()
	bc := mapping.Batched(pc.c)
	batch := make([]mapping.Msg, 0, writeBatch)
	var kaBuf []byte
	var kaEnds []int
	for {
		select {
		case <-pc.kaKick:
			batch, kaBuf, kaEnds = pc.writeKeepAlives(bc, batch, kaBuf, kaEnds)
			if pc.kaWaiting.Load() {
				pc.r.mu.Lock()
				pc.r.resumeKeepAlivesLocked(pc)
				pc.r.mu.Unlock()
			}
		case b := <-pc.out:
			batch = append(batch, mapping.Msg{Buf: b, PPID: mapping.PPIDASAP})
		more:
			for len(batch) < writeBatch {
				select {
				case b := <-pc.out:
					batch = append(batch, mapping.Msg{Buf: b, PPID: mapping.PPIDASAP})
				default:
					break more
				}
			}
			pc.wmu.Lock()
			if len(batch) == 1 {
				pc.write(batch[0].Buf)
			} else {
				pc.writeBatch(bc, batch)
			}
			pc.pending.Add(-int64(len(batch)))
			pc.wmu.Unlock()
			clear(batch)
			batch = batch[:0]
			if pc.kaWaiting.Load() {
				pc.r.mu.Lock()
				pc.r.resumeKeepAlivesLocked(pc)
				pc.r.mu.Unlock()
			}
		case <-pc.done:
			return
		}
	}
}

// writeBatch is how many queued messages the writer sends with one write
// at most.
const writeBatch = 64

func (pc *peerConn) readLoop() {
	defer pc.r.wg.Done()
	defer pc.cleanup()
	pc.readBatches(mapping.Batched(pc.c))
}

// take handles one message read from the peer: an ASAP message, or one
// that was over the size limit (err) or of another protocol, which are
// logged and dropped. Reader only.
func (pc *peerConn) take(b []byte, ppid uint32, err error) {
	switch {
	case err != nil:
		pc.r.cfg.Logger.Warn("discarded message over the size limit", "peer", pc.c.RemoteAddr(), "limit", pc.r.cfg.MaxMessageSize)
	case ppid != mapping.PPIDASAP:
		pc.r.cfg.Logger.Debug("ignored message with foreign PPID", "peer", pc.c.RemoteAddr(), "ppid", ppid)
	default:
		pc.handle(b)
	}
}

// readBatches is the reader for connections that read several messages
// at once: it handles every request that is waiting and answers them with
// one write, so that a peer with many requests outstanding costs a few
// system calls per batch rather than per request.
func (pc *peerConn) readBatches(bc mapping.BatchConn) {
	slot := min(readBatchSlot, pc.r.cfg.MaxMessageSize)
	ms := make([]mapping.Msg, readBatch)
	for i := range ms {
		ms[i].Buf = make([]byte, slot)
	}
	for {
		n, err := bc.ReadBatch(ms, pc.r.cfg.MaxMessageSize)
		pc.batching = true
		for i := range ms[:n] {
			m := &ms[i]
			if pc.closed() {
				// Dropped (a write that waited WriteTimeout) or
				// closed: the rest of what it read would be
				// answered into nothing, and its pool elements
				// would stay until then.
				err = net.ErrClosed
				break
			}
			pc.take(m.Buf[:m.N], m.PPID, m.Err)
			if cap(m.Buf) > slot {
				m.Buf = make([]byte, slot) // keep no large buffer
			}
		}
		pc.batching = false
		pc.flushAcks()
		flushHeld(&pc.enrpHeld)
		pc.flushReplies(bc)
		if err != nil {
			pc.r.cfg.Logger.Debug("connection ended", "peer", pc.c.RemoteAddr(), "err", err)
			pc.closeFor(err)
			return
		}
		if pc.limited && !pc.pause() {
			return
		}
	}
}

// pause waits, after a batch that went over a rate limit, until the limits
// allow a batch of requests again, or the connection ends (false). A peer
// that floods is so read no faster than its limits: the rest waits in its
// socket, and its sends block, instead of costing the registrar a refusal
// each. Over SCTP, where one reader serves every association, over-limit
// requests are only refused. Reader only.
func (pc *peerConn) pause() bool {
	pc.limited = false
	d := max(pc.hrLimit.until(readBatch), pc.euLimit.until(readBatch))
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-pc.done:
		return false
	}
}

// cleanup runs when the connection ends: the pool elements registered over
// it leave the handlespace, since the registrar can no longer check them.
func (pc *peerConn) cleanup() {
	pc.close()
	r := pc.r
	r.mu.Lock()
	r.forgetLocked(pc)
	removed := 0
	var held []*link
	for pc.pes != nil {
		r.removeLocked(pc.pes.key, pc.pes, &held)
		removed++
	}
	r.mu.Unlock()
	flushHeld(&held)
	if removed == 0 {
		return
	}
	// Why it ended: the peer closing it (EOF) is ordinary; anything else
	// (the mapping's heartbeat timeout, a write that timed out, a full
	// send queue) is worth a warning, for it cost the pool its elements.
	why := pc.why
	level := slog.LevelWarn
	switch {
	case why == nil:
		why, level = net.ErrClosed, slog.LevelInfo
	case errors.Is(why, io.EOF):
		level = slog.LevelInfo
	}
	r.cfg.Logger.Log(context.Background(), level, "registration connection closed; removed its pool elements", "peer", pc.c.RemoteAddr(), "count", removed, "reason", why)
}

// peerAddrs returns the addresses the peer uses on this connection: all of
// an SCTP association's, or the single remote address of TCP. They are
// looked up once (a system call over SCTP) and again when refresh is set,
// as when a registration names an address not among them. Reader
// goroutine only.
func (pc *peerConn) peerAddrs(refresh bool) []netip.Addr {
	if pc.peer != nil && !refresh {
		return pc.peer
	}
	pc.peer, pc.asapT = nil, nil
	if m, ok := pc.c.(interface {
		PeerAddrs() ([]netip.Addr, error)
	}); ok {
		if addrs, err := m.PeerAddrs(); err == nil && len(addrs) > 0 {
			pc.peer = addrs
			return addrs
		}
	}
	if ap, err := netip.ParseAddrPort(pc.c.RemoteAddr().String()); err == nil {
		pc.peer = []netip.Addr{ap.Addr().Unmap()}
	}
	return pc.peer
}

// asapTransport is the ASAP transport parameter the registrar records for a
// pool element registered over this connection: the association's addresses
// over SCTP; nil over TCP, which the parameter cannot describe. The pool
// elements of one connection share it; nobody changes it. Reader goroutine
// only.
func (pc *peerConn) asapTransport() *asap.Transport {
	if _, ok := pc.c.(interface {
		PeerAddrs() ([]netip.Addr, error)
	}); !ok {
		return nil
	}
	if pc.asapT == nil {
		pc.asapT = &asap.Transport{Kind: asap.ParamSCTPTransport, Port: portOf(pc.c.RemoteAddr()), Use: asap.DataOnly, Addrs: pc.peerAddrs(false)}
	}
	return pc.asapT
}

// portOf returns the port of a transport address such as "[a,b]:3863" or
// "10.0.0.1:3863", or 0.
func portOf(a net.Addr) uint16 {
	s := a.String()
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return 0
	}
	p, err := strconv.ParseUint(s[i+1:], 10, 16)
	if err != nil {
		return 0
	}
	return uint16(p)
}
