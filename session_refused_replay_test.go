package rsp_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/rsp-go/rsp"
)

// TestSessionElementsRefusingReplay: a message over the elements'
// MaxMessageSize (the pool user's limit is higher; the protocol does not
// exchange it) makes every element close the connection. The session
// fails over with a growing back-off and, after MaxFailoverAttempts
// elements in a row lost before they acknowledged any of what was
// replayed to them, fails with ErrFailoverFailed. It used to fail over
// and replay on and on: 28,773 failovers in 15 s, each reporting a live
// element unreachable.
func TestSessionElementsRefusingReplay(t *testing.T) {
	t.Parallel()
	_, regs := testRegistrar(t)
	for range 2 {
		lc := rsp.ListenConfig{Endpoint: newEndpoint(t, regs), LocalAddr: "127.0.0.1:0", Session: rsp.SessionConfig{Stateless: true}}
		l, err := lc.Listen(context.Background(), "tcp", "pool:refuse")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() { io.Copy(io.Discard, c); c.Close() }()
			}
		}()
	}
	const attempts = 4
	d := &rsp.Dialer{Endpoint: newEndpoint(t, regs), Session: rsp.SessionConfig{
		MaxMessageSize: 2 << 20, MaxUnackedBytes: 4 << 20, Stateless: true, MaxFailoverAttempts: attempts, FailoverBackoff: 10 * time.Millisecond}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", "pool:refuse")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := c.(*rsp.Session)
	if _, err := s.WriteMsg(make([]byte, 1536<<10), rsp.WriteOptions{AckRequest: true}); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = c.Read(make([]byte, 10))
	if !errors.Is(err, rsp.ErrFailoverFailed) {
		t.Errorf("Read: %v, want ErrFailoverFailed", err)
	}
	if n := s.Failovers(); n > attempts {
		t.Errorf("%d failovers, want at most %d", n, attempts)
	}
}
