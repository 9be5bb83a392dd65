package rsp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
)

// Failover is what the failover callback (SessionConfig.OnFailover) is
// given: the element that failed, the one that took the session over, and
// a way to send resynchronisation messages before the replay.
type Failover struct {
	// Session is the session failing over. Its Write and Read must not be
	// called from the callback: the session waits for it.
	Session *Session
	// Old is the element that failed; New the one that took over.
	Old, New Element
	// Cause is why the old element's connection failed.
	Cause error
	// Replay is how many messages will be replayed.
	Replay int

	conn *mapping.TCPConn
}

// Send sends a resynchronisation message to the new element, before the
// messages replayed. It is not numbered, acknowledged or replayed.
func (f *Failover) Send(b []byte) error {
	frame := appendDataHeader(make([]byte, 0, dataHeaderLen+len(b)), 0, 0, 0)
	frame = append(frame, b...)
	return f.conn.WriteMsg(frame, SessionPPID)
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

// dialSession opens a session to one element.
func (d *Dialer) dialSession(ctx context.Context, network string, handle asap.PoolHandle, pe asap.PoolElement, addr string) (net.Conn, error) {
	cfg := d.Session.withDefaults()
	id := newSessionID()
	c, flags, err := d.sessionHandshake(ctx, cfg, network, addr, id, 1, nil)
	if err != nil {
		return nil, err
	}
	s := newSession(cfg, true, handle, id, c, Element{Handle: string(handle), PoolElement: pe})
	s.d = d
	s.stateless = flags&flagStateless != 0
	s.start()
	return s, nil
}

// sessionHandshake connects to an element and opens (first == 1, cookie nil) or
// resumes the session id there.
func (d *Dialer) sessionHandshake(ctx context.Context, cfg SessionConfig, network, addr string, id [16]byte, first uint64, cookie []byte) (*mapping.TCPConn, uint8, error) {
	nd := d.NetDialer
	if nd == nil {
		nd = &net.Dialer{}
	}
	nc, err := nd.DialContext(ctx, tcpNetwork(network), addr)
	if err != nil {
		return nil, 0, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	c := mapping.NewTCPConn(nc, cfg.mappingConfig())
	fail := func(err error) (*mapping.TCPConn, uint8, error) {
		c.Close()
		return nil, 0, err
	}
	var flags uint8
	if first > 1 || cookie != nil {
		flags |= flagResume
	}
	if cookie != nil {
		flags |= flagCookie
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(cfg.FailoverTimeout)
	}
	c.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	batch := []mapping.Msg{{Buf: appendHello(nil, id, first, flags), PPID: SessionPPID}}
	if cookie != nil {
		b, _ := (&asap.CookieEcho{Cookie: cookie}).AppendBinary(nil)
		batch = append(batch, mapping.Msg{Buf: b, PPID: mapping.PPIDASAP})
	}
	if _, err := c.WriteBatch(batch); err != nil {
		return fail(err)
	}
	buf := make([]byte, 64)
	for {
		n, ppid, err := c.ReadMsg(buf)
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return fail(err)
		}
		if ppid != SessionPPID {
			continue
		}
		f, err := parseSessionFrame(buf[:n])
		if err != nil {
			return fail(err)
		}
		if f.Type != frameHelloAck {
			return fail(fmt.Errorf("%w: %d frame before HELLO_ACK", ErrProtocol, f.Type))
		}
		c.SetDeadline(time.Time{})
		return c, f.Flags, nil
	}
}

// failover moves the session to another element of its pool: the
// business card's elements first, then a fresh resolution, never the
// failed ones; it echoes the cookie, calls the callback, and replays what
// was not acknowledged. It fails, rather than splice two servers' byte
// streams, when the old element's state cannot move.
func (s *Session) failover(cause error) error {
	start := time.Now()
	s.mu.Lock()
	old := s.pe
	cookie := s.cookie
	movable := cookie != nil || s.stateless || !s.exchanged
	card := s.card
	first := s.acked + 1
	s.mu.Unlock()
	log := s.cfg.Logger.With("pool", string(s.handle), "pe", fmt.Sprintf("%08x", uint32(old.ID)))
	if !movable {
		log.Info("session: element failed, state cannot move", "err", cause)
		return fmt.Errorf("%w: %w", ErrStateLost, cause)
	}
	log.Info("session: failing over", "err", cause)
	ep := s.d.endpoint()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.FailoverTimeout)
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	failed := map[asap.PEID]bool{old.ID: true}
	report := func(id asap.PEID) {
		go func() {
			rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
			defer rcancel()
			ep.ReportUnreachable(rctx, s.handle, id)
		}()
	}
	report(old.ID)
	var queue []asap.PoolElement
	if card != nil {
		queue = append(queue, card.PEs...)
	}
	resolved := false
	attempts := 0
	var lastErr error = cause
	for attempts < s.cfg.MaxFailoverAttempts {
		if ctx.Err() != nil {
			break
		}
		queue = slices.DeleteFunc(queue, func(pe asap.PoolElement) bool {
			return failed[pe.ID] || !speaksSessions(pe.UserTransport)
		})
		if len(queue) == 0 {
			if resolved {
				// A round of the pool failed: wait, then ask again.
				select {
				case <-ctx.Done():
					continue
				case <-time.After(s.cfg.FailoverBackoff):
				}
				for id := range failed {
					if id != old.ID {
						delete(failed, id)
					}
				}
			}
			ep.Invalidate(s.handle)
			res, err := ep.Resolve(ctx, s.handle)
			resolved = true
			if err != nil {
				lastErr = err
				continue
			}
			queue = append(queue, res.PEs...)
			continue
		}
		pe := queue[0]
		queue = queue[1:]
		t, ok := usableTransport("tcp", pe.UserTransport)
		if !ok {
			continue
		}
		attempts++
		addr := netip.AddrPortFrom(t.Addrs[0], t.Port).String()
		actx := ctx
		var acancel context.CancelFunc = func() {}
		if s.d.Timeout > 0 {
			actx, acancel = context.WithTimeout(ctx, s.d.Timeout)
		}
		c, flags, err := s.d.sessionHandshake(actx, s.cfg, "tcp", addr, s.id, first, cookie)
		acancel()
		if err != nil {
			lastErr = err
			failed[pe.ID] = true
			report(pe.ID)
			continue
		}
		newPE := Element{Handle: string(s.handle), PoolElement: pe}
		s.mu.Lock()
		replay := len(s.unacked)
		s.mu.Unlock()
		if s.cfg.OnFailover != nil {
			f := &Failover{Session: s, Old: old, New: newPE, Cause: cause, Replay: replay, conn: c}
			if err := s.cfg.OnFailover(ctx, f); err != nil {
				c.Close()
				lastErr = err
				failed[pe.ID] = true
				log.Info("session: failover callback refused an element", "new", fmt.Sprintf("%08x", uint32(pe.ID)), "err", err)
				continue
			}
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			c.Close()
			return net.ErrClosed
		}
		s.conn = c
		s.gen++
		s.pe = newPE
		s.stateless = flags&flagStateless != 0
		s.card = nil
		// Everything not acknowledged goes again; the new element numbers
		// its own messages from 1.
		s.sent = s.acked
		first = s.acked + 1
		s.delivered, s.processed, s.consumed, s.ackSent = 0, 0, 0, 0
		s.ackNow, s.ackReq, s.ackDue = false, false, time.Time{}
		replay = len(s.unacked)
		s.failovers++
		gen := s.gen
		s.mu.Unlock()
		go s.readLoop(c, gen)
		s.wake()
		ev := FailoverEvent{Session: s, Old: old, New: newPE, Cause: cause, Replayed: replay, FirstReplayed: first, Took: time.Since(start)}
		log.Info("session: failed over", "new", fmt.Sprintf("%08x", uint32(pe.ID)), "replayed", replay, "took", ev.Took)
		if s.cfg.Failovers != nil {
			select {
			case s.cfg.Failovers <- ev:
			default:
			}
		}
		return nil
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w in pool %q within %v: %w", ErrFailoverFailed, s.handle, s.cfg.FailoverTimeout, lastErr)
	}
	return fmt.Errorf("%w in pool %q: %w", ErrFailoverFailed, s.handle, lastErr)
}
