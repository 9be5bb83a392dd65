package rsp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/ulpack"
)

// TestSessionFailoverToSmallerLimit: the session's element takes messages
// of 2 MiB and dies on one of 1.5 MiB before acknowledging it; the only
// other element takes 1 MiB, as its HELLO_ACK says. The session fails at
// once with an error that wraps ErrMessageTooLong, rather than replay the
// message to an element that would close the connection on it (and then
// go round the pool's elements): nothing is replayed, no failover is
// indicated, the element is not reported.
func TestSessionFailoverToSmallerLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet(t)
		defer n.close()
		big := n.startElement("p", SessionConfig{Stateless: true, MaxMessageSize: 2 << 20, MaxUnackedBytes: 4 << 20}, nil)
		big.hold = func(_ *Session, m Message) {
			if len(m.Data) > 1<<20 {
				n.crash(big)
			}
		}
		n.waitPool("p", 1)
		d, stop := n.dialer(SessionConfig{MaxMessageSize: 2 << 20, MaxUnackedBytes: 4 << 20})
		s := n.dialSession(d, "p")
		if got := s.MaxMessageSize(); got != 2<<20 {
			t.Errorf("MaxMessageSize() = %d with the first element, want 2 MiB", got)
		}
		small := n.startElement("p", SessionConfig{Stateless: true}, nil)
		n.waitPool("p", 2)
		if _, err := s.WriteMsg([]byte("e"+strings.Repeat("x", 1<<10)), WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.WriteMsg(make([]byte, 1536<<10), WriteOptions{AckRequest: true}); err != nil {
			t.Fatal(err)
		}
		m, err := s.ReadMsg() // the echo of the first message
		if err != nil || len(m.Data) != 1<<10+1 {
			t.Fatalf("ReadMsg: %d bytes, %v; want the echo", len(m.Data), err)
		}
		start := time.Now()
		_, err = s.ReadMsg()
		if !errors.Is(err, ErrMessageTooLong) || !strings.Contains(err.Error(), "over the limit of 1048576 bytes of pool element") {
			t.Errorf("ReadMsg: %v, want the replay over the new element's limit (ErrMessageTooLong)", err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("the session failed %v after the loss, want at once", took)
		}
		if got := s.Failovers(); got != 0 {
			t.Errorf("%d failovers, want none", got)
		}
		if got := n.dataFrames(small); len(got) != 0 {
			t.Errorf("the element with the smaller limit read %d DATA frames, want none", len(got))
		}
		ml := n.listener(small.l)
		n.mu.Lock()
		conns := len(ml.accepted)
		n.mu.Unlock()
		if conns != 1 {
			t.Errorf("the element with the smaller limit accepted %d connections, want 1", conns)
		}
		time.Sleep(time.Second) // the report goes in a goroutine of its own
		if got, want := n.reportedUnreachable(), []asap.PEID{big.l.ID()}; !cmp.Equal(got, want) {
			t.Errorf("reported unreachable %v, want only the lost element %v", got, want)
		}
		s.Close()
		stop()
		big.stop()
		small.stop()
	})
}

// oldSessionPrefix is how a session starts over TCP for an element that
// predates the limits in the handshake: its listener takes a connection as
// a session only if it starts with the TCP mapping's header of a data
// frame of 36 bytes on the session's tag, then the type HELLO.
var oldSessionPrefix = []byte{0x01, 0, 0, 0, 0, 0, 0, 0x24, 0x52, 0x53, 0x50, 0x31, 0x01}

// TestSessionOldElement: a pool user opens a session with an element that
// predates the limits in the handshake. Its HELLO is what such an element
// recognises (36 bytes, over the TCP mapping the same first bytes as
// before) and carries the user's limit where the element ignores it; the
// element's HELLO_ACK of 36 bytes announces none, so the session holds
// messages to its own limit only, as before.
func TestSessionOldElement(t *testing.T) {
	cfg := SessionConfig{MaxMessageSize: 300 << 10, HeartbeatInterval: time.Hour}
	x, y := memPipe()
	d := &Dialer{Session: cfg}
	type result struct {
		s   *Session
		err error
	}
	opened := make(chan result, 1)
	go func() {
		c, err := d.openSession(context.Background(), "p", asap.PoolElement{ID: 1}, mapping.NewTCPConn(x, cfg.withDefaults().mappingConfig()))
		s, _ := c.(*Session)
		opened <- result{s, err}
	}()
	defer func() {
		y.Close()
		if r := <-opened; r.s != nil {
			r.s.Close()
		}
	}()
	y.SetDeadline(time.Now().Add(10 * time.Second))
	prefix := make([]byte, len(oldSessionPrefix))
	if _, err := io.ReadFull(y, prefix); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(prefix, oldSessionPrefix) || !bytes.Equal(prefix, helloPrefix()) {
		t.Fatalf("the session starts with % x, want % x (what older elements recognise)", prefix, oldSessionPrefix)
	}
	el := mapping.NewTCPConn(&prefixConn{Conn: y, prefix: prefix}, mapping.Config{MaxMessageSize: 1 << 20})
	buf := make([]byte, 1<<20)
	k, _, err := el.ReadMsg(buf)
	if err != nil {
		t.Fatal(err)
	}
	f, err := ulpack.ParseFrame(buf[:k])
	hello, ok := f.(*ulpack.Hello)
	if err != nil || !ok || k != ulpack.HelloLen {
		t.Fatalf("first message %d bytes, %v, %v; want a HELLO of %d bytes", k, f, err, ulpack.HelloLen)
	}
	if hello.MaxMessageSize != 300<<10 {
		t.Errorf("HELLO announces MaxMessageSize %d, want 300 KiB", hello.MaxMessageSize)
	}
	ack, _ := ulpack.HelloAck{Stateless: true, Window: 64, ID: hello.ID}.AppendBinary(nil)
	if len(ack) != ulpack.HelloLen {
		t.Fatalf("a HELLO_ACK without a limit is %d bytes, want the %d older elements send", len(ack), ulpack.HelloLen)
	}
	if err := el.WriteMsg(ack, ulpack.PPID); err != nil {
		t.Fatal(err)
	}
	r := <-opened
	opened <- r // for the deferred Close
	if r.err != nil {
		t.Fatal(r.err)
	}
	s := r.s
	if got := s.MaxMessageSize(); got != 300<<10 {
		t.Errorf("MaxMessageSize() = %d with an element that announces none, want the session's own 300 KiB", got)
	}
	if _, err := s.WriteMsg(make([]byte, 300<<10), WriteOptions{}); err != nil {
		t.Fatalf("WriteMsg at the session's own limit: %v", err)
	}
	k, _, err = el.ReadMsg(buf)
	if err != nil {
		t.Fatal(err)
	}
	if data, err := ulpack.ParseData(buf[:k]); err != nil || len(data.Payload) != 300<<10 {
		t.Errorf("the element read %d bytes (%v), want a DATA frame of 300 KiB", k, err)
	}
}

// TestSessionElementLimits: an element announces its MaxMessageSize in
// its HELLO_ACK, in the 4 bytes a pool user that predates them ignores
// (its first 36 bytes are the HELLO_ACK it knew), and holds its own
// messages to the pool user's limit where the HELLO announces one: a
// WriteMsg over it fails with ErrMessageTooLong, a Write goes in messages
// within it. A HELLO without a limit (a user that predates it) leaves the
// element's messages to its own limit, as before.
func TestSessionElementLimits(t *testing.T) {
	for _, c := range []struct {
		name     string
		announce uint32 // the pool user's HELLO
		limit    int    // the element's messages
	}{
		{"user that announces no limit", 0, 200 << 10},
		{"user with a smaller limit", 64 << 10, 64 << 10},
		{"user with a larger limit", 1 << 20, 200 << 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := newMemNet(t)
				defer n.close()
				lc := ListenConfig{Endpoint: n.endpoint(), listen: n.listen, Session: SessionConfig{MaxMessageSize: 200 << 10, HeartbeatInterval: time.Hour}}
				l, err := lc.Listen(context.Background(), "tcp", "pool:p")
				if err != nil {
					t.Fatal(err)
				}
				defer func() { l.Close(); lc.Endpoint.Close() }()
				nc, err := n.dial(context.Background(), "tcp", l.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				pu := mapping.NewTCPConn(nc, mapping.Config{MaxMessageSize: 4 << 20})
				defer pu.Close()
				hello, _ := ulpack.Hello{Window: 64, ID: ulpack.SessionID{7}, Next: 1, MaxMessageSize: c.announce}.AppendBinary(nil)
				if c.announce == 0 && !bytes.Equal(hello[6:8], []byte{0, 0}) {
					t.Fatalf("HELLO without a limit has % x after the version, want the zeros older users send", hello[6:8])
				}
				if err := pu.WriteMsg(hello, ulpack.PPID); err != nil {
					t.Fatal(err)
				}
				c1, err := l.Accept()
				if err != nil {
					t.Fatal(err)
				}
				es := c1.(*Session)
				defer es.Close()
				buf := make([]byte, 4<<20)
				k, _, err := pu.ReadMsg(buf)
				if err != nil {
					t.Fatal(err)
				}
				f, err := ulpack.ParseFrame(buf[:k])
				ack, ok := f.(*ulpack.HelloAck)
				if err != nil || !ok || k != ulpack.HelloAckLimitLen || ack.MaxMessageSize != 200<<10 {
					t.Fatalf("HELLO_ACK of %d bytes: %+v, %v; want %d bytes announcing 200 KiB", k, f, err, ulpack.HelloAckLimitLen)
				}
				old, err := ulpack.ParseFrame(buf[:ulpack.HelloLen])
				if want := (&ulpack.HelloAck{Version: ulpack.Version, Window: ack.Window, ID: ack.ID}); err != nil || !cmp.Equal(old, want) {
					t.Errorf("the HELLO_ACK's first 36 bytes: %+v, %v; want %+v", old, err, want)
				}
				if got := es.MaxMessageSize(); got != c.limit {
					t.Errorf("the element's MaxMessageSize() = %d, want %d", got, c.limit)
				}
				_, err = es.WriteMsg(make([]byte, c.limit+1), WriteOptions{})
				if !errors.Is(err, ErrMessageTooLong) {
					t.Errorf("WriteMsg of %d bytes: %v, want ErrMessageTooLong", c.limit+1, err)
				}
				if c.limit < 200<<10 && (err == nil || !strings.Contains(err.Error(), "pool user's limit")) {
					t.Errorf("WriteMsg over the pool user's limit: %v, want it to say so", err)
				}
				if _, err := es.Write(make([]byte, c.limit+10)); err != nil {
					t.Fatal(err)
				}
				var sizes []int
				for len(sizes) < 2 {
					k, ppid, err := pu.ReadMsg(buf)
					if err != nil {
						t.Fatal(err)
					}
					if ppid != ulpack.PPID {
						continue // the business card
					}
					if d, err := ulpack.ParseData(buf[:k]); err == nil {
						sizes = append(sizes, len(d.Payload))
					}
				}
				if diff := cmp.Diff([]int{c.limit, 10}, sizes); diff != "" {
					t.Errorf("a Write of %d bytes went as messages of (-want +got):\n%s", c.limit+10, diff)
				}
			})
		})
	}
}
