package endpoint_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/policy"
	"github.com/rsp-go/rsp/registrar"
)

// readASAP reads the next ASAP message on c within d; nil when none came.
func readASAP(t *testing.T, c mapping.Conn, d time.Duration) (asap.Message, error) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 65536)
	for {
		n, ppid, err := c.ReadMsg(buf)
		if err != nil {
			return nil, err
		}
		if ppid != mapping.PPIDASAP {
			continue
		}
		m, err := asap.Unmarshal(buf[:n])
		if m == nil {
			t.Fatalf("bad message from the element: %v", err)
		}
		return m, nil
	}
}

// TestTakeoverOverSCTP plays a registrar that took over the home registrar
// of an element registered over SCTP: it opens associations to the
// element's ASAP transport address, as its registration names it. A
// keep-alive without the H flag there, or one for a pool element that is
// not the endpoint's, is not answered, and an association that names no
// home is closed after RequestTimeout. A keep-alive with H for its
// element is answered; the endpoint's home is the sender, it drops its
// connection to the old registrar without hunting, and its next
// registration goes on the new association.
func TestTakeoverOverSCTP(t *testing.T) {
	if !mapping.SCTPSupported() {
		t.Skip("the kernel has no SCTP; run with .ci/uml/test-sctp")
	}
	old := registrar.New(registrar.Config{ID: 1, KeepAliveInterval: 100 * time.Millisecond, KeepAliveTimeout: 2 * time.Second})
	l, err := old.Listen(context.Background(), "sctp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go old.Serve(l)
	t.Cleanup(func() { old.Close() })

	var dials atomic.Int32
	var d mapping.Dialer
	pe := newEndpoint(t, endpoint.Config{
		Registrars:     []string{"sctp:" + l.Addr().String()},
		Reregistration: quiet,
		RequestTimeout: 500 * time.Millisecond,
		Dialer: func(ctx context.Context, network, address string) (mapping.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, network, address)
		},
		Logger: testutil.Logger(t, "pe"),
	})
	ctx := ctxTimeout(t, 4*waitLong)
	reg, err := pe.Register(ctx, "echo", testPE(0, 7))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Home() names the registrar", func() bool { return pe.Home() == old.ID() })
	p, ok := old.Pool("echo")
	if !ok || len(p.Elements) != 1 || p.Elements[0].ASAPTransport == nil || len(p.Elements[0].ASAPTransport.Addrs) == 0 {
		t.Fatalf("the registrar's pool echo: %+v, %v; want the element with its SCTP transport", p, ok)
	}
	at := p.Elements[0].ASAPTransport
	target := netip.AddrPortFrom(at.Addrs[0], at.Port).String()
	const newHome = asap.ServerID(0x42)
	dial := func() mapping.Conn {
		t.Helper()
		c, err := d.DialContext(ctx, "sctp", target)
		if err != nil {
			t.Fatalf("the element's ASAP transport %s takes no association: %v", target, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	send := func(c mapping.Conn, m asap.Message) {
		t.Helper()
		b, err := m.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.WriteMsg(b, mapping.PPIDASAP); err != nil {
			t.Fatal(err)
		}
	}

	// Not home-flagged: unanswered, and the association is closed.
	c1 := dial()
	send(c1, &asap.EndpointKeepAlive{Server: newHome, Handle: "echo", ID: reg.ID()})
	if m, err := readASAP(t, c1, 3*time.Second); err == nil {
		t.Fatalf("answer to a keep-alive without H on a registrar's association: %#v", m)
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("an association that named no home stays open: %v", err)
	}
	if h := pe.Home(); h != old.ID() {
		t.Fatalf("Home() = %08x after a keep-alive without H, want %08x", uint32(h), uint32(old.ID()))
	}

	// Home-flagged, but for another element: unanswered; then for ours.
	c2 := dial()
	send(c2, &asap.EndpointKeepAlive{Server: newHome, Handle: "echo", ID: reg.ID() + 1, Home: true})
	send(c2, &asap.EndpointKeepAlive{Server: newHome, Handle: "echo", ID: reg.ID(), Home: true})
	m, err := readASAP(t, c2, 3*time.Second)
	if err != nil {
		t.Fatalf("no answer to the home keep-alive: %v", err)
	}
	if ack, ok := m.(*asap.EndpointKeepAliveAck); !ok || ack.Handle != "echo" || ack.ID != reg.ID() {
		t.Fatalf("answer to the home keep-alive: %#v, want the ack of %08x", m, uint32(reg.ID()))
	}
	if h := pe.Home(); h != newHome {
		t.Fatalf("Home() = %08x after the home keep-alive, want %08x", uint32(h), uint32(newHome))
	}
	// The old registrar's connection is closed (it removes the element)
	// and the endpoint does not hunt for another.
	waitFor(t, "the old registrar to lose the element", func() bool { return len(poolIDs(old, "echo")) == 0 })
	time.Sleep(300 * time.Millisecond)
	if n := dials.Load(); n != 1 {
		t.Fatalf("the endpoint dialed a registrar %d times, want once", n)
	}

	// The next registration goes on the new association.
	done := make(chan error, 1)
	go func() { done <- reg.Update(ctx, policy.Policy{Type: policy.RoundRobin}) }()
	m, err = readASAP(t, c2, 3*time.Second)
	if err != nil {
		t.Fatalf("no registration on the new home's association: %v", err)
	}
	rr, ok := m.(*asap.Registration)
	if !ok || rr.PE.ID != reg.ID() {
		t.Fatalf("on the new home's association: %#v, want the registration of %08x", m, uint32(reg.ID()))
	}
	send(c2, &asap.RegistrationResponse{Handle: "echo", ID: reg.ID()})
	if err := <-done; err != nil {
		t.Fatalf("update at the new home: %v", err)
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("the endpoint dialed a registrar %d times, want once", n)
	}
}
