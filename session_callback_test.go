package rsp

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rsp-go/rsp/asap"
)

// TestSessionResyncSentOnce: the failover callback's resynchronisation
// message goes to the new element once, ahead of the replay, and the
// replay carries each unacknowledged message once (the message used to
// go a second time with the replay).
func TestSessionResyncSentOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet(t)
		defer n.close()
		msgs := make(chan Message, 16)
		cfg := SessionConfig{Stateless: true}
		els := []*memElement{n.startElement("p", cfg, msgs), n.startElement("p", cfg, msgs)}
		n.waitPool("p", 2)
		// The first element reads "two" and then stalls: "two" and
		// "three" stay unacknowledged.
		stall := make(chan struct{})
		for _, e := range els {
			e.hold = func(s *Session, m Message) {
				if string(m.Data) == "two" && s.Resumed() == false {
					<-stall
				}
			}
		}
		failovers := make(chan FailoverEvent, 1)
		d, stop := n.dialer(SessionConfig{Failovers: failovers, OnFailover: func(ctx context.Context, f *Failover) error {
			return f.Send([]byte("resync"))
		}})
		defer stop()
		s := n.dialSession(d, "p")
		s.SetDeadline(time.Now().Add(30 * time.Second))
		for _, m := range []string{"eone", "two", "three"} {
			if _, err := s.WriteMsg([]byte(m), WriteOptions{AckRequest: m == "eone"}); err != nil {
				t.Fatal(err)
			}
		}
		if m, err := s.ReadMsg(); err != nil || string(m.Data) != "eone" {
			t.Fatalf("read %q, %v", m.Data, err)
		}
		synctest.Wait()
		var old, next *memElement
		for _, e := range els {
			if e.l.ID() == s.Element().ID {
				old = e
			} else {
				next = e
			}
		}
		n.crash(old)
		close(stall)
		var fo FailoverEvent
		select {
		case fo = <-failovers:
		case <-time.After(20 * time.Second):
			t.Fatal("no failover")
		}
		synctest.Wait()
		type frame struct {
			Seq     uint64
			Payload string
		}
		var got []frame
		for _, f := range n.dataFrames(next) {
			got = append(got, frame{f.Seq, string(f.Payload)})
		}
		want := []frame{{4, "resync"}, {2, "two"}, {3, "three"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("DATA frames the new element read (-want +got):\n%s", diff)
		}
		if fo.Replayed != 2 || fo.FirstReplayed != 2 {
			t.Errorf("failover event replayed %d from %d, want 2 from 2", fo.Replayed, fo.FirstReplayed)
		}
		if r := n.reportedUnreachable(); !slices.Contains(r, old.l.ID()) {
			t.Errorf("elements reported unreachable %v, want the crashed %v", r, old.l.ID())
		}
		s.Close()
		for _, e := range els {
			e.stop()
		}
	})
}

// pair is a pool of elements on a memNet and a session to it, on fake
// time.
type pair struct {
	n   *memNet
	els []*memElement
	s   *Session
	fos chan FailoverEvent
	end func()
}

// startPair starts k stateless elements of pool "p" whose applications
// send their messages to msgs (if set), and a session to them dialed with
// ctx and cfg.
func startPair(t *testing.T, k int, ctx context.Context, cfg SessionConfig, msgs chan Message) *pair {
	t.Helper()
	n := newMemNet(t)
	p := &pair{n: n, fos: make(chan FailoverEvent, 8)}
	for range k {
		p.els = append(p.els, n.startElement("p", SessionConfig{Stateless: true}, msgs))
	}
	n.waitPool("p", k)
	cfg.Failovers = p.fos
	d, stop := n.dialer(cfg)
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := d.DialContext(dctx, "tcp", "pool:p")
	if err != nil {
		t.Fatal(err)
	}
	p.s = c.(*Session)
	p.s.SetDeadline(time.Now().Add(time.Minute))
	p.end = func() {
		p.s.Close()
		stop()
		for _, e := range p.els {
			e.stop()
		}
		n.close()
	}
	return p
}

// element returns the element of the pair with identifier id.
func (p *pair) element(s *Session) *memElement {
	for _, e := range p.els {
		if e.l.ID() == s.Element().ID {
			return e
		}
	}
	return nil
}

// crash crashes the element the session is on and waits for the failover.
func (p *pair) crash(t *testing.T) FailoverEvent {
	t.Helper()
	p.n.crash(p.element(p.s))
	select {
	case fo := <-p.fos:
		synctest.Wait()
		return fo
	case <-time.After(20 * time.Second):
		t.Fatal("no failover")
		return FailoverEvent{}
	}
}

// TestFailoverSendMsg: the failover callback sends with WriteOptions: the
// ack request and the PPID reach the new element, the message is
// acknowledged without delay, options the mapping lacks and other
// elements fail with ErrNotSupported, and nothing is sent once the
// callback returned.
func TestFailoverSendMsg(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		msgs := make(chan Message, 16)
		var (
			seq      uint64
			saved    *Failover
			errs     []error
			wantPeer asap.PEID
		)
		cfg := SessionConfig{AckDelay: time.Second, OnFailover: func(ctx context.Context, f *Failover) error {
			saved = f
			wantPeer = f.New.ID
			_, err := f.SendMsg([]byte("s"), WriteOptions{Stream: 1})
			errs = append(errs, err)
			_, err = f.SendMsg([]byte("s"), WriteOptions{Element: f.Old.ID})
			errs = append(errs, err)
			seq, err = f.SendMsg([]byte("eresync"), WriteOptions{AckRequest: true, PPID: 42})
			return err
		}}
		p := startPair(t, 2, context.Background(), cfg, msgs)
		defer p.end()
		if _, err := p.s.WriteMsg([]byte("one"), WriteOptions{AckRequest: true}); err != nil {
			t.Fatal(err)
		}
		<-msgs
		synctest.Wait()
		p.crash(t)
		for i, err := range errs {
			if !errors.Is(err, ErrNotSupported) {
				t.Errorf("SendMsg %d with an option the new element's connection lacks: %v, want ErrNotSupported", i, err)
			}
		}
		m := <-msgs
		if string(m.Data) != "eresync" || m.PPID != 42 || !m.AckRequest || m.Seq != seq || seq != 2 {
			t.Errorf("the new element read %q PPID %d ack request %v seq %d; want eresync, 42, true, %d = 2", m.Data, m.PPID, m.AckRequest, m.Seq, seq)
		}
		if p.s.Element().ID != wantPeer {
			t.Errorf("session on %v, want the new element %v", p.s.Element().ID, wantPeer)
		}
		// The ack request is acknowledged at once, not after AckDelay.
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := p.s.WaitAcked(ctx, seq); err != nil {
			t.Errorf("resynchronisation message not acknowledged within %v of an AckDelay of 1 s: %v", time.Since(start), err)
		}
		var flagged bool
		for _, d := range p.n.dataFrames(p.element(p.s)) {
			if d.Seq == seq {
				flagged = d.AckRequest && d.PPID == 42
			}
		}
		if !flagged {
			t.Error("the DATA frame of the resynchronisation message lacks the ack request or the PPID")
		}
		if _, err := saved.SendMsg([]byte("late"), WriteOptions{}); !errors.Is(err, net.ErrClosed) {
			t.Errorf("SendMsg after the callback returned: %v, want net.ErrClosed", err)
		}
		if r, err := p.s.ReadMsg(); err != nil || string(r.Data) != "eresync" || r.From.ID != wantPeer {
			t.Errorf("read %q from %v, %v; want the echo of the resynchronisation", r.Data, r.From.ID, err)
		}
	})
}

// TestWithFailoverCallback: a callback set for one dial with
// WithFailoverCallback is called instead of the Dialer's; a nil one
// leaves that session without callback; other sessions keep the
// Dialer's.
func TestWithFailoverCallback(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ctx        func(context.Context, *[]string) context.Context
		wantCalled []string
	}{
		{"dialer's", func(ctx context.Context, _ *[]string) context.Context { return ctx }, []string{"dialer"}},
		{"per dial", func(ctx context.Context, calls *[]string) context.Context {
			return WithFailoverCallback(ctx, func(ctx context.Context, f *Failover) error {
				*calls = append(*calls, "dial")
				return nil
			})
		}, []string{"dial"}},
		{"none for this dial", func(ctx context.Context, _ *[]string) context.Context { return WithFailoverCallback(ctx, nil) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var calls []string
				cfg := SessionConfig{OnFailover: func(ctx context.Context, f *Failover) error {
					calls = append(calls, "dialer")
					return nil
				}}
				p := startPair(t, 2, tc.ctx(context.Background(), &calls), cfg, nil)
				defer p.end()
				if _, err := p.s.WriteMsg([]byte("eone"), WriteOptions{AckRequest: true}); err != nil {
					t.Fatal(err)
				}
				if _, err := p.s.ReadMsg(); err != nil {
					t.Fatal(err)
				}
				p.crash(t)
				if diff := cmp.Diff(tc.wantCalled, calls); diff != "" {
					t.Errorf("callbacks called (-want +got):\n%s", diff)
				}
				if _, err := p.s.WriteMsg([]byte("etwo"), WriteOptions{AckRequest: true}); err != nil {
					t.Fatal(err)
				}
				if m, err := p.s.ReadMsg(); err != nil || string(m.Data) != "etwo" {
					t.Fatalf("after the failover: read %q, %v", m.Data, err)
				}
			})
		})
	}
}

// TestFailoverUnread: messages of the old element the application has not
// read when the session fails over are counted by Failover.Unread and
// delivered, in order and whole (one of them half read before), before
// the new element's.
func TestFailoverUnread(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		unread := -1
		cfg := SessionConfig{OnFailover: func(ctx context.Context, f *Failover) error {
			unread = f.Unread()
			return f.Send([]byte("eresync"))
		}}
		p := startPair(t, 2, context.Background(), cfg, nil)
		defer p.end()
		for _, e := range p.els {
			e.hold = func(s *Session, m Message) {
				if string(m.Data) == "push" {
					for _, b := range []string{"a1", "a2", "a3"} {
						s.Write([]byte(b))
					}
				}
			}
		}
		if _, err := p.s.WriteMsg([]byte("push"), WriteOptions{AckRequest: true}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		oldID := p.s.Element().ID
		b := make([]byte, 1)
		if n, err := p.s.Read(b); err != nil || string(b[:n]) != "a" {
			t.Fatalf("read %q, %v", b[:n], err)
		}
		fo := p.crash(t)
		if unread != 3 {
			t.Errorf("Failover.Unread() = %d, want 3 (one of them half read)", unread)
		}
		type got struct {
			Data string
			Old  bool
		}
		var reads []got
		for range 4 {
			m, err := p.s.ReadMsg()
			if err != nil {
				t.Fatal(err)
			}
			reads = append(reads, got{string(m.Data), m.From.ID == oldID})
		}
		want := []got{{"1", true}, {"a2", true}, {"a3", true}, {"eresync", false}}
		if diff := cmp.Diff(want, reads); diff != "" {
			t.Errorf("messages read after the failover to %v (-want +got):\n%s", fo.New.ID, diff)
		}
	})
}
