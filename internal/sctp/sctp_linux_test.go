package sctp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/net/nettest"
	"golang.org/x/sys/unix"

	"github.com/rsp-go/rsp/internal/testhost"
)

func requireSCTP(t testing.TB) {
	t.Helper()
	if !Supported() {
		t.Skip("the kernel has no SCTP; run the SCTP tests inside User-mode Linux with .ci/uml/test-sctp")
	}
}

func pair(t *testing.T, network, host string) (*Conn, *Conn) {
	t.Helper()
	return pairConfig(t, Config{}, network, host)
}

// pairConfig is pair with both ends made with cfg.
func pairConfig(t *testing.T, cfg Config, network, host string) (*Conn, *Conn) {
	t.Helper()
	laddr, err := ResolveAddr(network, net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := cfg.Listen(network, laddr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan *Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	raddr := &Addr{IPs: []netip.Addr{netip.MustParseAddr(host)}, Port: l.Addr().(*Addr).Port}
	a, err := cfg.Dial(context.Background(), network, raddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := <-accepted
	if b == nil {
		t.FailNow()
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestMessagesAndPPIDs(t *testing.T) {
	requireSCTP(t)
	for _, host := range []string{"127.0.0.1", "::1"} {
		a, b := pair(t, "sctp", host)
		sizes := []int{1, 100, 1500, 9000, 65536}
		werr := make(chan error, 1)
		go func() {
			for i, n := range sizes {
				if err := a.WriteMsg(bytes.Repeat([]byte{byte(i + 1)}, n), SndInfo{PPID: uint32(11 + i)}); err != nil {
					werr <- err
					return
				}
			}
			werr <- nil
		}()
		buf := make([]byte, 1<<20)
		for i, n := range sizes {
			b.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, info, err := b.ReadMsg(buf)
			if err != nil {
				t.Fatal(err)
			}
			if got != n || info.PPID != uint32(11+i) || buf[0] != byte(i+1) || buf[got-1] != byte(i+1) {
				t.Fatalf("%s message %d: %d bytes PPID %d, want %d bytes PPID %d", host, i, got, info.PPID, n, 11+i)
			}
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
	}
}

func TestMessageTooLongKeepsAssociation(t *testing.T) {
	requireSCTP(t)
	a, b := pair(t, "sctp", "127.0.0.1")
	a.WriteMsg(make([]byte, 10000), SndInfo{PPID: 1})
	a.WriteMsg([]byte("next"), SndInfo{PPID: 2})
	buf := make([]byte, 100)
	if _, _, err := b.ReadMsg(buf); !errors.Is(err, ErrMessageTooLong) {
		t.Fatalf("got %v, want ErrMessageTooLong", err)
	}
	n, info, err := b.ReadMsg(buf)
	if err != nil || string(buf[:n]) != "next" || info.PPID != 2 {
		t.Fatalf("after a too long message: %q %d %v", buf[:n], info.PPID, err)
	}
}

func TestDeadlinesAndClose(t *testing.T) {
	requireSCTP(t)
	a, b := pair(t, "sctp", "127.0.0.1")
	b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, _, err := b.ReadMsg(make([]byte, 10))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past deadline: %v", err)
	}
	b.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, _, err := b.ReadMsg(make([]byte, 10))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	b.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("blocked read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not unblock a reader")
	}
	a.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, _, err := a.ReadMsg(make([]byte, 10)); err != io.EOF {
		t.Fatalf("read after peer close: %v, want io.EOF", err)
	}
}

func TestPeerAddrsAndDialRefused(t *testing.T) {
	requireSCTP(t)
	a, _ := pair(t, "sctp", "127.0.0.1")
	addrs, err := a.PeerAddrs()
	if err != nil || len(addrs) == 0 || addrs[0] != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("peer addresses %v, %v", addrs, err)
	}
	l, _ := Listen("sctp", &Addr{IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})
	port := l.Addr().(*Addr).Port
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := Dial(ctx, "sctp", &Addr{IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Port: port}, nil); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
}

func TestNetConn(t *testing.T) {
	requireSCTP(t)
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		laddr := &Addr{IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}
		l, err := Listen("sctp", laddr)
		if err != nil {
			return nil, nil, nil, err
		}
		defer l.Close()
		accepted := make(chan *Conn, 1)
		go func() {
			c, _ := l.Accept()
			accepted <- c
		}()
		a, err := Dial(context.Background(), "sctp", &Addr{IPs: laddr.IPs, Port: l.Addr().(*Addr).Port}, nil)
		if err != nil {
			return nil, nil, nil, err
		}
		b := <-accepted
		return a, b, func() { a.Close(); b.Close() }, nil
	})
}

// TestDialFullBacklog dials a listener that accepts nothing, so that its
// accept backlog fills and it aborts further associations while they are
// set up. Every dial must either return an established association, which
// takes a write, or fail with ECONNREFUSED; none may return an association
// that is not up or already gone. With a delay on loopback (on the test
// host), the aborts come after connect has returned.
func TestDialFullBacklog(t *testing.T) {
	requireSCTP(t)
	t.Run("loopback", testDialFullBacklog)
	t.Run("delayed", func(t *testing.T) {
		testhost.DelayLoopback(t, 20*time.Millisecond)
		testDialFullBacklog(t)
	})
}

func testDialFullBacklog(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	fd, err := socket(unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := bind(fd, unix.AF_INET, &Addr{IPs: []netip.Addr{lo}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 1); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	raddr := &Addr{IPs: []netip.Addr{lo}, Port: portOf(sa)}
	type result struct {
		c   *Conn
		err error
	}
	results := make(chan result)
	const dials = 16
	for range dials {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := Dial(ctx, "sctp", raddr, nil)
			results <- result{c, err}
		}()
	}
	var established, refused int
	for range dials {
		r := <-results
		if r.err != nil {
			if !errors.Is(r.err, unix.ECONNREFUSED) {
				t.Errorf("dial: %v, want ECONNREFUSED", r.err)
			}
			refused++
			continue
		}
		established++
		if _, err := r.c.Write([]byte("hello")); err != nil {
			t.Errorf("write on a dialed association: %v", err)
		}
		defer r.c.Close()
	}
	t.Logf("%d established, %d refused", established, refused)
	if established == 0 || refused == 0 {
		t.Fatalf("%d associations established, %d refused; want some of each", established, refused)
	}
}

// TestDialWaitsForEstablishment checks that a dial returns only once the
// four-way handshake is done, as a TCP dial returns after its handshake:
// with 20 ms on every packet that is at least 80 ms, and the first write
// succeeds at once.
func TestDialWaitsForEstablishment(t *testing.T) {
	requireSCTP(t)
	testhost.DelayLoopback(t, 20*time.Millisecond)
	laddr := &Addr{IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}
	l, err := Listen("sctp", laddr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan *Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	start := time.Now()
	a, err := Dial(context.Background(), "sctp", &Addr{IPs: laddr.IPs, Port: l.Addr().(*Addr).Port}, nil)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if took < 80*time.Millisecond {
		t.Errorf("dial returned after %v, before the handshake could be done", took)
	}
	if _, err := a.Write([]byte("first")); err != nil {
		t.Fatalf("first write: %v", err)
	}
	b := <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	defer b.Close()
	buf := make([]byte, 16)
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := b.Read(buf); err != nil || string(buf[:n]) != "first" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}

	// A dial given up while the handshake is under way returns the
	// context's error.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := Dial(ctx, "sctp", &Addr{IPs: laddr.IPs, Port: l.Addr().(*Addr).Port}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial with a 30 ms deadline: %v, want context.DeadlineExceeded", err)
	}
}

func TestBatch(t *testing.T) {
	requireSCTP(t)
	a, b := pair(t, "sctp", "127.0.0.1")
	var out []Message
	for i := range 12 {
		size := 10 + i
		switch i {
		case 5:
			size = 5000 // longer than the reader's buffers, within the limit
		case 6:
			size = 9000 // over the limit
		}
		out = append(out, Message{Buf: bytes.Repeat([]byte{byte('a' + i)}, size), PPID: uint32(100 + i), Stream: 0})
	}
	if n, err := a.WriteBatch(out); n != len(out) || err != nil {
		t.Fatalf("WriteBatch: %d, %v", n, err)
	}
	in := make([]Message, 4)
	for i := range in {
		in[i].Buf = make([]byte, 1000)
	}
	var got []Message
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < len(out) {
		n, err := b.ReadBatch(in, 8000)
		if err != nil {
			t.Fatalf("ReadBatch after %d messages: %v", len(got), err)
		}
		for _, m := range in[:n] {
			m.Buf = bytes.Clone(m.Buf[:m.N])
			got = append(got, m)
		}
	}
	for i, m := range got {
		if i == 6 {
			if !errors.Is(m.Err, ErrMessageTooLong) {
				t.Errorf("message 6: err %v, want ErrMessageTooLong", m.Err)
			}
			continue
		}
		if m.Err != nil || !bytes.Equal(m.Buf, out[i].Buf) || m.PPID != out[i].PPID {
			t.Errorf("message %d: %q ppid %d err %v, want %q ppid %d", i, m.Buf, m.PPID, m.Err, out[i].Buf, out[i].PPID)
		}
	}
	// The association still works with single reads, and a batch read
	// ends with io.EOF when the peer closes.
	a.WriteMsg([]byte("single"), SndInfo{PPID: 7})
	if n, info, err := b.ReadMsg(in[0].Buf); err != nil || string(in[0].Buf[:n]) != "single" || info.PPID != 7 {
		t.Fatalf("ReadMsg after batches: %q %+v %v", in[0].Buf[:n], info, err)
	}
	a.Close()
	if n, err := b.ReadBatch(in, 8000); n != 0 || err != io.EOF {
		t.Fatalf("ReadBatch after the peer closed: %d, %v; want 0, io.EOF", n, err)
	}
}

// TestListenBacklog dials a listener that has not accepted yet more times
// than a fixed backlog of 128 would hold: every association is set up.
func TestListenBacklog(t *testing.T) {
	requireSCTP(t)
	if listenBacklog() < 256 {
		t.Skipf("the system's accept backlog limit is %d", listenBacklog())
	}
	laddr := &Addr{IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}
	l, err := Listen("sctp", laddr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	raddr := &Addr{IPs: laddr.IPs, Port: l.Addr().(*Addr).Port}
	const dials = 160
	errs := make(chan error)
	for range dials {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := Dial(ctx, "sctp", raddr, nil)
			if err == nil {
				t.Cleanup(func() { c.Close() })
			}
			errs <- err
		}()
	}
	established := 0
	for range dials {
		if err := <-errs; err != nil {
			t.Errorf("dial: %v", err)
		} else {
			established++
		}
	}
	for range established {
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}

// TestWriteBatchNowStopsAtFullBuffer: WriteBatchNow sends what the socket
// takes without waiting, whole messages in order, and reports a full
// buffer by a short count without an error; the messages it sent arrive
// in order once the peer reads.
func TestWriteBatchNowStopsAtFullBuffer(t *testing.T) {
	requireSCTP(t)
	a, b := pair(t, "sctp4", "127.0.0.1")
	defer a.Close()
	defer b.Close()
	msg := make([]byte, 16<<10)
	batch := make([]Message, 16)
	for i := range batch {
		batch[i] = Message{Buf: msg, PPID: 12}
	}
	sent := 0
	start := time.Now()
	for {
		n, err := a.WriteBatchNow(batch)
		if err != nil {
			t.Fatalf("WriteBatchNow after %d messages: %v", sent, err)
		}
		sent += n
		if n < len(batch) {
			break
		}
		if sent > 1<<16 {
			t.Fatalf("WriteBatchNow took %d messages of 16 KiB that nobody reads", sent)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("WriteBatchNow took %v to fill the buffer; it should not wait", d)
	}
	if n, err := a.WriteBatchNow(batch[:1]); n != 0 || err != nil {
		t.Fatalf("WriteBatchNow on a full buffer: %d, %v; want 0, nil", n, err)
	}
	buf := make([]byte, 32<<10)
	for i := range sent {
		b.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, info, err := b.ReadMsg(buf)
		if err != nil || n != len(msg) || info.PPID != 12 {
			t.Fatalf("message %d of %d: %d bytes, PPID %d, %v; want %d bytes, PPID 12", i, sent, n, info.PPID, err, len(msg))
		}
	}
}
