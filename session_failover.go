package rsp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/failover"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/ulpack"
)

// Failover is what the failover callback (SessionConfig.OnFailover, or
// WithFailoverCallback for one dial) is given: the element that failed,
// the one that took the session over, what of the old element the
// application has not read yet, and a way to send resynchronisation
// messages before the replay.
type Failover struct {
	// Session is the session failing over. Its Write and Read must not be
	// called from the callback: the session waits for it.
	Session *Session
	// Old is the element that failed; New the one that took over.
	Old, New Element
	// Cause is why the old element's connection failed.
	Cause error
	// Replay is how many messages will be replayed after the callback.
	Replay int

	unread int
	conn   mapping.BatchConn
	limit  int // the longest message the new element takes
	st     *resyncState
}

// resyncState is what a failover callback's Send and SendMsg share.
type resyncState struct {
	mu     sync.Mutex // serialises Send and SendMsg
	done   bool       // the callback returned
	broken error      // a write on conn failed: nothing more goes on it
	// The messages Send wrote on conn, from first to last: the replay
	// leaves them out.
	sent seqRange
}

// seqRange is a range of sequence numbers, empty when first is 0.
type seqRange struct{ first, last uint64 }

func (r seqRange) has(seq uint64) bool { return r.first != 0 && seq >= r.first && seq <= r.last }

// Unread returns how many messages the session had received from the old
// element (or, after failovers in quick succession, from those before
// it) that the application had not yet read whole when the callback was
// called; a message Read took part of counts. The session delivers them,
// in order, before any message of the new element; they are not
// acknowledged to anyone, since their element is gone.
func (f *Failover) Unread() int { return f.unread }

// Send sends a resynchronisation message to the new element, before the
// messages replayed: SendMsg without options.
func (f *Failover) Send(b []byte) error {
	_, err := f.SendMsg(b, WriteOptions{})
	return err
}

// SendMsg sends a resynchronisation message to the new element with the
// options of Session.WriteMsg, before the messages replayed, and returns
// its sequence number (for Session.Acked and WaitAcked once the callback
// returned). It is numbered after the messages replayed (spec/session.md,
// 5.5) and, unacknowledged, replayed like any message by a later
// failover; if the callback then refuses the new element, it stays
// unacknowledged too and goes to the next element with the replay. As
// with WriteMsg, Stream and Unordered need an SCTP association to the new
// element (ErrNotSupported over the TCP mapping), and Element and Addr,
// if set, must name the new element. It may be called only until the
// callback returns, from one goroutine at a time.
func (f *Failover) SendMsg(b []byte, o WriteOptions) (uint64, error) {
	s := f.Session
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	if f.st.done {
		return 0, s.opError("write", fmt.Errorf("%w: the failover callback returned", net.ErrClosed))
	}
	if f.st.broken != nil {
		// A message after one that was not written would leave a hole
		// in what the replay leaves out.
		return 0, s.opError("write", f.st.broken)
	}
	if len(b) > f.limit {
		return 0, s.opError("write", s.tooLong(len(b), f.limit, f.limit))
	}
	streams := o.Stream != 0 || o.Unordered
	if streams {
		if err := checkStreamOn(f.conn, o.Stream); err != nil {
			return 0, s.opError("write", err)
		}
	}
	if (o.Element != 0 && o.Element != f.New.ID) || (o.Addr != nil && o.Addr.String() != f.conn.RemoteAddr().String()) {
		return 0, s.opError("write", fmt.Errorf("%w: sending to an element other than the new one", ErrNotSupported))
	}
	s.mu.Lock()
	seq, err := s.queueLocked(b, o.AckRequest, o.PPID)
	var m mapping.Msg
	if err == nil {
		m = mapping.Msg{Buf: s.pending[len(s.pending)-1], PPID: ulpack.PPID}
		if streams {
			s.setStreamLocked(seq, o.Stream, o.Unordered)
			m.Stream, m.Unordered = o.Stream, o.Unordered
		}
	}
	s.mu.Unlock()
	if err != nil {
		return 0, s.opError("write", err)
	}
	if _, err := f.conn.WriteBatch([]mapping.Msg{m}); err != nil {
		f.st.broken = err // the message goes with the replay, if any
		return 0, s.opError("write", err)
	}
	if f.st.sent.first == 0 {
		f.st.sent.first = seq
	}
	f.st.sent.last = seq
	return seq, nil
}

// failoverHook is the context key of WithFailoverCallback.
type failoverHook struct{}

// WithFailoverCallback returns a context that makes the session a
// Dialer's DialContext opens with it call fn as its failover callback,
// instead of the Dialer's SessionConfig.OnFailover (which it overrides
// for that session only; a nil fn leaves the session without callback).
// As net/http/httptrace does for a request's hooks, this sets a hook per
// connection through the context the dial is given, which net/http's
// Transport and gRPC's context dialer pass on.
func WithFailoverCallback(ctx context.Context, fn func(ctx context.Context, f *Failover) error) context.Context {
	return context.WithValue(ctx, failoverHook{}, fn)
}

// sessionConfig is the configuration of a session dialed with ctx: the
// Dialer's, with the failover callback of WithFailoverCallback if ctx has
// one.
func (d *Dialer) sessionConfig(ctx context.Context) SessionConfig {
	cfg := d.Session.withDefaults()
	if fn, ok := ctx.Value(failoverHook{}).(func(context.Context, *Failover) error); ok {
		cfg.OnFailover = fn
	}
	return cfg
}

// FailoverEvent is the failover indication (SessionConfig.Failovers): a
// session moved from Old to New and replayed Replayed messages to it, the
// first of them with sequence number FirstReplayed (everything before it
// was acknowledged by the old element and is not replayed).
type FailoverEvent struct {
	Session       *Session
	Old, New      Element
	Cause         error
	Replayed      int
	FirstReplayed uint64
	// Took is the time from the failure's detection to the replay.
	Took time.Duration
}

// machineConfig is the failover machine's configuration for a session.
func (d *Dialer) machineConfig(cfg SessionConfig) failover.Config {
	return failover.Config{
		Callback:        cfg.OnFailover != nil,
		HeartbeatMisses: cfg.HeartbeatMisses,
		ConnectTimeout:  d.Timeout,
		MaxAttempts:     cfg.MaxFailoverAttempts,
		RetryDelay:      cfg.FailoverBackoff,
		MaxRetryDelay:   max(cfg.FailoverBackoff, 4*time.Second),
		FailoverTimeout: cfg.FailoverTimeout,
	}
}

// dialSession opens a session to one element.
func (d *Dialer) dialSession(ctx context.Context, network string, handle asap.PoolHandle, pe asap.PoolElement, addr string) (net.Conn, error) {
	c, _, err := d.dialSessionConn(ctx, d.Session.withDefaults(), network, addr)
	if err != nil {
		return nil, err
	}
	return d.openSession(ctx, handle, pe, c)
}

// openSession opens a session to element pe on c, closing c on failure.
func (d *Dialer) openSession(ctx context.Context, handle asap.PoolHandle, pe asap.PoolElement, c mapping.BatchConn) (net.Conn, error) {
	cfg := d.sessionConfig(ctx)
	id := newSessionID()
	c, ack, err := d.hello(ctx, cfg, c, id, 1, false, nil)
	if err != nil {
		return nil, err
	}
	s := newSession(cfg, true, handle, id, c, Element{Handle: string(handle), PoolElement: pe})
	s.d = d
	s.snd.SetWindow(ack.Window)
	s.stateless = ack.Stateless
	s.peerMax = int(ack.MaxMessageSize)
	s.fm = failover.New(d.machineConfig(cfg))
	now := time.Now()
	s.fm.Handle(now, failover.Event{Kind: failover.Open, Candidates: []failover.Candidate{{PE: pe}}})
	s.fm.Handle(now, failover.Event{Kind: failover.Connected, PE: pe.ID})
	s.start()
	return s, nil
}

// sessionHandshake connects to an element and opens or resumes the
// session id there: HELLO (and the cookie echo), then the element's
// HELLO_ACK.
func (d *Dialer) sessionHandshake(ctx context.Context, cfg SessionConfig, network, addr string, id [16]byte, next uint64, resume bool, cookie []byte) (mapping.BatchConn, ulpack.HelloAck, error) {
	c, session, err := d.dialSessionConn(ctx, cfg, network, addr)
	if err != nil {
		return nil, ulpack.HelloAck{}, err
	}
	if !session {
		c.Close()
		return nil, ulpack.HelloAck{}, errNotSessionElement
	}
	return d.hello(ctx, cfg, c, id, next, resume, cookie)
}

// hello opens or resumes (after a failover) the session id on c: HELLO
// (and the cookie echo), then the element's HELLO_ACK. It closes c on
// failure.
func (d *Dialer) hello(ctx context.Context, cfg SessionConfig, c mapping.BatchConn, id [16]byte, next uint64, resume bool, cookie []byte) (mapping.BatchConn, ulpack.HelloAck, error) {
	fail := func(err error) (mapping.BatchConn, ulpack.HelloAck, error) {
		c.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, ulpack.HelloAck{}, err
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(cfg.FailoverTimeout)
	}
	c.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	hello, _ := ulpack.Hello{Resume: resume, Cookie: cookie != nil, Window: uint32(cfg.MaxUnackedMessages), ID: id, Next: next,
		MaxMessageSize: announcedMax(cfg)}.AppendBinary(nil)
	batch := []mapping.Msg{{Buf: hello, PPID: ulpack.PPID}}
	if cookie != nil {
		echo, _ := (&asap.CookieEcho{Cookie: cookie}).AppendBinary(nil)
		batch = append(batch, mapping.Msg{Buf: echo, PPID: mapping.PPIDASAP})
	}
	if _, err := c.WriteBatch(batch); err != nil {
		return fail(err)
	}
	buf := make([]byte, 512)
	var p ulpack.Parser
	for {
		n, ppid, err := c.ReadMsg(buf)
		if err != nil {
			return fail(err)
		}
		if ppid != ulpack.PPID {
			continue
		}
		f, err := p.Parse(buf[:n])
		if err != nil {
			return fail(fmt.Errorf("%w: %w", ErrProtocol, err))
		}
		switch f := f.(type) {
		case *ulpack.HelloAck:
			if f.ID != id {
				return fail(fmt.Errorf("%w: HELLO_ACK of another session", ErrProtocol))
			}
			c.SetDeadline(time.Time{})
			return c, *f, nil
		case *ulpack.Close:
			return fail(fmt.Errorf("%w: element refused the session: %v %s", ErrRefused, f.Code, f.Reason))
		default:
			return fail(fmt.Errorf("%w: %v before HELLO_ACK", ErrProtocol, f.Type()))
		}
	}
}

// candidates turns pool elements into the failover machine's candidates,
// keeping only those that speak sessions over a transport this dialer
// reaches.
func candidates(pes []asap.PoolElement) []failover.Candidate {
	var cs []failover.Candidate
	for _, pe := range pes {
		if _, ok := usableTransport("tcp", pe.UserTransport); ok && speaksSessions(pe.UserTransport) {
			cs = append(cs, failover.Candidate{PE: pe})
		}
	}
	return cs
}

// failover moves the session to another element of its pool as the
// failover machine (package failover) directs: business card first, then
// a fresh resolution, never the failed element; cookie echo, callback,
// replay of what was not acknowledged, indication. The machine fails,
// rather than splice two servers' byte streams, when the old element's
// state cannot move: data was exchanged and the element neither handed
// out a cookie nor said it is stateless, and when the element that took
// the session over announces a MaxMessageSize below a message to replay
// (an error that wraps ErrMessageTooLong). It also holds the failover back
// (failover.StateHolding), or gives up (failover.ErrReplayUnacked, here
// ErrFailoverFailed), when elements are lost one after another before
// they acknowledge anything replayed to them; this loop only waits for
// the machine's deadline, and ends at once, with net.ErrClosed, when the
// session is closed or ends meanwhile.
func (s *Session) failover(cause error) error {
	start := time.Now()
	s.mu.Lock()
	old := s.pe
	cookie := s.cookie
	card := s.card
	// The element's state is lost with it, unless it is stateless, once it
	// processed something
	// (acknowledged) or sent something: the new element would take up
	// the stream in the middle. What it did not acknowledge is replayed,
	// so an element that acknowledged nothing and sent nothing loses
	// nothing: the new one gets the stream from its start.
	unacked, _ := s.snd.Len()
	acked := s.snd.Acked()
	used := (acked > 0 || s.exchanged) && !s.stateless
	stream := failover.StreamState{Unacked: unacked, Lost: used, Used: used, Acked: acked}
	s.mu.Unlock()
	log := s.cfg.Logger.With("pool", string(s.handle), "pe", fmt.Sprintf("%08x", uint32(old.ID)))
	log.Info("session: element lost", "err", cause)

	ep := s.d.endpoint()
	m := s.fm
	var q []failover.Action
	feed := func(ev failover.Event) { q = append(q, m.Handle(time.Now(), ev)...) }
	if cookie != nil && !bytes.Equal(cookie, s.fedCookie) {
		feed(failover.Event{Kind: failover.CookieReceived, Cookie: cookie})
		s.fedCookie = cookie
	}
	if card != nil && card != s.fedCard {
		feed(failover.Event{Kind: failover.BusinessCardReceived, Candidates: candidates(card.PEs)})
		s.fedCard = card
	}
	kind := failover.TransportError
	if errors.Is(cause, ErrGoAway) {
		kind = failover.GoAway // no failure to report: the element left
	}
	feed(failover.Event{Kind: kind, PE: old.ID, Err: cause, Stream: stream})
	if m.State() == failover.StateHolding {
		// The element acknowledged none of what the last failover
		// replayed to it: the machine holds this failover back.
		log.Info("session: failover held back: the element acknowledged nothing replayed to it", "wait", time.Until(m.Deadline()))
	}

	// A session closed meanwhile does not fail over, as one closed
	// before its connection failed does not (connFailed): the failover
	// ends, and with it the session, rather than go on trying elements
	// for up to FailoverTimeout.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-s.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	var (
		conn      mapping.BatchConn
		ack       ulpack.HelloAck
		newPE     asap.PoolElement
		installed bool
		replayed  int
		first     uint64
		resynced  seqRange // the resynchronisation messages written
	)
	install := func() {
		if installed || conn == nil {
			return
		}
		installed = true
		first, replayed = s.takeOver(conn, newPE, ack, resynced)
	}
	for {
		if len(q) == 0 {
			d := m.Deadline()
			if d.IsZero() {
				return fmt.Errorf("%w: the failover machine stopped in %v", ErrFailoverFailed, m.State())
			}
			t := time.NewTimer(time.Until(d))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				if conn != nil && !installed {
					conn.Close()
				}
				return net.ErrClosed
			}
			feed(failover.Event{Kind: failover.Timer})
			continue
		}
		a := q[0]
		q = q[1:]
		switch a.Kind {
		case failover.ReportUnreachable:
			go func(id asap.PEID) {
				rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
				defer rcancel()
				ep.ReportUnreachable(rctx, s.handle, id)
			}(a.PE)
		case failover.Disconnect:
			if conn != nil && newPE.ID == a.PE && !installed {
				conn.Close()
				conn = nil
			}
		case failover.Resolve:
			ep.Invalidate(s.handle)
			rctx, rcancel := context.WithTimeout(ctx, s.cfg.FailoverTimeout)
			res, err := ep.Resolve(rctx, s.handle)
			rcancel()
			feed(failover.Event{Kind: failover.Resolved, Candidates: candidates(res.PEs), Err: err})
		case failover.Connect:
			t, _ := usableTransport("tcp", a.Candidate.PE.UserTransport)
			netw, addr := sessionAddress("tcp", t)
			cctx, ccancel := context.WithDeadline(ctx, a.Deadline)
			s.mu.Lock()
			next := s.snd.Acked() + 1
			s.mu.Unlock()
			c, ha, err := s.d.sessionHandshake(cctx, s.cfg, netw, addr, s.id, next, true, cookie)
			ccancel()
			if err != nil {
				if ctx.Err() != nil {
					return net.ErrClosed
				}
				feed(failover.Event{Kind: failover.ConnectFailed, PE: a.PE, Err: err})
				continue
			}
			if err := s.replayFits(ha, a.Candidate.PE); err != nil {
				// Every element of the pool may have the same limit:
				// fail rather than replay on and on.
				c.Close()
				log.Info("session: failover to an element that cannot take the replay", "new", fmt.Sprintf("%08x", uint32(a.PE)), "err", err)
				return err
			}
			conn, ack, newPE = c, ha, a.Candidate.PE
			feed(failover.Event{Kind: failover.Connected, PE: a.PE})
		case failover.SendCookieEcho:
			// The echo went right behind the HELLO (FlagCookie), and the
			// element took it before its HELLO_ACK.
			feed(failover.Event{Kind: failover.CookieEchoResult, PE: a.PE, Accepted: cookie != nil})
		case failover.Callback:
			s.mu.Lock()
			replay, _ := s.snd.Len()
			unread := len(s.rq) // nothing of the new element's yet
			s.mu.Unlock()
			f := &Failover{Session: s, Old: old, New: Element{Handle: string(s.handle), PoolElement: newPE}, Cause: cause,
				Replay: replay, unread: unread, conn: conn, limit: sendLimit(s.cfg, int(ack.MaxMessageSize)), st: new(resyncState)}
			err := s.cfg.OnFailover(ctx, f)
			f.st.mu.Lock()
			f.st.done = true
			resynced = f.st.sent
			f.st.mu.Unlock()
			ev := failover.Event{Kind: failover.CallbackDone, Err: err}
			if err == nil {
				ev.Settled = a.Doubt
			} else {
				log.Info("session: failover callback refused an element", "new", fmt.Sprintf("%08x", uint32(newPE.ID)), "err", err)
			}
			feed(ev)
		case failover.Replay:
			install()
			feed(failover.Event{Kind: failover.ReplayDone, Replayed: replayed})
		case failover.Indicate:
			install()
			ev := FailoverEvent{Session: s, Old: old, New: Element{Handle: string(s.handle), PoolElement: newPE},
				Cause: cause, Replayed: replayed, FirstReplayed: first, Took: time.Since(start)}
			log.Info("session: failed over", "new", fmt.Sprintf("%08x", uint32(newPE.ID)), "replayed", replayed, "took", ev.Took)
			if s.cfg.Failovers != nil {
				select {
				case s.cfg.Failovers <- ev:
				default:
				}
			}
			return nil
		case failover.Fail:
			if conn != nil && !installed {
				conn.Close()
			}
			var fe *failover.Error
			if errors.As(a.Err, &fe) && errors.Is(a.Err, failover.ErrDataInDoubt) {
				return fmt.Errorf("%w: %w", ErrStateLost, a.Err)
			}
			return fmt.Errorf("%w in pool %q: %w", ErrFailoverFailed, s.handle, a.Err)
		}
	}
}

// announcedMax is the MaxMessageSize a session under cfg announces in its
// handshake: the longest message payload its connection takes.
func announcedMax(cfg SessionConfig) uint32 {
	return uint32(min(cfg.MaxMessageSize, math.MaxUint32))
}

// replayFits checks that the messages to replay to element pe, those its
// HELLO_ACK ack does not acknowledge, are within the limit ack announces,
// and makes that limit the one new messages are held to, at once, so that
// none written while the failover goes on can be over it. A message over
// it ends the session with an error that wraps ErrMessageTooLong: that
// element would close the connection on it.
func (s *Session) replayFits(ack ulpack.HelloAck, pe asap.PoolElement) error {
	limit := int(min(uint64(ack.MaxMessageSize), math.MaxInt))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peerMax = limit
	if limit == 0 {
		return nil // an element that predates the announcement
	}
	n, first, longest := 0, uint64(0), 0
	for seq, frame := range s.snd.Replay() {
		if l := len(frame) - ulpack.DataLen; seq > ack.Ack && l > limit {
			if n == 0 {
				first = seq
			}
			n++
			longest = max(longest, l)
		}
	}
	if n == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d unacknowledged messages (the first %d, the longest %d bytes) are over the limit of %d bytes of pool element %08x, which took the session over in pool %q",
		ErrMessageTooLong, n, first, longest, limit, uint32(pe.ID), s.handle)
}

// takeOver makes conn, to element pe, the session's connection: the
// messages not acknowledged go again from the first, and pe numbers its
// own messages from 1. resynced are the resynchronisation messages the
// failover callback wrote on c (Failover.Send): they are not replayed, and
// pe may acknowledge them before the replay goes. It returns the first
// sequence number replayed and how many are.
func (s *Session) takeOver(c mapping.BatchConn, pe asap.PoolElement, ack ulpack.HelloAck, resynced seqRange) (uint64, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ack.Ack <= s.snd.Next()-1 {
		// What the element says it has (HELLO_ACK); nothing is being
		// written now.
		s.snd.Ack(ack.Ack)
	}
	s.conn = c
	s.gen++
	s.pe = Element{Handle: string(s.handle), PoolElement: pe}
	s.snd.SetWindow(ack.Window)
	s.stateless = ack.Stateless // the element's limit is set already (replayFits)
	s.card = nil
	// Everything not acknowledged goes again, in order, but for what the
	// callback wrote on c already.
	s.pending = s.pending[:0]
	for seq, frame := range s.snd.Replay() {
		if !resynced.has(seq) {
			s.pending = append(s.pending, frame)
		}
	}
	s.written, s.peerAcked = s.snd.Acked(), s.snd.Acked()
	s.sent = max(s.written, resynced.last)
	if len(s.pending) == 0 {
		// The writer is done with what the callback wrote; with a replay
		// to write, it is once it wrote that.
		s.written = s.sent
	}
	s.rcv = ulpack.NewReceiver(s.cfg.receiverConfig(), 0)
	s.consumed, s.ackNow = s.consumed[:0], false // the old element's to acknowledge
	s.lastRecv, s.pingAt, s.heard = time.Now(), time.Time{}, false
	s.failovers++
	gen := s.gen
	go s.readLoop(c, gen)
	s.wake()
	return s.snd.Acked() + 1, len(s.pending)
}
