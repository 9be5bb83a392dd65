package rsp_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/internal/sctp"
)

// TestSessionElementShutdown is TestListenerShutdown over loopback TCP:
// an element shut down while a session streams to it hands the session
// to the other element with every message processed once and every echo
// read once, in order.
func TestSessionElementShutdown(t *testing.T) {
	testSessionElementShutdown(t, "tcp", 300)
}

// TestSessionElementShutdownSCTP is TestSessionElementShutdown with
// elements listening over SCTP (fewer messages: User-mode Linux is slow).
func TestSessionElementShutdownSCTP(t *testing.T) {
	if !sctp.Supported() {
		t.Skip("the kernel has no SCTP; run the SCTP tests inside User-mode Linux with .ci/uml/test-sctp")
	}
	testSessionElementShutdown(t, "sctp", 90)
}

func testSessionElementShutdown(t *testing.T, network string, total int) {
	got := new(deliveries)
	pes, regs := startSessionPool(t, 2, "shutdown", peOptions{stateless: true, got: got, network: network})
	failovers := make(chan rsp.FailoverEvent, 4)
	s := dialSession(t, regs, "shutdown", rsp.SessionConfig{Failovers: failovers})
	s.SetDeadline(time.Now().Add(20 * time.Second))
	first := s.Element().ID
	wrote := make(chan error, 1)
	shut := make(chan error, 1)
	returned := make(chan struct{})
	go func() {
		for i := range total {
			if i == 2*total/3 {
				// The rest goes to the other element for sure.
				<-returned
			}
			if _, err := s.WriteMsg(fmt.Appendf(nil, "e%03d", i), rsp.WriteOptions{AckRequest: i%10 == 9}); err != nil {
				wrote <- err
				return
			}
			time.Sleep(time.Millisecond) // a stream, not a burst
		}
		wrote <- nil
	}()
	var echoes, want []string
	for i := range total {
		want = append(want, fmt.Sprintf("e%03d", i))
		if i == total/3 {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				shut <- pes[first].l.Shutdown(ctx)
				close(returned)
			}()
		}
		m, err := s.ReadMsg()
		if err != nil {
			t.Fatalf("read after %d echoes: %v", len(echoes), err)
		}
		echoes = append(echoes, string(m.Data))
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if diff := cmp.Diff(want, echoes); diff != "" {
		t.Errorf("echoes (-want +got):\n%s", diff)
	}
	if s.Element().ID == first || s.Failovers() != 1 {
		t.Errorf("session on %v after %d failovers, want one away from %v", s.Element().ID, s.Failovers(), first)
	}
	// Every message processed once, by one element or the other.
	waitFor(t, "the deliveries", 5*time.Second, func() bool { return len(got.of(s.ID())) == total })
	for seq, n := range got.of(s.ID()) {
		if n != 1 {
			t.Errorf("message %d delivered %d times", seq, n)
		}
	}
}
