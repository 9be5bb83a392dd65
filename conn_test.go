package rsp_test

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/net/nettest"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/registrar"
)

// TestConnBehavesLikeNetConn runs the standard net.Conn conformance tests
// on dialed pool connections and their accepted ends: sessions, and plain
// connections (an element registered as plain, and a plain dialer to an
// element that speaks sessions).
func TestConnBehavesLikeNetConn(t *testing.T) {
	tests := []struct {
		name          string
		plainListener bool
		plainDialer   bool
		session       bool
		sniff         time.Duration // the listener's SniffTimeout
	}{
		// A session's HELLO arrives at once, but a loaded machine may
		// deschedule the dialer between connect and HELLO: a sniff
		// timeout of 50 ms then took a session for a plain connection
		// and the dial failed ("peer timed out"). Only the plain dialer
		// waits out the sniff timeout, at every pipe it makes.
		{"Session", false, false, true, 10 * time.Second},
		{"PlainElement", true, false, false, 10 * time.Second},
		{"PlainDialer", false, true, false, 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The registrar's keep-alives at their defaults: the
			// conformance tests dial the element many times over
			// seconds, and testRegistrar's 300 ms keep-alive timeout
			// dropped it now and then on a loaded machine ("unknown
			// pool handle"), which is not what they test.
			_, regs := testRegistrarWith(t, registrar.Config{})
			lc := rsp.ListenConfig{Endpoint: newEndpoint(t, regs), LocalAddr: "127.0.0.1:0", Plain: tt.plainListener,
				Session: rsp.SessionConfig{SniffTimeout: tt.sniff}}
			l, err := lc.Listen(context.Background(), "tcp", "pool:conn")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			d := &rsp.Dialer{Endpoint: newEndpoint(t, regs), Plain: tt.plainDialer}
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
				_, dialedSession := dialed.(*rsp.Session)
				_, acceptedSession := c2.(*rsp.Session)
				_, tcp := dialed.(*net.TCPConn)
				if dialedSession != tt.session || acceptedSession != tt.session || tcp == tt.session {
					t.Errorf("dialed %T, accepted %T; want sessions: %v", dialed, c2, tt.session)
				}
				return dialed, c2, func() { dialed.Close(); c2.Close() }, nil
			})
		})
	}
}
