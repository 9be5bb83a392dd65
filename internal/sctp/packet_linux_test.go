package sctp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestPacketConn(t *testing.T) {
	requireSCTP(t)
	lo := netip.MustParseAddr("127.0.0.1")
	p, err := ListenPacket("sctp", &Addr{IPs: []netip.Addr{lo}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	raddr := &Addr{IPs: []netip.Addr{lo}, Port: p.Addr().(*Addr).Port}
	// The shared buffers are larger than an association's default
	// (16 KiB to send).
	var sndbuf int
	p.rc.Control(func(fd uintptr) { sndbuf, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF) })
	if sndbuf <= 32<<10 {
		t.Errorf("send buffer %d bytes, want more than the default", sndbuf)
	}
	var clients []*Conn
	for i := range 2 {
		c, err := Dial(context.Background(), "sctp", raddr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
		if err := c.WriteMsg(fmt.Appendf(nil, "hello %d", i), SndInfo{PPID: uint32(10 + i)}); err != nil {
			t.Fatal(err)
		}
	}

	ms := make([]Message, 8)
	for i := range ms {
		ms[i].Buf = make([]byte, 100)
	}
	up := map[AssocID]bool{}
	assocOf := map[int]AssocID{} // client → association
	for len(assocOf) < 2 {
		n, err := p.ReadBatch(ms, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms[:n] {
			switch m.Event {
			case AssocUp:
				up[m.Assoc] = true
			case AssocData:
				var i int
				if _, err := fmt.Sscanf(string(m.Buf[:m.N]), "hello %d", &i); err != nil || m.PPID != uint32(10+i) {
					t.Fatalf("message %q PPID %d", m.Buf[:m.N], m.PPID)
				}
				if !up[m.Assoc] {
					t.Fatalf("message on association %d before it came up", m.Assoc)
				}
				assocOf[i] = m.Assoc
			default:
				t.Fatalf("unexpected event %v", m.Event)
			}
		}
	}
	if assocOf[0] == assocOf[1] {
		t.Fatalf("both clients on association %d", assocOf[0])
	}
	for i, c := range clients {
		a, err := p.PeerAddr(assocOf[i])
		if err != nil || len(a.IPs) == 0 || a.IPs[0] != lo || a.Port != c.LocalAddr().(*Addr).Port {
			t.Errorf("peer of association %d: %v, %v; want %v", assocOf[i], a, err, c.LocalAddr())
		}
		if st, err := p.Status(assocOf[i]); err != nil || st.PeerWindow == 0 {
			t.Errorf("status of association %d: %+v, %v; want an open window", assocOf[i], st, err)
		}
	}

	// Answers go to each message's association.
	out := []Message{
		{Buf: []byte("to 1"), PPID: 21, Assoc: assocOf[1]},
		{Buf: []byte("to 0"), PPID: 20, Assoc: assocOf[0]},
	}
	if n, err := p.WriteBatch(out); n != 2 || err != nil {
		t.Fatalf("WriteBatch: %d, %v", n, err)
	}
	buf := make([]byte, 100)
	for i, c := range clients {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, info, err := c.ReadMsg(buf)
		if want := fmt.Sprintf("to %d", i); err != nil || string(buf[:n]) != want || info.PPID != uint32(20+i) {
			t.Fatalf("client %d read %q PPID %d, %v; want %q", i, buf[:n], info.PPID, err, want)
		}
	}

	// An aborted association ends at both ends; a closed one too.
	if err := p.Abort(assocOf[0]); err != nil {
		t.Fatal(err)
	}
	clients[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := clients[0].ReadMsg(buf); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on an aborted association: %v", err)
	}
	clients[1].Close()
	down := map[AssocID]bool{}
	for len(down) < 2 {
		n, err := p.ReadBatch(ms, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms[:n] {
			if m.Event == AssocDown {
				down[m.Assoc] = true
			}
		}
	}
	if !down[assocOf[0]] || !down[assocOf[1]] {
		t.Fatalf("associations down %v, want %d and %d", down, assocOf[0], assocOf[1])
	}

	// After Close, a read fails with net.ErrClosed.
	done := make(chan error, 1)
	go func() {
		_, err := p.ReadBatch(ms, 1000)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	p.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a blocked read")
	}
}
