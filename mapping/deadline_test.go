package mapping

import (
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// pipePair returns two ends of an in-memory message connection with cfg's
// heartbeats, for tests on fake time.
func pipePair(t *testing.T, cfg Config) (*TCPConn, *TCPConn) {
	t.Helper()
	x, y := net.Pipe()
	a, b := NewTCPConn(x, cfg), NewTCPConn(y, cfg)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// readAll reads messages from c until it fails and sends the error.
func readAll(c *TCPConn, msgs chan<- []byte, errs chan<- error) {
	buf := make([]byte, 64)
	for {
		n, _, err := c.ReadMsg(buf)
		if err != nil {
			errs <- err
			return
		}
		if msgs != nil {
			msgs <- append([]byte(nil), buf[:n]...)
		}
	}
}

// A writer's deadline that has passed fails its own later writes only, never
// the heartbeats, which the connection bounds itself: an idle connection
// whose peer answers every heartbeat stays up for as long as it is idle.
func TestStaleWriteDeadlineSparesHeartbeats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{HeartbeatInterval: 5 * time.Second, HeartbeatTimeout: 5 * time.Second}
		a, b := pipePair(t, cfg)
		errs := make(chan error, 2)
		msgs := make(chan []byte, 4)
		go readAll(a, nil, errs)
		go readAll(b, msgs, errs)

		// The registrar's pattern: a deadline a few seconds ahead for
		// each answer, then silence.
		a.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if err := a.WriteMsg([]byte("answer"), PPIDASAP); err != nil {
			t.Fatal(err)
		}
		<-msgs
		time.Sleep(10 * time.Minute)
		select {
		case err := <-errs:
			t.Fatalf("idle connection failed: %v", err)
		default:
		}

		// The stale deadline still fails the writer's own writes ...
		err := a.WriteMsg([]byte("late"), PPIDASAP)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("write after its deadline: %v, want os.ErrDeadlineExceeded", err)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("write after its deadline: %v is not a net.Error timeout", err)
		}
		// ... which leaves the stream intact: a new deadline lets them
		// through.
		a.SetWriteDeadline(time.Time{})
		if err := a.WriteMsg([]byte("again"), PPIDASAP); err != nil {
			t.Fatalf("write after clearing the deadline: %v", err)
		}
		if got := string(<-msgs); got != "again" {
			t.Fatalf("got %q, want %q", got, "again")
		}
	})
}

// A deadline set while a write is blocked applies to that write at once, as
// with net.Conn.
func TestWriteDeadlineInterruptsBlockedWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, _ := pipePair(t, Config{HeartbeatInterval: -1})
		done := make(chan error, 1)
		go func() { done <- a.WriteMsg([]byte("nobody reads"), PPIDASAP) }()
		synctest.Wait()
		a.SetWriteDeadline(time.Now().Add(time.Second))
		start := time.Now()
		err := <-done
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("blocked write: %v, want os.ErrDeadlineExceeded", err)
		}
		if took := time.Since(start); took != time.Second {
			t.Fatalf("blocked write failed after %v, want 1s", took)
		}
	})
}

// A peer that stops reading fails a heartbeat within the heartbeat's own
// bound, whatever the writer's deadline, and ends the connection.
func TestHeartbeatWriteBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{HeartbeatInterval: 5 * time.Second, HeartbeatTimeout: 5 * time.Second}
		a, _ := pipePair(t, cfg) // the other end never reads
		errs := make(chan error, 1)
		go readAll(a, nil, errs)
		start := time.Now()
		err := <-errs
		if took := time.Since(start); took > 11*time.Second {
			t.Fatalf("connection to a peer that does not read failed after %v", took)
		}
		if err == nil {
			t.Fatal("no error")
		}
	})
}

// trickle writes a data frame of n payload bytes to w, the header at once
// and then one byte every gap; it stops at the first failed write.
func trickle(w net.Conn, n int, gap time.Duration) {
	hdr := AppendFrameHeader(nil, FrameHeader{Type: FrameData, Length: uint32(n), Tag: PPIDASAP})
	if _, err := w.Write(hdr[:5]); err != nil {
		return
	}
	rest := append(hdr[5:], make([]byte, n)...)
	for i := range rest {
		time.Sleep(gap)
		if _, err := w.Write(rest[i : i+1]); err != nil {
			return
		}
	}
}

// A frame must arrive whole within FrameTimeout of its first byte: a peer
// that trickles one byte a second fails the connection with
// ErrFrameTimeout, although it is never silent for a heartbeat's time.
func TestFrameTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x, y := net.Pipe()
		c := NewTCPConn(x, Config{FrameTimeout: 10 * time.Second})
		defer c.Close()
		var wg sync.WaitGroup
		defer wg.Wait()
		defer y.Close()
		wg.Go(func() { trickle(y, 100, time.Second) })
		start := time.Now()
		_, _, err := c.ReadMsg(make([]byte, 200))
		if !errors.Is(err, ErrFrameTimeout) {
			t.Fatalf("trickled frame: %v, want ErrFrameTimeout", err)
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "read" {
			t.Fatalf("trickled frame: %v is not a read *net.OpError", err)
		}
		if took := time.Since(start); took != 10*time.Second {
			t.Fatalf("trickled frame failed after %v, want 10s", took)
		}
		if _, _, err := c.ReadMsg(make([]byte, 200)); err == nil {
			t.Fatal("connection usable after a frame timeout")
		}
	})
}

// The frame timeout leaves the read deadline its meaning: a deadline in
// the middle of a frame fails that read only, and the frame completes
// later; a frame that arrives within its bound is read; waiting for the
// first byte of a frame is not bounded by it; SetFrameTimeout changes it.
func TestFrameTimeoutAndReadDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x, y := net.Pipe()
		c := NewTCPConn(x, Config{FrameTimeout: 15 * time.Second, HeartbeatInterval: -1})
		defer c.Close()
		var wg sync.WaitGroup
		defer wg.Wait()
		defer y.Close()
		wg.Go(func() {
			time.Sleep(time.Minute) // idle before the frame: not bounded
			trickle(y, 5, time.Second)
		})
		buf := make([]byte, 10)
		c.SetReadDeadline(time.Now().Add(time.Minute + 2*time.Second))
		if _, _, err := c.ReadMsg(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read deadline mid-frame: %v, want os.ErrDeadlineExceeded", err)
		}
		c.SetReadDeadline(time.Time{})
		n, ppid, err := c.ReadMsg(buf)
		if err != nil || n != 5 || ppid != PPIDASAP {
			t.Fatalf("frame of 12 s: %d %d %v", n, ppid, err)
		}

		c.SetFrameTimeout(2 * time.Second)
		wg.Go(func() { trickle(y, 5, time.Second) })
		if _, _, err := c.ReadMsg(buf); !errors.Is(err, ErrFrameTimeout) {
			t.Fatalf("after SetFrameTimeout(2s): %v, want ErrFrameTimeout", err)
		}
	})
}

// A silent peer fails the connection at HeartbeatInterval +
// HeartbeatTimeout of silence, not up to a check period later: with an
// interval of 1 s and a timeout of 1.2 s, a check every half interval
// would notice it only at 2.5 s.
func TestSilentPeerFailsOnTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{HeartbeatInterval: time.Second, HeartbeatTimeout: 1200 * time.Millisecond}
		x, y := net.Pipe()
		defer y.Close()
		go func() { // reads everything, answers nothing
			buf := make([]byte, 256)
			for {
				if _, err := y.Read(buf); err != nil {
					return
				}
			}
		}()
		start := time.Now()
		c := NewTCPConn(x, cfg)
		defer c.Close()
		// (Over net.Pipe the read fails with the pipe's own error once the
		// connection closes the pipe; over a socket it is ErrPeerTimeout,
		// TestHeartbeats.)
		if _, _, err := c.ReadMsg(make([]byte, 64)); err == nil {
			t.Fatal("silent peer: no error")
		}
		if took, want := time.Since(start), cfg.HeartbeatInterval+cfg.HeartbeatTimeout; took != want {
			t.Fatalf("silent peer noticed after %v, want %v", took, want)
		}
	})
}
