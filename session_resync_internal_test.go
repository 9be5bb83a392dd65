package rsp

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
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
		s.Close()
		for _, e := range els {
			e.stop()
		}
	})
}
