package rsp

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/ulpack"
)

// closeFlushTimeout bounds how long a closed session tries to send what
// was written before Close.
const closeFlushTimeout = time.Second

// loop is the session's one owner of its acknowledgement timer and its
// failovers, and of its connection's writes but for one kind: a Write
// that answers a message read takes the writer's role (writing) when no
// one holds it and writes what is due itself (writeInline). Application
// calls change the state under mu and wake it; it writes what is due in
// batches, and flushes what an inline write left with the connection.
func (s *Session) loop() {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	// armed is when the timer fires (zero: it is stopped or fired). It
	// is set again only for an earlier time: one that fires early just
	// wakes the loop once for nothing, and each Reset costs a reading
	// of the clock, a system call in some kernels.
	var armed time.Time
	var batch []mapping.Msg
	for {
		s.mu.Lock()
		c, gen := s.conn, s.gen
		if s.connErr != nil {
			err := s.connErr
			s.connErr = nil
			s.handledGen = s.gen
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
		if s.writing {
			// A Write writes (writeInline): it wakes the loop when
			// done.
			s.loopWaits = true
			s.mu.Unlock()
			<-s.kick
			continue
		}
		now := time.Now()
		var pingDue time.Time
		var silent bool
		batch, pingDue, silent = s.pingLocked(now, batch[:0])
		if silent && !s.closing && s.gen != s.handledGen {
			s.connErr = s.errSilentPeer()
			s.mu.Unlock()
			clear(batch)
			continue
		}
		batch = s.collect(batch, now)
		closing, goAway := s.closing || s.goAway, s.goAway
		due := earliest(s.rcv.Deadline(), pingDue)
		rearm := !due.IsZero() && (armed.IsZero() || due.Before(armed))
		if rearm {
			s.loopDue = due
		} else {
			s.loopDue = armed
		}
		upTo := s.sent
		held := s.heldUpTo != 0 && s.heldGen == gen
		s.heldUpTo = 0
		if len(batch) > 0 || closing || held {
			s.writing = true
		}
		s.mu.Unlock()

		if held && len(batch) == 0 && !closing {
			// The rest of an inline write that the socket did not take
			// at once.
			err := c.(interface{ Flush() error }).Flush()
			s.mu.Lock()
			s.writing, s.loopWaits = false, false
			if s.gen == gen {
				if err == nil {
					s.writtenLocked(upTo)
				} else if s.connErr == nil && gen != s.handledGen {
					s.connErr = err
				}
			}
			s.mu.Unlock()
			continue
		}
		if len(batch) > 0 || closing {
			if closing {
				var b []byte
				if goAway {
					s.mu.Lock()
					ack := s.rcv.Acked()
					s.mu.Unlock()
					b, _ = ulpack.GoAway{Code: ulpack.CodeShutdown, Ack: ack, Reason: "pool element shutting down"}.AppendBinary(nil)
				} else {
					b, _ = ulpack.Close{Code: ulpack.CodeNormal}.AppendBinary(nil)
				}
				batch = append(batch, mapping.Msg{Buf: b, PPID: ulpack.PPID})
				c.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
			}
			_, err := mapping.Batched(c).WriteBatch(batch)
			clear(batch)
			s.mu.Lock()
			s.writing, s.loopWaits = false, false
			if s.gen == gen {
				s.writtenLocked(upTo)
			}
			s.mu.Unlock()
			if closing {
				if err == nil {
					s.drain(c, goAway)
				}
				s.end(nil)
				return
			}
			if err != nil {
				s.mu.Lock()
				if s.gen == gen && s.connErr == nil && gen != s.handledGen {
					s.connErr = err
				}
				s.mu.Unlock()
				continue
			}
		}
		if rearm {
			timer.Reset(time.Until(due))
			armed = due
		}
		select {
		case <-s.kick:
		case <-timer.C:
			armed = time.Time{}
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
	// The acknowledgement goes when asked for, when due, or with data that
	// goes anyway (a reply carries the acknowledgement of its request).
	sending := len(batch) > 0 || len(s.pending) > 0
	if s.ackNow || s.closing || sending || s.rcv.AckDue(now) {
		if p, ok := s.rcv.TakeAck(); ok {
			batch = append(batch, mapping.Msg{Buf: ulpack.AppendAck(nil, p), PPID: ulpack.PPID})
		}
		s.ackNow = false
	}
	// The frames stay valid until acknowledged, which the peer can do only
	// once they are written.
	if len(s.pending) > 0 && len(s.streams) > 0 {
		s.forgetStreamsLocked()
	}
	for _, frame := range s.pending {
		batch = append(batch, s.dataMsgLocked(frame))
	}
	if len(s.pending) > 0 {
		s.sent = s.snd.Next() - 1
		clear(s.pending)
		s.pending = s.pending[:0]
	}
	return batch
}

// drain ends a closed session's connection gracefully: it shuts down the
// sending side and waits, a bounded time, for the peer to close its own,
// so that what was sent is not lost to a reset.
//
// After a GOAWAY the pool user closes the connection as soon as it has
// read it: the element waits for that with the connection whole, reading
// on and answering heartbeats. Closing first could lose the GOAWAY: a TCP
// reset, or the abort of an SCTP association with data unread, takes
// what is in flight with it, and a half-closed TCP mapping connection
// fails at its next heartbeat acknowledgement.
func (s *Session) drain(c mapping.BatchConn, goAway bool) {
	if !goAway {
		// Over SCTP there is no half-close: closing the association is
		// graceful, and delivers what was sent before it ends.
		tc, ok := c.(*mapping.TCPConn)
		if !ok {
			return
		}
		if cw, ok := tc.NetConn().(interface{ CloseWrite() error }); !ok || cw.CloseWrite() != nil {
			return
		}
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
		s.l.sessionEnded(s)
	}
}

// readLoop reads the messages of one connection of the session until it
// fails.
func (s *Session) readLoop(c mapping.BatchConn, gen int) {
	// Room for a batch of small messages; a longer one comes in a buffer
	// of its own. Kept small: an idle session holds it.
	ms := make([]mapping.Msg, 8)
	small := make([][]byte, len(ms))
	for i := range ms {
		small[i] = make([]byte, 512)
		ms[i].Buf = small[i]
	}
	limit := s.cfg.MaxMessageSize + ulpack.DataLen
	if sc, ok := c.(interface{ ShareReads(bool) }); ok {
		sc.ShareReads(true) // messages stay in the read buffer until read
	}
	var p ulpack.Parser
	for {
		n, err := c.ReadBatch(ms, limit)
		if n > 0 {
			// A GOAWAY says why the connection ends, even when the read
			// that brought it also brought its end.
			if perr := s.received(&p, ms[:n], gen); perr != nil && (err == nil || errors.Is(perr, ErrGoAway)) {
				err = perr
				if errors.Is(perr, ErrProtocol) {
					s.protocolError(c, perr)
				}
			}
		}
		if err != nil {
			s.mu.Lock()
			if s.gen == gen && s.connErr == nil && gen != s.handledGen {
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
			if ms[i].Lease != nil {
				ms[i].Lease.Release() // not kept: a control frame, a duplicate
				ms[i].Lease = nil
			}
			// received copies what it keeps of these, and keeps only
			// longer Bufs (ReadBatch's own, or leased).
			ms[i].Buf = small[i]
		}
	}
}

// received applies the messages of a batch.
func (s *Session) received(p *ulpack.Parser, ms []mapping.Msg, gen int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen {
		return nil
	}
	s.heardLocked(time.Now)
	wakeReaders, wakeWriters := false, false
	defer func() {
		if wakeReaders {
			broadcast(&s.rwait)
		}
		if wakeWriters {
			broadcast(&s.wwait)
		}
	}()
	for i := range ms {
		m := &ms[i]
		if m.Err != nil {
			return fmt.Errorf("%w: message over the limit", ErrProtocol)
		}
		b := m.Buf[:m.N]
		switch m.PPID {
		case mapping.PPIDASAP:
			s.control(b)
			continue
		case ulpack.PPID:
		default:
			continue // no channel of ours
		}
		f, err := p.Parse(b)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		switch f := f.(type) {
		case *ulpack.Data:
			fresh, err := s.rcv.Receive(f.Seq, f.AckRequest || f.AckNow)
			if err != nil {
				return fmt.Errorf("%w: DATA %d: %w", ErrProtocol, f.Seq, err)
			}
			if !fresh || s.draining {
				continue // a duplicate of a replay, or for the next element
			}
			s.exchanged = true
			payload := f.Payload
			var lease *mapping.Lease
			switch {
			case m.Lease != nil:
				// In the connection's read buffer: keep it there
				// rather than copy, until Read is done with it.
				lease, m.Buf, m.Lease = m.Lease, nil, nil
			case len(m.Buf) > 512 && m.N == len(m.Buf):
				// A buffer of its own (ReadBatch's for a long message):
				// keep it.
				m.Buf = nil
			default:
				payload = append([]byte(nil), payload...)
			}
			s.pushRQ(inMsg{seq: f.Seq, ppid: f.PPID, ackReq: f.AckRequest, ackNow: f.AckNow, payload: payload, lease: lease, from: s.pe,
				stream: m.Stream, unordered: m.Unordered})
			wakeReaders = true
		case *ulpack.Ack:
			if f.UpTo > s.sent {
				return fmt.Errorf("%w: ACK %d above %d sent", ErrProtocol, f.UpTo, s.sent)
			}
			if s.ackedLocked(f.UpTo) {
				wakeWriters = true
			}
		case *ulpack.GoAway:
			if f.Ack <= s.sent && s.ackedLocked(f.Ack) {
				wakeWriters = true
			}
			return fmt.Errorf("%w: %v %s", ErrGoAway, f.Code, f.Reason)
		case *ulpack.Close:
			if f.Code != ulpack.CodeNormal {
				s.peerErr = fmt.Errorf("%w: the peer closed the session: %v %s", ErrProtocol, f.Code, f.Reason)
			}
			s.peerEOF = true
			wakeReaders, wakeWriters = true, true
		case *ulpack.Ping:
			if !f.Reply {
				b, _ := ulpack.Ping{Reply: true, Opaque: f.Opaque}.AppendBinary(nil)
				go s.conn.WriteMsg(b, ulpack.PPID)
			}
		case *ulpack.Unknown:
		default:
			return fmt.Errorf("%w: %v in an open session", ErrProtocol, f.Type())
		}
	}
	return nil
}

// protocolError tells the peer why the connection ends.
func (s *Session) protocolError(c mapping.BatchConn, err error) {
	b, _ := ulpack.Close{Code: ulpack.CodeProtocolError, Reason: err.Error()}.AppendBinary(nil)
	c.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
	c.WriteMsg(b, ulpack.PPID)
}

// ackedLocked takes the peer's acknowledgement up to upTo and frees what
// it covers of what the writer is done with. mu is held.
func (s *Session) ackedLocked(upTo uint64) bool {
	s.peerAcked = max(s.peerAcked, min(upTo, s.sent))
	return s.freeLocked()
}

// writtenLocked records that the writer is done with the frames up to
// upTo, and frees those the peer acknowledged. mu is held.
func (s *Session) writtenLocked(upTo uint64) {
	s.written = max(s.written, upTo)
	if s.freeLocked() {
		broadcast(&s.wwait)
	}
}

// freeLocked frees the frames both acknowledged and written. The Sender
// reuses their memory, which the writer may still be reading until it is
// done with them, even though the peer has them: a peer acknowledges a
// frame once it arrived, not once the writer's call returned. mu is held.
func (s *Session) freeLocked() bool {
	n, err := s.snd.Ack(min(s.peerAcked, s.written))
	return err == nil && n > 0
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
