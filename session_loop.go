package rsp

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
)

// closeFlushTimeout bounds how long a closed session tries to send what
// was written before Close.
const closeFlushTimeout = time.Second

// loop is the session's one owner of its connection's writes, its
// acknowledgement timer and its failovers. Application calls change the
// state under mu and wake it; it writes what is due in batches.
func (s *Session) loop() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var batch []mapping.Msg
	for {
		s.mu.Lock()
		c, gen := s.conn, s.gen
		if s.connErr != nil {
			err := s.connErr
			s.connErr = nil
			s.mu.Unlock()
			if !s.connFailed(err) {
				return
			}
			continue
		}
		if s.err != nil {
			s.mu.Unlock()
			s.end(nil)
			return
		}
		batch = s.collect(batch[:0], time.Now())
		closing := s.closing
		due := s.ackDue
		s.mu.Unlock()

		if len(batch) > 0 || closing {
			if closing {
				batch = append(batch, mapping.Msg{Buf: appendClose(nil), PPID: SessionPPID})
				c.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
			}
			_, err := mapping.Batched(c).WriteBatch(batch)
			clear(batch)
			if closing {
				if err == nil {
					s.drain(c)
				}
				s.end(nil)
				return
			}
			if err != nil {
				s.mu.Lock()
				if s.gen == gen && s.connErr == nil {
					s.connErr = err
				}
				s.mu.Unlock()
				continue
			}
		}
		if !due.IsZero() {
			timer.Reset(time.Until(due))
		} else {
			timer.Stop()
		}
		select {
		case <-s.kick:
		case <-timer.C:
		}
	}
}

// collect appends what is due on the connection: a cookie, the
// acknowledgement, resynchronisation messages, then the messages not sent
// yet. mu is held.
func (s *Session) collect(batch []mapping.Msg, now time.Time) []mapping.Msg {
	if s.cookieTx != nil {
		b, _ := (&asap.Cookie{Cookie: s.cookieTx}).AppendBinary(nil)
		batch = append(batch, mapping.Msg{Buf: b, PPID: mapping.PPIDASAP})
		s.cookieTx = nil
	}
	if s.cardTx != nil {
		if b, err := s.cardTx.AppendBinary(nil); err == nil {
			batch = append(batch, mapping.Msg{Buf: b, PPID: mapping.PPIDASAP})
		}
		s.cardTx = nil
	}
	if s.processed > s.ackSent && (s.ackNow || s.closing || (!s.ackDue.IsZero() && !now.Before(s.ackDue))) {
		batch = append(batch, mapping.Msg{Buf: appendAck(nil, s.processed), PPID: SessionPPID})
		s.ackSent = s.processed
		s.ackNow = false
		s.ackDue = time.Time{}
	}
	for _, m := range s.unseq {
		batch = append(batch, mapping.Msg{Buf: m.frame, PPID: SessionPPID})
	}
	s.unseq = s.unseq[:0]
	if len(s.unacked) > 0 && s.sent < s.nextSeq-1 {
		first := s.unacked[0].seq
		for _, m := range s.unacked[max(0, int(s.sent+1-first)):] {
			batch = append(batch, mapping.Msg{Buf: m.frame, PPID: SessionPPID})
		}
		s.sent = s.nextSeq - 1
	}
	return batch
}

// drain ends a closed session's connection gracefully: it shuts down the
// sending side and waits, a bounded time, for the peer to close its own,
// so that what was sent is not lost to a reset.
func (s *Session) drain(c *mapping.TCPConn) {
	if cw, ok := c.NetConn().(interface{ CloseWrite() error }); !ok || cw.CloseWrite() != nil {
		return
	}
	timer := time.NewTimer(closeFlushTimeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		failed := s.connErr != nil
		s.mu.Unlock()
		if failed {
			return
		}
		select {
		case <-s.kick:
		case <-timer.C:
			return
		}
	}
}

// connFailed handles the failure of the session's connection: a pool user
// fails over, a pool element's session ends. It reports whether the loop
// goes on.
func (s *Session) connFailed(cause error) bool {
	s.mu.Lock()
	old := s.conn
	closing := s.closing
	peerEOF := s.peerEOF
	s.mu.Unlock()
	old.Close()
	if closing || peerEOF {
		s.end(nil)
		return false
	}
	if !s.client || s.cfg.NoFailover {
		s.end(cause)
		return false
	}
	if err := s.failover(cause); err != nil {
		s.end(err)
		return false
	}
	return true
}

// end ends the session: err (if any) is what Read and Write return once
// the queued data is read.
func (s *Session) end(err error) {
	s.mu.Lock()
	if s.err == nil {
		if err == nil {
			err = net.ErrClosed
		}
		s.err = err
	}
	c := s.conn
	broadcast(&s.rwait)
	broadcast(&s.wwait)
	s.mu.Unlock()
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	if c != nil {
		c.Close()
	}
	if s.l != nil {
		s.l.sessionEnded()
	}
}

// readLoop reads the messages of one connection of the session until it
// fails.
func (s *Session) readLoop(c *mapping.TCPConn, gen int) {
	ms := make([]mapping.Msg, 16)
	for i := range ms {
		ms[i].Buf = make([]byte, 2048)
	}
	limit := s.cfg.MaxMessageSize + dataHeaderLen
	for {
		n, err := c.ReadBatch(ms, limit)
		if n > 0 {
			if perr := s.received(ms[:n], gen); perr != nil && err == nil {
				err = perr
			}
		}
		if err != nil {
			s.mu.Lock()
			if s.gen == gen && s.connErr == nil {
				if errors.Is(err, io.EOF) && s.peerEOF {
					err = io.EOF
				}
				s.connErr = err
			}
			s.mu.Unlock()
			s.wake()
			return
		}
		for i := range ms[:n] {
			if len(ms[i].Buf) > 64<<10 {
				ms[i].Buf = make([]byte, 2048)
			}
		}
	}
}

// received applies the messages of a batch.
func (s *Session) received(ms []mapping.Msg, gen int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen {
		return nil
	}
	wakeReaders, wakeWriters := false, false
	for _, m := range ms {
		if m.Err != nil {
			return fmt.Errorf("%w: message over the limit", ErrProtocol)
		}
		b := m.Buf[:m.N]
		switch m.PPID {
		case mapping.PPIDASAP:
			s.control(b)
			continue
		case SessionPPID:
		default:
			continue // no channel of ours
		}
		f, err := parseSessionFrame(b)
		if err != nil {
			return err
		}
		switch f.Type {
		case frameData:
			if f.Seq != 0 {
				if f.Seq <= s.delivered {
					continue // a duplicate of a replay
				}
				s.delivered = f.Seq
			}
			s.exchanged = true
			s.rq = append(s.rq, inMsg{seq: f.Seq, ppid: f.PPID, ackReq: f.Flags&flagAckRequest != 0,
				payload: append([]byte(nil), f.Payload...), from: s.pe})
			wakeReaders = true
		case frameAck:
			if s.ackedLocked(f.Seq) {
				wakeWriters = true
			}
		case frameClose:
			s.peerEOF = true
			wakeReaders, wakeWriters = true, true
		default:
			return fmt.Errorf("%w: frame type %d in an open session", ErrProtocol, f.Type)
		}
	}
	if wakeReaders {
		broadcast(&s.rwait)
	}
	if wakeWriters {
		broadcast(&s.wwait)
	}
	return nil
}

// ackedLocked frees what the peer acknowledged. mu is held.
func (s *Session) ackedLocked(upTo uint64) bool {
	if upTo <= s.acked {
		return false
	}
	upTo = min(upTo, s.sent)
	i := 0
	for i < len(s.unacked) && s.unacked[i].seq <= upTo {
		s.ubytes -= len(s.unacked[i].frame) - dataHeaderLen
		s.unacked[i] = nil
		i++
	}
	s.unacked = s.unacked[i:]
	if len(s.unacked) == 0 {
		s.unacked = nil
	}
	s.acked = max(s.acked, upTo)
	return true
}

// control keeps what an ASAP control message carries. mu is held.
func (s *Session) control(b []byte) {
	m, err := asap.Unmarshal(b)
	if err != nil {
		s.cfg.Logger.Debug("session: bad control message", "err", err)
		return
	}
	switch m := m.(type) {
	case *asap.Cookie:
		if s.client {
			s.cookie = append([]byte(nil), m.Cookie...)
		}
	case *asap.BusinessCard:
		s.card = m
	}
}
