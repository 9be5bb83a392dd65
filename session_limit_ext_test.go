package rsp_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/internal/testutil"
)

// TestSessionOverElementLimit: the pool user's MaxMessageSize (2 MiB) is
// above its elements' (the default, 1 MiB), which they announce in their
// HELLO_ACK. A WriteMsg over the elements' limit fails at once with
// ErrMessageTooLong, and the session goes on with its element; a Write of
// as much goes in messages within the limit. Before the limit was
// exchanged, the message made every element close the connection: the
// session failed over, replayed it, and after MaxFailoverAttempts such
// elements failed with ErrFailoverFailed (and before the hold-back, it
// replayed on and on: 28,773 failovers in 15 s, each reporting a live
// element unreachable).
func TestSessionOverElementLimit(t *testing.T) {
	t.Parallel()
	_, regs := testRegistrar(t)
	got := make(chan int, 16)
	for range 2 {
		lc := rsp.ListenConfig{Endpoint: newEndpoint(t, regs), LocalAddr: "127.0.0.1:0", Session: rsp.SessionConfig{Stateless: true}}
		l, err := lc.Listen(context.Background(), "tcp", "pool:limit")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		testutil.ServeEach(l.Accept, func(c net.Conn) {
			for {
				m, err := c.(*rsp.Session).ReadMsg()
				if err != nil {
					return
				}
				got <- len(m.Data)
			}
		})
	}
	d := &rsp.Dialer{Endpoint: newEndpoint(t, regs), Session: rsp.SessionConfig{
		MaxMessageSize: 2 << 20, MaxUnackedBytes: 4 << 20, Stateless: true, MaxFailoverAttempts: 4, FailoverBackoff: 10 * time.Millisecond}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", "pool:limit")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := c.(*rsp.Session)
	if n := s.MaxMessageSize(); n != 1<<20 {
		t.Errorf("MaxMessageSize() = %d, want the elements' 1 MiB", n)
	}
	_, err = s.WriteMsg(make([]byte, 1536<<10), rsp.WriteOptions{AckRequest: true})
	var oe *net.OpError
	if !errors.Is(err, rsp.ErrMessageTooLong) || !errors.As(err, &oe) {
		t.Fatalf("WriteMsg of 1.5 MiB: %v, want a *net.OpError wrapping ErrMessageTooLong", err)
	}
	if n, err := c.Write(make([]byte, 1536<<10)); n != 1536<<10 || err != nil {
		t.Fatalf("Write of 1.5 MiB = %d, %v", n, err)
	}
	seq, err := s.WriteMsg(make([]byte, 1<<20), rsp.WriteOptions{AckRequest: true})
	if err != nil {
		t.Fatalf("WriteMsg at the elements' limit: %v", err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := s.WaitAcked(wctx, seq); err != nil {
		t.Fatalf("WaitAcked(%d): %v", seq, err)
	}
	var sizes []int
	for range 3 {
		sizes = append(sizes, <-got)
	}
	if diff := cmp.Diff([]int{1 << 20, 512 << 10, 1 << 20}, sizes); diff != "" {
		t.Errorf("sizes of the messages the element read (-want +got):\n%s", diff)
	}
	if n := s.Failovers(); n != 0 {
		t.Errorf("%d failovers, want none", n)
	}
}
