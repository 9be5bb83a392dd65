package sctp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/rsp-go/rsp/internal/testhost"
)

// TestRcvInfoFlags reads the stream, PPID and unordered flag out of an
// SCTP_RCVINFO control message as the kernel writes it.
func TestRcvInfoFlags(t *testing.T) {
	oob := make([]byte, unix.CmsgSpace(sizeofRcvInfo))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = solSCTP, cmsgRcvInfo
	h.SetLen(unix.CmsgLen(sizeofRcvInfo))
	data := oob[unix.CmsgLen(0):]
	binary.NativeEndian.PutUint16(data[0:], 5)
	binary.NativeEndian.PutUint16(data[4:], flagUnordered)
	binary.BigEndian.PutUint32(data[8:], 0x52535031)
	info, ok := parseRcvInfo(oob)
	if !ok || info != (RcvInfo{Stream: 5, Unordered: true, PPID: 0x52535031}) {
		t.Fatalf("parseRcvInfo: %+v %v", info, ok)
	}
	binary.NativeEndian.PutUint16(data[4:], 0)
	if info, _ := parseRcvInfo(oob); info.Unordered {
		t.Fatalf("ordered message read as unordered: %+v", info)
	}
}

// TestStreamsAndUnordered sends messages on several streams, some
// unordered, singly and in batches: each arrives with its stream, PPID and
// ordering, and a stream beyond the association's is refused.
func TestStreamsAndUnordered(t *testing.T) {
	requireSCTP(t)
	a, b := pair(t, "sctp", "127.0.0.1")
	in, err := a.Info()
	if err != nil {
		t.Fatal(err)
	}
	if in.OutStreams < 4 {
		t.Fatalf("only %d outbound streams", in.OutStreams)
	}
	sent := []SndInfo{{PPID: 1, Stream: 0}, {PPID: 2, Stream: 3, Unordered: true}, {PPID: 3, Stream: 1}, {PPID: 4, Stream: 2, Unordered: true}}
	for i, s := range sent[:2] {
		if err := a.WriteMsg([]byte{byte(i)}, s); err != nil {
			t.Fatal(err)
		}
	}
	var batch []Message
	for i, s := range sent[2:] {
		batch = append(batch, Message{Buf: []byte{byte(i + 2)}, PPID: s.PPID, Stream: s.Stream, Unordered: s.Unordered})
	}
	if n, err := a.WriteBatch(batch); n != 2 || err != nil {
		t.Fatalf("WriteBatch: %d, %v", n, err)
	}
	got := map[byte]RcvInfo{}
	buf := make([]byte, 10)
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	for range 2 {
		n, info, err := b.ReadMsg(buf)
		if err != nil || n != 1 {
			t.Fatalf("ReadMsg: %d, %v", n, err)
		}
		got[buf[0]] = info
	}
	ms := []Message{{Buf: make([]byte, 10)}, {Buf: make([]byte, 10)}}
	for len(got) < len(sent) {
		n, err := b.ReadBatch(ms, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms[:n] {
			got[m.Buf[0]] = RcvInfo{PPID: m.PPID, Stream: m.Stream, Unordered: m.Unordered}
		}
	}
	for i, s := range sent {
		if want := (RcvInfo{PPID: s.PPID, Stream: s.Stream, Unordered: s.Unordered}); got[byte(i)] != want {
			t.Errorf("message %d: received %+v, want %+v", i, got[byte(i)], want)
		}
	}
	err = a.WriteMsg([]byte("x"), SndInfo{Stream: uint16(in.OutStreams)})
	if !errors.Is(err, unix.EINVAL) {
		t.Errorf("a message on stream %d of %d: %v, want EINVAL", in.OutStreams, in.OutStreams, err)
	}
}

// TestInfo reads the association's state and its path's RTO and MTU, after
// SetLiveness bounded the RTO.
func TestInfo(t *testing.T) {
	requireSCTP(t)
	a, b := pair(t, "sctp", "127.0.0.1")
	if err := a.SetLiveness(Liveness{RTOMin: 150 * time.Millisecond, RTOMax: 300 * time.Millisecond, RTOInitial: 200 * time.Millisecond, HeartbeatInterval: time.Second, PathMaxRetrans: 3, AssocMaxRetrans: 4}); err != nil {
		t.Fatal(err)
	}
	// A few round trips so that the kernel measures one.
	buf := make([]byte, 10)
	for range 3 {
		a.WriteMsg([]byte("ping"), SndInfo{PPID: 1})
		b.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := b.ReadMsg(buf); err != nil {
			t.Fatal(err)
		}
	}
	in, err := a.Info()
	if err != nil {
		t.Fatal(err)
	}
	peer := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(b.LocalAddr().(*Addr).Port))
	if in.State != AssocEstablished || in.OutStreams == 0 || in.InStreams == 0 || in.FragmentationPoint == 0 {
		t.Errorf("Info: %+v", in)
	}
	if len(in.Paths) != 1 || in.Paths[0].Addr != peer || in.Primary.Addr != peer {
		t.Errorf("paths %+v, primary %v; want one to %v", in.Paths, in.Primary.Addr, peer)
	}
	p := in.Primary
	if p.RTO < 150*time.Millisecond || p.RTO > 300*time.Millisecond {
		t.Errorf("RTO %v, want within the bounds set, 150 ms to 300 ms", p.RTO)
	}
	if p.MTU < 1280 || p.State != PathActive || p.Cwnd == 0 || p.SRTT > 100*time.Millisecond {
		t.Errorf("primary path %+v: want an MTU, an active state, a window and a loopback round trip", p)
	}
	if err := a.SetLiveness(Liveness{RTOMin: time.Second, RTOMax: 100 * time.Millisecond}); err == nil {
		t.Error("SetLiveness with RTOMin over RTOMax: no error")
	}
}

// TestLivenessDetectsSilentPeer black-holes the loopback interface under
// idle associations with fast heartbeats, set at dial and listen time or
// on the established association: each fails within a few heartbeat
// intervals, and a blocked read returns the error. With the kernel's
// defaults it would take minutes.
func TestLivenessDetectsSilentPeer(t *testing.T) {
	requireSCTP(t)
	if ok, why := testhost.Available(); !ok {
		t.Skip(why)
	}
	const hb = 200 * time.Millisecond
	l := Liveness{HeartbeatInterval: hb, PathMaxRetrans: 2, AssocMaxRetrans: 2, RTOMin: 50 * time.Millisecond, RTOMax: 100 * time.Millisecond, RTOInitial: 100 * time.Millisecond}
	t.Run("Config", func(t *testing.T) {
		a, _ := pairConfig(t, Config{Liveness: l}, "sctp", "127.0.0.1")
		testSilentPeer(t, a, l)
	})
	t.Run("SetLiveness", func(t *testing.T) {
		a, b := pair(t, "sctp", "127.0.0.1")
		if err := a.SetLiveness(l); err != nil {
			t.Fatal(err)
		}
		testSilentPeer(t, a, l)
		b.Close()
	})
}

func testSilentPeer(t *testing.T, a *Conn, l Liveness) {
	time.Sleep(2 * l.HeartbeatInterval) // heartbeats on the new interval
	if in, err := a.Info(); err != nil || in.Primary.RTO > l.RTOMax {
		t.Fatalf("before the black hole: %+v, %v; want an RTO within %v", in.Primary, err, l.RTOMax)
	}
	restore := testhost.BlackholeLoopback(t)
	start := time.Now()
	a.SetReadDeadline(start.Add(20 * time.Second))
	_, _, err := a.ReadMsg(make([]byte, 10))
	took := time.Since(start)
	restore()
	if errors.Is(err, os.ErrDeadlineExceeded) || err == nil {
		t.Fatalf("the association to a silent peer is still up after %v (%v)", took, err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) {
		t.Errorf("error %T %v, want a *net.OpError", err, err)
	}
	// AssocMaxRetrans+1 unanswered heartbeats after the one under way,
	// each an interval plus an RTO and the kernel's jitter of up to half
	// an RTO.
	if limit := livenessBound(l); took > limit {
		t.Errorf("silent peer detected after %v, want within %v", took, limit)
	}
	t.Logf("silent peer detected after %v: %v", took, err)
	if err := a.WriteMsg(bytes.Repeat([]byte("x"), 10), SndInfo{}); err == nil {
		t.Error("a write on the failed association succeeded")
	}
}

// livenessBound is how long an association with l may take to notice a
// silent peer: AssocMaxRetrans+1 unanswered heartbeats after the one under
// way, each an interval plus an RTO and the kernel's jitter of up to half
// an RTO, rounded up.
func livenessBound(l Liveness) time.Duration {
	return time.Duration(l.AssocMaxRetrans+2) * (l.HeartbeatInterval + 2*l.RTOMax)
}

// TestAdaptationIndication: a dialer learns the adaptation layer
// indication of a listener that sends one, and that a listener without one
// sent none; data the peer sends at once is not lost.
func TestAdaptationIndication(t *testing.T) {
	requireSCTP(t)
	for _, tc := range []struct {
		listen, dial uint32
	}{{0x52535031, 0}, {0x52535031, 7}, {0, 7}, {0, 0}} {
		laddr := &Addr{IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}
		l, err := Config{Adaptation: tc.listen}.Listen("sctp", laddr)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := l.Accept()
			if err == nil {
				c.WriteMsg([]byte("first"), SndInfo{PPID: 9})
				time.Sleep(100 * time.Millisecond)
				c.Close()
			}
		}()
		c, err := Config{Adaptation: tc.dial}.Dial(context.Background(), "sctp", &Addr{IPs: laddr.IPs, Port: l.Addr().(*Addr).Port}, nil)
		defer l.Close()
		if err != nil {
			t.Fatal(err)
		}
		ind, ok := c.PeerAdaptation()
		if ok != (tc.listen != 0) || ind != tc.listen {
			t.Errorf("listener %#x, dialer %#x: PeerAdaptation %#x %v", tc.listen, tc.dial, ind, ok)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 10)
		if n, info, err := c.ReadMsg(buf); err != nil || string(buf[:n]) != "first" || info.PPID != 9 {
			t.Errorf("first message: %q %+v %v", buf[:n], info, err)
		}
		c.Close()
	}
}
