package rsp_test

import (
	"context"
	"testing"
	"time"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/internal/testutil"
)

// TestSessionResyncAckedBeforeReplay: the new element may acknowledge the
// failover callback's resynchronisation message (here at once, with its
// echo) before the session has written its replay; that is no protocol
// error, and each crash costs the session one failover, not two.
func TestSessionResyncAckedBeforeReplay(t *testing.T) {
	const crashes = 4
	msgs := make(chan rsp.Message, 100)
	pes, regs := startSessionPool(t, crashes+1, "resync", peOptions{stateless: true, msgs: msgs})
	failovers := make(chan rsp.FailoverEvent, 10)
	cfg := rsp.SessionConfig{HeartbeatInterval: resetHeartbeat, Failovers: failovers,
		OnFailover: func(ctx context.Context, f *rsp.Failover) error {
			// Echoed, so acknowledged with the echo; the replay waits
			// until the element has had it.
			if err := f.Send([]byte("eresync")); err != nil {
				return err
			}
			select {
			case <-msgs:
			case <-ctx.Done():
			}
			time.Sleep(20 * time.Millisecond)
			return nil
		}}
	s := dialSession(t, regs, "resync", cfg)
	s.SetDeadline(time.Now().Add(10 * time.Second))
	roundTrip := func(msg string) {
		t.Helper()
		if _, err := s.WriteMsg([]byte(msg), rsp.WriteOptions{AckRequest: true}); err != nil {
			t.Fatal(err)
		}
		m, err := s.ReadMsg()
		if err != nil || string(m.Data) != msg {
			t.Fatalf("read %q, %v; want %q", m.Data, err, msg)
		}
	}
	roundTrip("efirst")
	<-msgs
	for i := range crashes {
		pes[s.Element().ID].crash()
		m, err := s.ReadMsg()
		if err != nil || string(m.Data) != "eresync" {
			t.Fatalf("crash %d: read %q, %v; want the resynchronisation's echo", i+1, m.Data, err)
		}
		roundTrip("enext")
		<-msgs
		if got := s.Failovers(); got != i+1 {
			t.Fatalf("%d failovers after %d crashes (events %+v)", got, i+1, testutil.Drain(failovers))
		}
	}
}
