package rsp_test

import (
	"context"
	"net"
	"testing"

	"golang.org/x/net/nettest"

	"github.com/rsp-go/rsp"
)

// TestConnBehavesLikeNetConn runs the standard net.Conn conformance tests
// on a dialed pool connection and the accepted end.
func TestConnBehavesLikeNetConn(t *testing.T) {
	_, regs := testRegistrar(t)
	lc := rsp.ListenConfig{Endpoint: newEndpoint(t, regs), LocalAddr: "127.0.0.1:0"}
	l, err := lc.Listen(context.Background(), "tcp", "pool:conn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	d := &rsp.Dialer{Endpoint: newEndpoint(t, regs)}

	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := l.Accept()
			if err != nil {
				accepted <- nil
				return
			}
			accepted <- c
		}()
		dialed, err := d.DialContext(context.Background(), "tcp", "pool:conn")
		if err != nil {
			return nil, nil, nil, err
		}
		c2 = <-accepted
		if c2 == nil {
			dialed.Close()
			return nil, nil, nil, net.ErrClosed
		}
		return dialed, c2, func() { dialed.Close(); c2.Close() }, nil
	})
}
