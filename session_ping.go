package rsp

import (
	"crypto/rand"
	"encoding/binary"
	"net"
	"time"

	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/ulpack"
)

// Liveness where the mapping has no heartbeat of its own (spec/session.md
// 2.5): over SCTP, the kernel answers SCTP heartbeats even for a process
// that is stopped, so a session sends PINGs, which its peer's session
// answers, on a connection silent for HeartbeatInterval, and counts the
// connection failed after HeartbeatMisses intervals with nothing from the
// peer. Over the TCP mapping its own heartbeat does this.

// needsPing reports whether c's mapping lacks a heartbeat the session can
// rely on.
func needsPing(c mapping.Conn) bool {
	_, tcp := c.(*mapping.TCPConn)
	return !tcp
}

// pingLocked appends a PING to batch when the peer has been silent for an
// interval since it last heard from it or was pinged, and reports whether
// the peer has been silent for HeartbeatMisses intervals; due is when to
// look again (zero: never). mu is held.
func (s *Session) pingLocked(now time.Time, batch []mapping.Msg) (_ []mapping.Msg, due time.Time, silent bool) {
	if s.conn == nil || !needsPing(s.conn) {
		return batch, time.Time{}, false
	}
	iv := s.cfg.HeartbeatInterval
	if s.lastRecv.IsZero() {
		s.lastRecv = now
	}
	// lastRecv is when the first message since the loop's last look
	// came (heardLocked), the last one no later than now. While messages
	// come the loop looks again within an eighth of an interval, so that
	// lastRecv is never more than that older than the last message: a
	// peer is found silent no later than HeartbeatMisses intervals after
	// it was last heard, and no earlier than an eighth of an interval
	// before.
	heard := s.heard
	s.heard = false
	dead := s.lastRecv.Add(time.Duration(s.cfg.HeartbeatMisses) * iv)
	if !now.Before(dead) {
		return batch, time.Time{}, true
	}
	next := s.lastRecv
	if s.pingAt.After(next) {
		next = s.pingAt
	}
	next = next.Add(iv)
	if !now.Before(next) {
		var op [8]byte
		rand.Read(op[:])
		b, _ := ulpack.Ping{Opaque: binary.BigEndian.Uint64(op[:])}.AppendBinary(nil)
		batch = append(batch, mapping.Msg{Buf: b, PPID: ulpack.PPID})
		s.pingAt = now
		next = now.Add(iv)
	}
	due = earliest(next, dead)
	if heard {
		due = earliest(due, now.Add(iv/8))
	}
	return batch, due, false
}

// heardLocked records that a message came from the peer, reading the
// clock (now) only for the first since the loop last looked (pingLocked):
// once for many messages, where each reading may be a system call. mu is
// held.
func (s *Session) heardLocked(now func() time.Time) {
	if !s.heard {
		s.lastRecv, s.heard = now(), true
	}
}

// earliest returns the earlier of two times, ignoring zero ones.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// errSilentPeer is the failure of a connection whose peer answered no PING
// for HeartbeatMisses intervals.
func (s *Session) errSilentPeer() error {
	return &net.OpError{Op: "read", Net: s.conn.LocalAddr().Network(), Source: s.conn.LocalAddr(), Addr: s.conn.RemoteAddr(), Err: mapping.ErrPeerTimeout}
}
