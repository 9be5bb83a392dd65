package rsp_test

import (
	"errors"
	"testing"

	"github.com/rsp-go/rsp"
)

// TestSessionStreamsOverTCP: a stream or unordered delivery over the TCP
// mapping fails with ErrNotSupported, sends nothing, and leaves the
// session working.
func TestSessionStreamsOverTCP(t *testing.T) {
	_, regs := startSessionPool(t, 1, "streams", peOptions{stateless: true})
	s := dialSession(t, regs, "streams", rsp.SessionConfig{HeartbeatInterval: resetHeartbeat})
	for _, o := range []rsp.WriteOptions{{Stream: 1}, {Unordered: true}} {
		if _, err := s.WriteMsg([]byte("x"), o); !errors.Is(err, rsp.ErrNotSupported) {
			t.Errorf("WriteMsg %+v over TCP: %v, want ErrNotSupported", o, err)
		}
	}
	seq, err := s.WriteMsg([]byte("y"), rsp.WriteOptions{AckRequest: true})
	if err != nil || seq != 1 {
		t.Fatalf("a message after the refused ones: %d, %v; want number 1", seq, err)
	}
}
