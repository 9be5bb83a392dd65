package rsp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/internal/testutil"
)

// TestListenerShutdown: a pool element that shuts down while a session
// streams to it moves the session to the other element of the pool: no
// error reaches the pool user's application, every message reaches an
// element's application exactly once (what the first did not process is
// replayed to the second, what it processed is acknowledged in its
// GOAWAY), every echo comes back once and in order, the element is
// deregistered, and Shutdown returns once its session is gone.
func TestListenerShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const total = 200
		msgs := make(chan Message, 2*total)
		p := startPair(t, 2, context.Background(), SessionConfig{}, msgs)
		defer p.end()
		a := p.element(p.s)
		aID := a.l.ID()

		wrote := make(chan error, 1)
		go func() {
			for i := range total {
				if _, err := p.s.WriteMsg(fmt.Appendf(nil, "e%03d", i), WriteOptions{AckRequest: i%10 == 9}); err != nil {
					wrote <- err
					return
				}
				time.Sleep(time.Millisecond)
			}
			wrote <- nil
		}()
		type shut struct {
			err  error
			took time.Duration
		}
		shutDone := make(chan shut, 1)
		go func() {
			time.Sleep(50 * time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			err := a.l.Shutdown(ctx)
			shutDone <- shut{err, time.Since(start)}
		}()
		var echoes []string
		for range total {
			m, err := p.s.ReadMsg()
			if err != nil {
				t.Fatalf("pool user's read after %d echoes: %v", len(echoes), err)
			}
			echoes = append(echoes, string(m.Data))
		}
		if err := <-wrote; err != nil {
			t.Fatalf("pool user's write: %v", err)
		}
		sd := <-shutDone
		if sd.err != nil || sd.took > time.Second {
			t.Errorf("Shutdown returned %v after %v, want nil within a second", sd.err, sd.took)
		}
		var want []string
		for i := range total {
			want = append(want, fmt.Sprintf("e%03d", i))
		}
		if diff := cmp.Diff(want, echoes); diff != "" {
			t.Errorf("echoes read by the pool user (-want +got):\n%s", diff)
		}
		synctest.Wait()
		got := map[string]int{}
		byA := 0
		for len(msgs) > 0 {
			m := <-msgs
			got[string(m.Data)]++
			if m.From.ID == aID {
				byA++
			}
		}
		for _, w := range want {
			if got[w] != 1 {
				t.Errorf("message %s delivered %d times, want once", w, got[w])
			}
		}
		if byA == 0 || byA == total {
			t.Errorf("the element shut down got %d of %d messages: the test did not shut it down mid-stream", byA, total)
		}
		fos := testutil.Drain(p.fos)
		if len(fos) != 1 || !errors.Is(fos[0].Cause, ErrGoAway) || fos[0].Old.ID != aID || p.s.Element().ID == aID {
			t.Errorf("failovers %+v, want one from %v for its GOAWAY", fos, aID)
		}
		if n := a.l.Active(); n != 0 {
			t.Errorf("%d connections active after Shutdown", n)
		}
		if r := p.n.reportedUnreachable(); len(r) != 0 {
			t.Errorf("elements reported unreachable %v: an element that went away is not", r)
		}
		ep := p.n.endpoint()
		defer ep.Close()
		res, err := ep.Resolve(context.Background(), asap.PoolHandle("p"))
		if err != nil || slices.ContainsFunc(res.PEs, func(pe asap.PoolElement) bool { return pe.ID == aID }) {
			t.Errorf("after Shutdown the pool resolves to %v, %v: the element is still registered", res.PEs, err)
		}
	})
}

// TestListenerShutdownTimeout: a session whose application holds a
// message it does not process keeps the element's Shutdown waiting until
// its context is done; then the session goes away at once, Shutdown
// returns the context's error, and the held message is replayed to the
// other element, with no error to the pool user's application.
func TestListenerShutdownTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		msgs := make(chan Message, 16)
		p := startPair(t, 2, context.Background(), SessionConfig{}, msgs)
		defer p.end()
		release := make(chan struct{})
		for _, e := range p.els {
			e.hold = func(s *Session, m Message) {
				if string(m.Data) == "hold" && !s.Resumed() {
					<-release
				}
			}
		}
		a := p.element(p.s)
		aID := a.l.ID()
		if _, err := p.s.WriteMsg([]byte("eone"), WriteOptions{AckRequest: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.s.ReadMsg(); err != nil {
			t.Fatal(err)
		}
		<-msgs
		if _, err := p.s.WriteMsg([]byte("hold"), WriteOptions{AckRequest: true}); err != nil {
			t.Fatal(err)
		}
		if m := <-msgs; string(m.Data) != "hold" {
			t.Fatalf("element read %q", m.Data)
		}
		const wait = 2 * time.Second
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		start := time.Now()
		shutDone := make(chan error, 1)
		go func() { shutDone <- a.l.Shutdown(ctx) }()
		time.Sleep(wait / 2)
		if p.s.Element().ID != aID || p.s.Failovers() != 0 {
			t.Errorf("the session left the element before its application processed the message it holds")
		}
		if err := <-shutDone; !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != wait {
			t.Errorf("Shutdown returned %v after %v, want context.DeadlineExceeded after %v", err, time.Since(start), wait)
		}
		synctest.Wait()
		if m := <-msgs; string(m.Data) != "hold" || m.From.ID == aID {
			t.Errorf("after the timeout the other element read %q (from %v), want the held message replayed", m.Data, m.From.ID)
		}
		close(release)
		if _, err := p.s.WriteMsg([]byte("etwo"), WriteOptions{AckRequest: true}); err != nil {
			t.Fatal(err)
		}
		if m, err := p.s.ReadMsg(); err != nil || string(m.Data) != "etwo" || m.From.ID == aID {
			t.Errorf("after the failover: read %q from %v, %v", m.Data, m.From.ID, err)
		}
		if fos := testutil.Drain(p.fos); len(fos) != 1 || !errors.Is(fos[0].Cause, ErrGoAway) || fos[0].Replayed != 1 {
			t.Errorf("failovers %+v, want one for the GOAWAY replaying the held message", fos)
		}
	})
}

// TestListenerShutdownIdle: sessions whose applications hold nothing, one
// of them not even accepted yet, go away at once, and Shutdown returns
// without waiting for its context.
func TestListenerShutdownIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet(t)
		defer n.close()
		a := n.startElement("p", SessionConfig{Stateless: true}, nil)
		n.waitPool("p", 1)
		d, stop := n.dialer(SessionConfig{NoFailover: true})
		defer stop()
		s := n.dialSession(d, "p")
		defer s.Close()
		if _, err := s.WriteMsg([]byte("eone"), WriteOptions{AckRequest: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ReadMsg(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := a.l.Shutdown(context.Background()); err != nil || time.Since(start) > time.Second {
			t.Errorf("Shutdown returned %v after %v", err, time.Since(start))
		}
		// The pool user was told to go away (it fails since it may not
		// fail over), not that the session ended.
		s.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := s.ReadMsg(); !errors.Is(err, ErrGoAway) {
			t.Errorf("pool user read %v after the element shut down, want its GOAWAY", err)
		}
		a.stop()
	})
}
