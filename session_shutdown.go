package rsp

import "context"

// Graceful shutdown of a pool element (Listener.Shutdown): each session
// drains, then goes away (GOAWAY, spec/session.md 2.6) with the
// acknowledgement of everything its application processed, so that its
// pool user fails over and replays the rest to another element.

// startShutdown starts the graceful end of a pool element's session: the
// messages its application has not taken yet are dropped, and so are
// those that still arrive, unacknowledged, for the pool user to replay
// to the next element; Read and ReadMsg return io.EOF once the
// application has what it took (a message half read is read to its end);
// Write still sends (replies to what the application took). Once the
// application has processed everything it took, the session sends GOAWAY
// and ends.
func (s *Session) startShutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client || s.closing || s.draining {
		return
	}
	s.draining = true
	keep := 0
	if s.roff > 0 {
		keep = 1 // half read: the application gets the rest
	}
	for i := keep; i < len(s.rq); i++ {
		if s.rq[i].lease != nil {
			s.rq[i].lease.Release()
		}
		s.rq[i] = inMsg{}
	}
	s.rq = s.rq[:keep]
	broadcast(&s.rwait)
	s.drainedLocked()
}

// goAwayNow sends a draining session's GOAWAY at once, with the
// acknowledgement of what its application processed: a message it took
// and still holds is not, whatever it does with it later (its Write then
// fails), and goes to the next element.
func (s *Session) goAwayNow() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.goAway {
		return
	}
	s.draining = true
	s.goAway = true
	broadcast(&s.rwait)
	broadcast(&s.wwait)
	s.wake()
}

// drainedLocked sends a draining session's GOAWAY once its application
// holds no message it has not processed. mu is held.
func (s *Session) drainedLocked() {
	if !s.draining || s.goAway || s.closing || len(s.rq) > 0 || s.rcv.Acked() < s.lastRead {
		return
	}
	s.goAway = true
	broadcast(&s.rwait)
	broadcast(&s.wwait)
	s.wake()
}

// Shutdown stops the pool element gracefully, in the manner of
// http.Server.Shutdown: it deregisters the listener from its pool (so
// that no pool user picks it any more), stops accepting, and makes every
// session go away without loss. A session's messages that its application
// has not read yet are left for the pool user to replay to another
// element, and Read returns io.EOF once the application has what it read;
// when it has processed that (see SessionConfig.ManualAck for what
// processed means), its replies go out and the session sends GOAWAY with
// the acknowledgement of everything processed: the pool user fails over
// to another element of the pool at once, replays everything else there,
// and its application sees no error. A message is then delivered once,
// at one element or the other.
//
// Shutdown returns once every session has ended, or when ctx is done; then
// the sessions left go away at once (GOAWAY with what was processed, so
// messages their applications held are replayed elsewhere: at least once)
// and Shutdown returns ctx.Err(). Otherwise it returns the error of
// closing the listener (wrapping net.ErrClosed if it was closed before).
//
// Plain connections are not a session's: they stay open, as after
// Close, for the server that serves them to close (http.Server.Shutdown
// does).
func (l *Listener) Shutdown(ctx context.Context) error {
	l.smu.Lock()
	l.draining = true
	if l.idle == nil {
		l.idle = make(chan struct{})
		if len(l.live) == 0 {
			close(l.idle)
		}
	}
	idle := l.idle
	l.smu.Unlock()
	err := l.close(ctx)
	for _, s := range l.liveSessions() {
		s.startShutdown()
	}
	select {
	case <-idle:
	case <-ctx.Done():
		for _, s := range l.liveSessions() {
			s.goAwayNow()
		}
		return ctx.Err()
	}
	return err
}

// liveSessions returns the sessions opened and not yet ended.
func (l *Listener) liveSessions() []*Session {
	l.smu.Lock()
	defer l.smu.Unlock()
	ss := make([]*Session, 0, len(l.live))
	for s := range l.live {
		ss = append(ss, s)
	}
	return ss
}

// opened counts a new session as active, before it can end; if the
// listener shuts down, it drains at once.
func (l *Listener) opened(s *Session) {
	l.active.Add(1)
	l.loadChanged()
	l.smu.Lock()
	if l.live == nil {
		l.live = make(map[*Session]struct{})
	}
	l.live[s] = struct{}{}
	draining := l.draining
	l.smu.Unlock()
	if draining {
		s.startShutdown()
	}
}

// sessionEnded counts a session as no longer active.
func (l *Listener) sessionEnded(s *Session) {
	l.active.Add(-1)
	l.loadChanged()
	l.smu.Lock()
	delete(l.live, s)
	if l.draining && len(l.live) == 0 && l.idle != nil {
		select {
		case <-l.idle:
		default:
			close(l.idle)
		}
	}
	l.smu.Unlock()
}
