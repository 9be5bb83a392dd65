package rsp

import (
	"testing"
	"time"

	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/ulpack"
)

// TestPingLocked: on a connection without the TCP mapping's heartbeat, a
// session pings a peer silent for an interval, once an interval, and
// counts it silent after HeartbeatMisses intervals; anything received
// puts that off. Over the TCP mapping it never pings.
func TestPingLocked(t *testing.T) {
	a, b := mapping.Pipe()
	defer a.Close()
	defer b.Close()
	iv := 100 * time.Millisecond
	// A message connection that is not the TCP mapping, as SCTP's.
	type otherConn struct{ mapping.Conn }
	s := &Session{cfg: SessionConfig{HeartbeatInterval: iv, HeartbeatMisses: 3}, conn: mapping.Batched(otherConn{a})}
	t0 := time.Unix(1000, 0)
	s.lastRecv = t0
	pings := func(batch []mapping.Msg) int {
		n := 0
		for _, m := range batch {
			if f, err := ulpack.ParseFrame(m.Buf); err == nil && m.PPID == ulpack.PPID {
				if p, ok := f.(*ulpack.Ping); ok && !p.Reply {
					n++
				}
			}
		}
		return n
	}
	for _, step := range []struct {
		at     time.Duration
		recv   bool // the peer was heard from at this time
		pings  int
		due    time.Duration
		silent bool
	}{
		{at: 50 * time.Millisecond, due: 100 * time.Millisecond},
		{at: 100 * time.Millisecond, pings: 1, due: 200 * time.Millisecond},
		{at: 150 * time.Millisecond, due: 200 * time.Millisecond},
		{at: 200 * time.Millisecond, pings: 1, due: 300 * time.Millisecond},
		{at: 250 * time.Millisecond, recv: true, due: 350 * time.Millisecond},
		{at: 350 * time.Millisecond, pings: 1, due: 450 * time.Millisecond},
		{at: 450 * time.Millisecond, pings: 1, due: 550 * time.Millisecond},
		{at: 550 * time.Millisecond, silent: true},
	} {
		now := t0.Add(step.at)
		if step.recv {
			s.lastRecv = now
		}
		batch, due, silent := s.pingLocked(now, nil)
		if got := pings(batch); got != step.pings || silent != step.silent || (!silent && !due.Equal(t0.Add(step.due))) {
			t.Fatalf("at %v: %d pings, due %v, silent %v; want %d, %v, %v", step.at, got, due.Sub(t0), silent, step.pings, step.due, step.silent)
		}
	}

	s.conn = a.(mapping.BatchConn) // the TCP mapping
	if batch, due, silent := s.pingLocked(t0.Add(time.Hour), nil); len(batch) != 0 || !due.IsZero() || silent {
		t.Fatalf("over the TCP mapping: %d messages, due %v, silent %v", len(batch), due, silent)
	}
}

// TestPingLockedWhileHeard: messages that keep coming, whose time the
// session reads only for the first since its loop last looked
// (heardLocked), never make the peer silent, even at one miss, and need
// no PINGs; once they stop, the peer is found silent between
// HeartbeatMisses intervals less an eighth and HeartbeatMisses intervals
// after the last.
func TestPingLockedWhileHeard(t *testing.T) {
	a, b := mapping.Pipe()
	defer a.Close()
	defer b.Close()
	type otherConn struct{ mapping.Conn }
	const iv, every = 80 * time.Millisecond, 3 * time.Millisecond
	for _, misses := range []int{1, 3} {
		s := &Session{cfg: SessionConfig{HeartbeatInterval: iv, HeartbeatMisses: misses}, conn: mapping.Batched(otherConn{a})}
		t0 := time.Unix(1000, 0)
		last := t0.Add(2 * time.Second) // messages every 3 ms up to last
		s.lastRecv = t0
		msg, look := t0, t0
		for looks := 0; ; looks++ {
			if looks > 10000 {
				t.Fatalf("misses %d: never found silent", misses)
			}
			for !msg.After(look) && !msg.After(last) {
				at := msg
				s.heardLocked(func() time.Time { return at })
				msg = msg.Add(every)
			}
			batch, due, silent := s.pingLocked(look, nil)
			if silent {
				if look.Before(last) {
					t.Fatalf("misses %d: silent at %v while messages come (up to %v)", misses, look.Sub(t0), last.Sub(t0))
				}
				quiet, max := look.Sub(last), time.Duration(misses)*iv
				if quiet < max-iv/8 || quiet > max {
					t.Errorf("misses %d: silent %v after the last message, want %v to %v", misses, quiet, max-iv/8, max)
				}
				break
			}
			if len(batch) > 0 && look.Before(last) {
				t.Fatalf("misses %d: a PING at %v while messages come", misses, look.Sub(t0))
			}
			if !due.After(look) {
				t.Fatalf("misses %d: due %v, not after the look at %v", misses, due.Sub(t0), look.Sub(t0))
			}
			look = due
		}
	}
}
