package mapping

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/rsp-go/rsp/internal/testhost"
)

func requireSCTP(t *testing.T) {
	t.Helper()
	if !SCTPSupported() {
		t.Skip("the kernel has no SCTP; run the SCTP tests inside User-mode Linux with .ci/uml/test-sctp")
	}
}

// sctpPair dials an SCTP listener made with cfg and returns both ends.
func sctpPair(t *testing.T, cfg Config) (*SCTPConn, *SCTPConn) {
	t.Helper()
	lc := ListenConfig{Config: cfg}
	l, err := lc.Listen(context.Background(), "sctp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	d := Dialer{Config: cfg}
	a, err := d.DialContext(context.Background(), "sctp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-accepted
	if b == nil {
		t.FailNow()
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*SCTPConn), b.(*SCTPConn)
}

// TestSCTPMsgInfo: streams, unordered delivery and PPIDs go through the
// mapping's SCTP connections, and Info reports the path.
func TestSCTPMsgInfo(t *testing.T) {
	requireSCTP(t)
	a, b := sctpPair(t, Config{SCTPAdaptation: 0x52535031})
	if ind, ok := a.PeerAdaptation(); !ok || ind != 0x52535031 {
		t.Errorf("PeerAdaptation: %#x %v, want the listener's 0x52535031", ind, ok)
	}
	sent := []MsgInfo{{PPID: 11}, {PPID: 0x52535031, Stream: 2, Unordered: true}, {PPID: 3, Stream: 1}}
	for i, info := range sent {
		if err := WriteMsgInfo(a, []byte{byte(i)}, info); err != nil {
			t.Fatal(err)
		}
	}
	got := map[byte]MsgInfo{}
	buf := make([]byte, 4)
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	for range sent {
		n, info, err := ReadMsgInfo(b, buf)
		if err != nil || n != 1 {
			t.Fatalf("ReadMsgInfo: %d %v", n, err)
		}
		got[buf[0]] = info
	}
	for i, info := range sent {
		if got[byte(i)] != info {
			t.Errorf("message %d: %+v, want %+v", i, got[byte(i)], info)
		}
	}
	a.WriteMsg(make([]byte, 100), 1)
	if _, _, err := b.ReadMsgInfo(buf); !errors.Is(err, ErrMessageTooLong) {
		t.Errorf("a message longer than the buffer: %v, want ErrMessageTooLong", err)
	}
	in, err := a.Info()
	if err != nil || in.OutStreams == 0 || len(in.Paths) != 1 || in.Primary.RTO == 0 || in.Primary.MTU == 0 {
		t.Errorf("Info: %+v, %v", in, err)
	}
}

// TestSCTPLiveness: associations dialed and accepted with Config's
// SCTPLiveness notice a silent peer within a few heartbeats.
func TestSCTPLiveness(t *testing.T) {
	requireSCTP(t)
	if ok, why := testhost.Available(); !ok {
		t.Skip(why)
	}
	cfg := Config{SCTPLiveness: SCTPLiveness{HeartbeatInterval: 200 * time.Millisecond, PathMaxRetrans: 2, AssocMaxRetrans: 2,
		RTOMin: 50 * time.Millisecond, RTOMax: 100 * time.Millisecond, RTOInitial: 100 * time.Millisecond}}
	a, b := sctpPair(t, cfg)
	testhost.BlackholeLoopback(t)
	start := time.Now()
	errs := make(chan error, 2)
	for _, c := range []Conn{a, b} {
		go func() {
			c.SetReadDeadline(start.Add(10 * time.Second))
			_, _, err := c.ReadMsg(make([]byte, 10))
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("after %v: %v; want the association failed", time.Since(start), err)
		}
	}
	// AssocMaxRetrans+1 unanswered heartbeats after the one under way,
	// each an interval, an RTO and the kernel's jitter.
	l := cfg.SCTPLiveness
	if took, limit := time.Since(start), time.Duration(l.AssocMaxRetrans+2)*(l.HeartbeatInterval+2*l.RTOMax); took > limit {
		t.Errorf("both ends noticed the silent peer after %v, want within %v", took, limit)
	}
}

// TestSCTPBatchMsgInfo: batches carry streams and unordered delivery over
// SCTP, through the association's own batches and through Batched's
// one-at-a-time adapter.
func TestSCTPBatchMsgInfo(t *testing.T) {
	requireSCTP(t)
	a, b := sctpPair(t, Config{})
	type plain struct{ MsgInfoConn } // streams, but no batches of its own
	for _, w := range []BatchConn{a, Batched(plain{a})} {
		out := []Msg{{Buf: []byte{1}, PPID: 5, Stream: 1}, {Buf: []byte{2}, PPID: 6, Stream: 3, Unordered: true}}
		if n, err := w.WriteBatch(out); n != 2 || err != nil {
			t.Fatalf("%T WriteBatch: %d, %v", w, n, err)
		}
		got := map[byte]Msg{}
		in := []Msg{{Buf: make([]byte, 8)}, {Buf: make([]byte, 8)}}
		b.SetReadDeadline(time.Now().Add(5 * time.Second))
		for len(got) < 2 {
			n, err := Batched(plain{b}).ReadBatch(in, 8)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range in[:n] {
				got[m.Buf[0]] = m
			}
		}
		for _, o := range out {
			g := got[o.Buf[0]]
			if g.PPID != o.PPID || g.Stream != o.Stream || g.Unordered != o.Unordered {
				t.Errorf("%T: message %d came as ppid %d stream %d unordered %v", w, o.Buf[0], g.PPID, g.Stream, g.Unordered)
			}
		}
	}
}
