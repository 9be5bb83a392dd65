package registrar

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
)

// A peer that trickles a message in, one byte at a time, is disconnected
// once FrameTimeout has passed since the frame began, although it is never
// silent long enough for the heartbeats to notice.
func TestTricklingSenderDisconnected(t *testing.T) {
	r, addr := startRegistrar(t, Config{KeepAliveInterval: -1, FrameTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := encode(t, &asap.HandleResolution{Handle: "trickle"})
	frame := append(mapping.AppendFrameHeader(nil, mapping.FrameHeader{Type: mapping.FrameData, Length: uint32(len(msg)), Tag: mapping.PPIDASAP}), msg...)
	closed := make(chan time.Duration, 1)
	start := time.Now()
	go func() {
		buf := make([]byte, 64)
		for {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(buf); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					closed <- -1
				} else {
					closed <- time.Since(start)
				}
				return
			}
		}
	}()
	for _, b := range frame {
		if _, err := c.Write([]byte{b}); err != nil {
			break
		}
		select {
		case took := <-closed:
			if took < 0 {
				t.Fatal("registrar kept the trickling connection for 5 s")
			}
			if took < 250*time.Millisecond {
				t.Fatalf("connection closed after %v, before the frame timeout", took)
			}
			if connCount(r) != 0 {
				waitFor(t, time.Second, "registrar still serves the connection", func() bool { return connCount(r) == 0 })
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("the whole frame went out one byte every 100 ms (%v) and the connection stayed", time.Since(start))
}

// dialRaw opens a TCP connection from src to addr.
func dialRaw(t *testing.T, addr, src string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedSoon reports whether the registrar closes c within a second.
func closedSoon(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(time.Second))
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, io.EOF) || (err != nil && !errors.Is(err, os.ErrDeadlineExceeded))
}

// Connections beyond MaxConnsPerAddr from one address, or beyond MaxConns in
// all, are closed at once; those within the limits are served, and a
// connection that ends makes room.
func TestConnectionLimits(t *testing.T) {
	r, addr := startRegistrar(t, Config{KeepAliveInterval: -1, MaxConns: 5, MaxConnsPerAddr: 3})
	var first []*client
	for range 3 {
		first = append(first, dialClientFrom(t, addr, "127.0.0.1"))
	}
	for _, c := range first {
		c.expectSilence("a connection within the limits")
	}
	if c := dialRaw(t, addr, "127.0.0.1"); !closedSoon(c) {
		t.Fatal("a fourth connection from one address is served")
	}
	for range 2 {
		dialClientFrom(t, addr, "127.0.0.2").expectSilence("a connection from another address")
	}
	if c := dialRaw(t, addr, "127.0.0.3"); !closedSoon(c) {
		t.Fatal("a sixth connection in all is served")
	}
	first[0].c.Close()
	waitFor(t, 2*time.Second, "closed connection still counted", func() bool { return connCount(r) == 4 })
	dialClientFrom(t, addr, "127.0.0.1").expectSilence("a connection after another ended")
}

// The defaults bound frames and connections.
func TestDefaultConnectionLimits(t *testing.T) {
	c := Config{}.withDefaults()
	if c.FrameTimeout != DefaultFrameTimeout || c.MaxConns != DefaultMaxConns || c.MaxConnsPerAddr != DefaultMaxConnsPerAddr {
		t.Fatalf("defaults: frame timeout %v, %d connections, %d per address", c.FrameTimeout, c.MaxConns, c.MaxConnsPerAddr)
	}
	if DefaultFrameTimeout <= 0 || DefaultMaxConns <= 0 || DefaultMaxConnsPerAddr <= 0 || DefaultMaxConnsPerAddr > DefaultMaxConns {
		t.Fatal("a default leaves a limit open")
	}
}

// When a registration connection ends and its elements are removed, the
// registrar logs why: as a warning when it dropped the connection (here a
// peer that stopped reading and sending, dropped by the mapping's
// heartbeats, whose last write timed out), as information when the peer
// closed it.
func TestRemovedConnectionLogsWhy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs logBuffer
		r := New(Config{KeepAliveInterval: time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		defer r.Close()
		dial := func(port int) *client {
			x, y := net.Pipe()
			r.ServeConn(mapping.NewTCPConn(addrConn{x, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}}, mapping.Config{}))
			// The peer's end sends no heartbeats: once it stops
			// reading, it is silent.
			c := mapping.NewTCPConn(addrConn{y, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3863}}, mapping.Config{HeartbeatInterval: -1})
			t.Cleanup(func() { c.Close() })
			return &client{t: t, c: c, buf: make([]byte, 65536)}
		}
		deaf, leaving := dial(5006), dial(5007)
		for i, c := range []*client{deaf, leaving} {
			el := loopbackPE(asap.PEID(i+1), 7, rr)
			el.Life = time.Hour
			if resp := c.register("why", el); resp.Reject {
				t.Fatalf("registration refused: %+v", resp)
			}
		}
		leaving.c.Close()
		time.Sleep(mapping.DefaultHeartbeatInterval + mapping.DefaultHeartbeatTimeout + time.Second)
		var warned, informed int
		for line := range strings.Lines(logs.String()) {
			if !strings.Contains(line, `msg="registration connection closed; removed its pool elements"`) {
				continue
			}
			switch {
			case strings.Contains(line, "level=WARN") && strings.Contains(line, "127.0.0.1:5006") && strings.Contains(line, "reason=") && strings.Contains(line, "timeout"):
				warned++
			case strings.Contains(line, "level=INFO") && strings.Contains(line, "127.0.0.1:5007") && strings.Contains(line, "reason=EOF"):
				informed++
			default:
				t.Errorf("unexpected log line: %s", line)
			}
		}
		if warned != 1 || informed != 1 {
			t.Errorf("%d warnings for the dropped connection, %d notes for the one its peer closed; want one each. Log:\n%s", warned, informed, logs.String())
		}
		if got := ids(r, "why"); len(got) != 0 {
			t.Errorf("pool still holds %v", got)
		}
	})
}
