//go:build linux

package rsp_test

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/sctp"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/policy"
	"github.com/rsp-go/rsp/registrar"
)

// controlElement registers an SCTP pool element with a control channel
// and no sessions (as rsplib's enhanced-mode elements are) and serves each
// association it accepts with serve.
func controlElement(t *testing.T, ep *endpoint.Endpoint, pool asap.PoolHandle, serve func(*mapping.ControlConn)) asap.PEID {
	t.Helper()
	var lc mapping.ListenConfig
	l, err := lc.Listen(context.Background(), "sctp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	_, ps, _ := net.SplitHostPort(l.Addr().String())
	port, _ := strconv.Atoi(ps)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg, err := ep.Register(ctx, pool, asap.PoolElement{
		UserTransport: asap.Transport{Kind: asap.ParamSCTPTransport, Port: uint16(port), Use: asap.DataPlusControl,
			Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
		Policy: policy.Policy{Type: policy.RoundRobin},
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serve(mapping.NewControlConn(c))
		}
	}()
	return reg.ID()
}

// TestASAPConnFailoverAfterFailedWriteSCTP: an element answers, sends its
// cookie and one more data message, and ends its association before the
// pool user reads them; the user's next Write fails and fails over. The
// failover reads what the old element sent first: the next element gets
// that cookie echoed, and Read returns the old element's last message
// before the new one's answer.
func TestASAPConnFailoverAfterFailedWriteSCTP(t *testing.T) {
	if !sctp.Supported() {
		t.Skip("the kernel has no SCTP; run the SCTP tests inside User-mode Linux with .ci/uml/test-sctp")
	}
	r := registrar.New(registrar.Config{})
	defer r.Close()
	rl, err := registrar.Listen(context.Background(), "sctp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(rl)
	regs := []string{"sctp:" + rl.Addr().String()}
	pep := endpoint.New(endpoint.Config{Registrars: regs})
	defer pep.Close()
	const pool = "asapfailover"
	closed := make(chan struct{})
	first := controlElement(t, pep, pool, func(c *mapping.ControlConn) {
		buf := make([]byte, 100)
		if _, _, err := c.ReadMsg(buf); err != nil {
			return
		}
		c.WriteMsg([]byte("pong 1"), 7)
		c.WriteControl(&asap.Cookie{Cookie: []byte("state after 1")})
		c.WriteMsg([]byte("late news"), 7)
		c.Close()
		close(closed)
	})
	d := rsp.Dialer{Registrars: regs, Timeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := d.DialContext(ctx, "tcp", "pool:"+pool)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, ok := nc.(*rsp.ASAPConn)
	if !ok {
		t.Fatalf("dialed a %T, want an *rsp.ASAPConn", nc)
	}
	// The second element, registered once the first is in use.
	echoed := make(chan []byte, 1)
	second := controlElement(t, pep, pool, func(c *mapping.ControlConn) {
		buf := make([]byte, 100)
		n, _, err := c.ReadMsg(buf)
		if err != nil {
			return
		}
		echoed <- c.CookieEcho()
		c.WriteMsg(append([]byte("answer to "), buf[:n]...), 7)
	})
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 100)
	if err := c.WriteMsg([]byte("ping 1"), 7); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "pong 1" {
		t.Fatalf("first read: %q, %v", buf[:n], err)
	}
	<-closed
	// The element's SHUTDOWN reaches this end as its close returns; a
	// moment's margin more.
	time.Sleep(100 * time.Millisecond)
	if err := c.WriteMsg([]byte("ping 2"), 7); err != nil {
		t.Fatalf("write after the element closed: %v", err)
	}
	if c.Failovers() != 1 || c.Element().ID != second {
		t.Fatalf("after the write: %d failovers, on PE %08x; want one, to PE %08x (from %08x)", c.Failovers(), uint32(c.Element().ID), uint32(second), uint32(first))
	}
	for _, want := range []string{"late news", "answer to ping 2"} {
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("read %q, %v; want %q", buf[:n], err, want)
		}
	}
	if got := string(<-echoed); got != "state after 1" {
		t.Errorf("the second element got cookie echo %q, want the first's last cookie", got)
	}
}
