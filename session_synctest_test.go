package rsp

import (
	"errors"
	"net"
	"os"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rsp-go/rsp/mapping"
)

// TestSessionAckTiming runs two ends of a session over an in-memory
// connection on fake time: a message without an ack request is
// acknowledged AckDelay after the receiving application's next call (the
// implicit rule), not before; one with an ack request at once; Write
// returns before any of it.
func TestSessionAckTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 10 * time.Millisecond
		sender, receiver := pipeSessions(SessionConfig{AckDelay: delay})

		got := make(chan Message, 2)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				m, err := receiver.ReadMsg()
				if err != nil {
					return
				}
				got <- m
			}
		}()
		if _, err := sender.WriteMsg([]byte("x"), WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		if m := <-got; string(m.Data) != "x" || m.AckRequest || m.Seq != 1 {
			t.Fatalf("received %+v", m)
		}
		// The reader's next ReadMsg makes "x" processed; its
		// acknowledgement waits for the delay.
		synctest.Wait()
		start := time.Now()
		time.Sleep(delay - time.Millisecond)
		synctest.Wait()
		if n := sender.Acked(); n != 0 {
			t.Fatalf("acknowledged %d after %v, before the ack delay %v", n, time.Since(start), delay)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if n := sender.Acked(); n != 1 {
			t.Fatalf("acknowledged %d after the ack delay, want 1", n)
		}

		// An ack request is acknowledged as soon as it is processed.
		if _, err := sender.WriteMsg([]byte("y"), WriteOptions{AckRequest: true}); err != nil {
			t.Fatal(err)
		}
		if m := <-got; string(m.Data) != "y" || !m.AckRequest {
			t.Fatalf("received %+v", m)
		}
		synctest.Wait()
		if n := sender.Acked(); n != 2 {
			t.Fatalf("acknowledged %d without delay, want 2", n)
		}

		sender.Close()
		<-done // the receiver reads the end of the session
		receiver.Close()
		synctest.Wait()
	})
}

// TestSessionReadAcrossMessages: one Read takes as many whole messages as
// its buffer holds, and each of them counts as processed at the
// application's next call, so that all are acknowledged.
func TestSessionReadAcrossMessages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 10 * time.Millisecond
		sender, receiver := pipeSessions(SessionConfig{AckDelay: delay})
		for _, m := range []string{"ab", "cd", "ef"} {
			if _, err := sender.Write([]byte(m)); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		buf := make([]byte, 16)
		if n, err := receiver.Read(buf[:5]); err != nil || string(buf[:n]) != "abcde" {
			t.Fatalf("Read = %q, %v; want \"abcde\"", buf[:n], err)
		}
		if n, err := receiver.Read(buf); err != nil || string(buf[:n]) != "f" {
			t.Fatalf("Read = %q, %v; want \"f\"", buf[:n], err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			receiver.Read(buf) // the next call: all three are processed
		}()
		time.Sleep(delay)
		synctest.Wait()
		if n := sender.Acked(); n != 3 {
			t.Fatalf("acknowledged %d after the ack delay, want 3", n)
		}
		sender.Close()
		<-done
		receiver.Close()
		synctest.Wait()
	})
}

// TestSessionClosedAckAndCookie: Ack and SetCookie on a closed session
// fail with net.ErrClosed (they once deadlocked on the session's lock).
func TestSessionClosedAckAndCookie(t *testing.T) {
	a, b := mapping.Pipe()
	defer b.Close()
	cfg := SessionConfig{}.withDefaults()
	s := newSession(cfg, false, "p", [16]byte{1}, a.(mapping.BatchConn), Element{})
	s.Close()
	done := make(chan error, 2)
	go func() { done <- s.Ack(Message{Seq: 1}) }()
	go func() { done <- s.SetCookie([]byte("c")) }()
	for range 2 {
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("on a closed session: %v, want net.ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Ack or SetCookie on a closed session did not return")
		}
	}
}

// pipeSessions returns two started sessions with cfg at the ends of an
// in-memory mapping connection.
func pipeSessions(cfg SessionConfig) (sender, receiver *Session) {
	a, b := mapping.Pipe()
	cfg = cfg.withDefaults()
	sender = newSession(cfg, false, "p", [16]byte{1}, a.(mapping.BatchConn), Element{})
	receiver = newSession(cfg, false, "p", [16]byte{1}, b.(mapping.BatchConn), Element{})
	sender.start()
	receiver.start()
	return sender, receiver
}

// TestSessionDefaultWindow: by default a session keeps at most 1 MiB of
// DATA frames unacknowledged (DefaultMaxUnackedBytes), the replay buffer
// a bulk stream fills: with a peer that reads nothing, Write blocks after
// 31 messages of 32 KiB (before, 127 at 4 MiB) until its deadline.
func TestSessionDefaultWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sender, receiver := pipeSessions(SessionConfig{})
		msg := make([]byte, 32<<10)
		sender.SetWriteDeadline(time.Now().Add(time.Second))
		n := 0
		var err error
		for n < 1000 {
			if _, err = sender.Write(msg); err != nil {
				break
			}
			n++
		}
		if want := (1 << 20) / (len(msg) + 16); n != want || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%d Writes of %d bytes before %v; want %d before the deadline", n, len(msg), err, want)
		}
		sender.Close()
		receiver.Close()
		synctest.Wait()
	})
}
