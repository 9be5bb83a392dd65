package rsp

import (
	"errors"
	"net"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rsp-go/rsp/asap"
)

// poisonPool starts two elements of pool "p" on n whose application
// breaks its connections (no CLOSE, as a crash of the connection's
// process would) when it reads the message "poison", before it processes
// (and so acknowledges) it.
func poisonPool(n *memNet) []*memElement {
	var es []*memElement
	for range 2 {
		e := n.startElement("p", SessionConfig{Stateless: true}, nil)
		e.hold = func(_ *Session, m Message) {
			if string(m.Data) == "poison" {
				n.breakConns(e)
			}
		}
		es = append(es, e)
	}
	n.waitPool("p", 2)
	return es
}

// TestSessionPoisonHoldBack: elements that break their connection on a
// message replayed to them, before acknowledging it, hold each failover
// after the first back: FailoverBackoff, twice that, four times, and the
// session fails with ErrFailoverFailed after MaxFailoverAttempts such
// elements in a row (the failover machine decides; on fake time).
func TestSessionPoisonHoldBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet(t)
		defer n.close()
		es := poisonPool(n)
		const backoff = 10 * time.Second
		events := make(chan FailoverEvent, 16)
		d, stop := n.dialer(SessionConfig{FailoverBackoff: backoff, FailoverTimeout: time.Minute, MaxFailoverAttempts: 4, Failovers: events})
		s := n.dialSession(d, "p")
		if _, err := s.WriteMsg([]byte("poison"), WriteOptions{AckRequest: true}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err := s.ReadMsg()
		took := time.Since(start)
		if !errors.Is(err, ErrFailoverFailed) {
			t.Errorf("ReadMsg: %v, want ErrFailoverFailed", err)
		}
		close(events)
		var holds []time.Duration
		for ev := range events {
			holds = append(holds, ev.Took.Truncate(time.Second))
		}
		// The first loss follows no replay: no hold-back. The fourth in a
		// row of elements that acknowledged nothing of theirs gives up.
		if diff := cmp.Diff([]time.Duration{0, backoff, 2 * backoff, 4 * backoff}, holds); diff != "" {
			t.Errorf("failovers took (-want +got):\n%s", diff)
		}
		if took < 7*backoff || took > 7*backoff+5*time.Second {
			t.Errorf("the session failed after %v, want the hold-backs' 7 x %v", took, backoff)
		}
		s.Close()
		stop()
		for _, e := range es {
			e.stop()
		}
	})
}

// TestSessionCloseEndsHoldBack: a session closed while the failover
// machine holds its failover back (the element acknowledged none of what
// the last failover replayed to it) ends at once, as during any other
// failover step: nothing waits out the hold-back, no element is tried or
// reported after it.
func TestSessionCloseEndsHoldBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet(t)
		defer n.close()
		es := poisonPool(n)
		d, stop := n.dialer(SessionConfig{FailoverBackoff: time.Hour, FailoverTimeout: 2 * time.Hour})
		s := n.dialSession(d, "p")
		first := s.Element().ID
		if _, err := s.WriteMsg([]byte("poison"), WriteOptions{AckRequest: true}); err != nil {
			t.Fatal(err)
		}
		// The first element breaks, the session fails over to the second
		// and replays; the second breaks: the hold-back of an hour begins.
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := s.Failovers(); got != 1 {
			t.Fatalf("%d failovers before the hold-back, want 1", got)
		}
		select {
		case <-s.done:
			t.Fatalf("the session ended before Close: %v", s.err)
		default:
		}
		closed := time.Now()
		s.Close()
		synctest.Wait()
		select {
		case <-s.done:
		default:
			t.Fatal("the session did not end when closed during the hold-back")
		}
		if took := time.Since(closed); took > time.Second {
			t.Errorf("the session ended %v after Close, want at once", took)
		}
		if _, err := s.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read after Close: %v, want net.ErrClosed", err)
		}
		// Only the first element was reported: the second's report waits
		// for the end of the hold-back, which never came.
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		if got := slices.DeleteFunc(n.reportedUnreachable(), func(id asap.PEID) bool { return id == first }); len(got) != 0 {
			t.Errorf("reported unreachable after Close: %v", got)
		}
		if got := s.Failovers(); got != 1 {
			t.Errorf("%d failovers, want 1: the closed session went on", got)
		}
		stop()
		for _, e := range es {
			e.stop()
		}
	})
}
