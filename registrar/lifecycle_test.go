package registrar

import (
	"context"
	"errors"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
)

// expectDeregistration fails the test unless the next message answers a
// deregistration of h/id with cause (0: success).
func expectDeregistration(t *testing.T, c *client, h asap.PoolHandle, id asap.PEID, cause asap.CauseCode) {
	t.Helper()
	resp := expect[*asap.DeregistrationResponse](c, 5*time.Second)
	if resp.Handle != h || resp.ID != id {
		t.Fatalf("deregistration response %+v, want one for %s/%d", resp, h, id)
	}
	switch {
	case cause == 0 && len(resp.Causes) != 0:
		t.Fatalf("deregistration of %s/%d refused: %+v", h, id, resp)
	case cause != 0 && (len(resp.Causes) != 1 || resp.Causes[0].Code != cause):
		t.Fatalf("deregistration of %s/%d: %+v, want cause %v", h, id, resp, cause)
	}
}

func TestIdentityBelongsToRegisteringConnection(t *testing.T) {
	r, addr := startRegistrar(t, noKeepAlives())
	owner := dialClient(t, addr)
	stranger := dialClient(t, addr)
	owner.register("sec", loopbackPE(1, 7, rr))
	owner.register("sec", loopbackPE(2, 7, rr))
	before, _ := element(r, "sec", 1)

	stranger.send(&asap.Deregistration{Handle: "sec", ID: 1})
	expectDeregistration(t, stranger, "sec", 1, asap.CauseRejectedSecurity)
	if e, ok := element(r, "sec", 1); !ok || !samePE(before, e) {
		t.Fatalf("element after a stranger's deregistration: %+v (%v), want %+v", e, ok, before)
	}

	// An element of the stranger's own in the same pool gives it no right
	// to the others.
	stranger.register("sec", loopbackPE(3, 7, rr))
	stranger.send(&asap.Deregistration{Handle: "sec", ID: 1})
	expectDeregistration(t, stranger, "sec", 1, asap.CauseRejectedSecurity)
	stranger.send(&asap.Deregistration{Handle: "sec", ID: 3})
	expectDeregistration(t, stranger, "sec", 3, 0)
	if got := ids(r, "sec"); !slices.Equal(got, []asap.PEID{1, 2}) {
		t.Fatalf("pool holds %v, want [1 2]", got)
	}

	// A pool element identifier belongs to the connection that
	// registered it: a registration of it over another connection is
	// refused, whatever it says, and changes nothing.
	intruder := dialClient(t, addr)
	before, _ = element(r, "sec", 2)
	resp := intruder.register("sec", loopbackPE(2, 9, rr))
	if !resp.Reject || len(resp.Causes) != 1 || resp.Causes[0].Code != asap.CauseRejectedSecurity || resp.Handle != "sec" || resp.ID != 2 {
		t.Fatalf("registration of a live element over another connection: %+v, want a refusal with cause %v", resp, asap.CauseRejectedSecurity)
	}
	if e, ok := element(r, "sec", 2); !ok || !samePE(before, e) {
		t.Fatalf("element after the intruder's registration: %+v (%v), want %+v", e, ok, before)
	}
	// Resolutions still hand out the owner's transport.
	intruder.send(&asap.HandleResolution{Handle: "sec", Items: 10})
	for _, e := range expect[*asap.HandleResolutionResponse](intruder, 5*time.Second).PEs {
		if e.UserTransport.Port != 7 {
			t.Fatalf("resolution hands out %+v, not the owner's transport", e)
		}
	}
	// Nor can the intruder remove it afterwards, and the owner, which
	// answers the keep-alive the intruder's registration drew, still can
	// re-register it.
	intruder.send(&asap.Deregistration{Handle: "sec", ID: 2})
	expectDeregistration(t, intruder, "sec", 2, asap.CauseRejectedSecurity)
	if ka := expect[*asap.EndpointKeepAlive](owner, 5*time.Second); ka.Handle != "sec" || ka.ID != 2 {
		t.Fatalf("owner probed with %+v, want a keep-alive for sec/2", ka)
	}
	owner.send(&asap.EndpointKeepAliveAck{Handle: "sec", ID: 2})
	if resp := owner.register("sec", loopbackPE(2, 8, rr)); resp.Reject {
		t.Fatalf("owner's re-registration refused: %+v", resp)
	}
	// Once the owner's connection ends, its elements go, and the
	// identifier is free for another connection.
	owner.c.Close()
	waitFor(t, 2*time.Second, "elements outlived their connection", func() bool { _, ok := r.Pool("sec"); return !ok })
	if resp := intruder.register("sec", loopbackPE(2, 9, rr)); resp.Reject {
		t.Fatalf("registration of a free identifier refused: %+v", resp)
	}
	intruder.send(&asap.Deregistration{Handle: "sec", ID: 2})
	expectDeregistration(t, intruder, "sec", 2, 0)
	if _, ok := r.Pool("sec"); ok || ownedCount(r) != 0 {
		t.Fatalf("pool sec after its last deregistration: %+v", r.Pools())
	}
}

// registrarGoroutines returns the stacks of goroutines running registrar or
// mapping code, other than the caller's.
func registrarGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var found []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 {
			continue // the caller
		}
		if strings.Contains(g, "rsp/registrar.(*") || strings.Contains(g, "rsp/mapping.") {
			found = append(found, g)
		}
	}
	return found
}

func TestCloseStopsEverything(t *testing.T) {
	// Goroutines of earlier tests' connections may still be ending.
	waitFor(t, 2*time.Second, "goroutines of earlier tests still running", func() bool { return len(registrarGoroutines()) == 0 })
	base := runtime.NumGoroutine()

	r := New(Config{KeepAliveInterval: 20 * time.Millisecond, KeepAliveTimeout: time.Second, WriteTimeout: time.Minute, SendQueue: 2})
	served := make(chan error, 2)
	var addrs []string
	for range 2 {
		l, err := Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		go func() { served <- r.Serve(l) }()
	}
	pe := dialClient(t, addrs[0])
	pe.register("close", loopbackPE(1, 7, rr))
	pu := dialClient(t, addrs[1])
	pu.send(&asap.HandleResolution{Handle: "close"})
	expect[*asap.HandleResolutionResponse](pu, 5*time.Second)
	// A peer that sends and never reads: the registrar is stuck writing
	// the answer to its request.
	stuck, theirs := mapping.Pipe()
	r.ServeConn(theirs)
	req := encode(t, &asap.HandleResolution{Handle: "close"})
	for range 1 {
		stuck.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := stuck.WriteMsg(req, mapping.PPIDASAP); err != nil {
			t.Fatal(err)
		}
	}
	// Let a keep-alive or two go out.
	time.Sleep(50 * time.Millisecond)

	closed := make(chan error, 1)
	go func() { closed <- r.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	for range 2 {
		select {
		case err := <-served:
			if !errors.Is(err, ErrRegistrarClosed) {
				t.Fatalf("Serve returned %v, want ErrRegistrarClosed", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Serve did not return after Close")
		}
	}
	pe.expectClosed(2 * time.Second)
	pu.expectClosed(2 * time.Second)
	stuck.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		_, _, err := stuck.ReadMsg(make([]byte, 65536))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("connection of a peer that does not read still open after Close")
		}
		if err != nil {
			break
		}
	}

	// After Close: Close again is harmless, Serve and ServeConn refuse and
	// close what they are given.
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	l, err := Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Serve(l); !errors.Is(err, ErrRegistrarClosed) {
		t.Fatalf("Serve after Close returned %v, want ErrRegistrarClosed", err)
	}
	if c, err := l.Accept(); err == nil {
		c.Close()
		t.Fatal("listener given to Serve after Close still accepts")
	}
	late, theirs := mapping.Pipe()
	r.ServeConn(theirs)
	late.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, _, err := late.ReadMsg(make([]byte, 16)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection given to ServeConn after Close: read returned %v, want it closed", err)
	}

	for _, c := range []mapping.Conn{pe.c, pu.c, stuck, late} {
		c.Close()
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		left := registrarGoroutines()
		n := runtime.NumGoroutine()
		if len(left) == 0 && n <= base {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Close, %d before; still running:\n%s", n, base, strings.Join(left, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A pool element whose connection went silent without closing (its host
// lost power, a middlebox forgot the connection) registers again over a
// new one. The identifier still belongs to the old connection, so the
// registration is refused, but the registrar probes the old connection at
// once: an owner that answers keeps its element, and a silent one loses it
// within KeepAliveTimeout, so that the element's next attempt succeeds
// instead of waiting for the old connection's next scheduled keep-alive.
func TestRegistrationOverNewConnectionProbesTheOwner(t *testing.T) {
	r, addr := startRegistrar(t, Config{KeepAliveInterval: time.Hour, KeepAliveTimeout: 300 * time.Millisecond})
	refused := func(c *client, id asap.PEID) {
		t.Helper()
		resp := c.register("move", loopbackPE(id, 8, rr))
		if !resp.Reject || len(resp.Causes) != 1 || resp.Causes[0].Code != asap.CauseRejectedSecurity {
			t.Fatalf("registration of %d over a new connection while the old holds it: %+v, want cause %v", id, resp, asap.CauseRejectedSecurity)
		}
	}
	probed := func(c *client, id asap.PEID) {
		t.Helper()
		if ka, ok := c.recv(2 * time.Second).(*asap.EndpointKeepAlive); !ok || ka.Handle != "move" || ka.ID != id {
			t.Fatalf("owner of %d got %T %+v, want a keep-alive for it", id, ka, ka)
		}
	}

	live := dialClient(t, addr)
	live.register("move", loopbackPE(1, 7, rr))
	silent := dialClient(t, addr)
	silent.register("move", loopbackPE(2, 7, rr))
	fresh := dialClient(t, addr)

	// The live owner answers the probe and keeps its element.
	refused(fresh, 1)
	probed(live, 1)
	live.send(&asap.EndpointKeepAliveAck{Handle: "move", ID: 1})
	// The silent one does not and loses it.
	refused(fresh, 2)
	probed(silent, 2)
	waitFor(t, 5*time.Second, "the silent owner's element stayed", func() bool { _, ok := element(r, "move", 2); return !ok })
	if resp := fresh.register("move", loopbackPE(2, 8, rr)); resp.Reject {
		t.Fatalf("registration after the silent owner lost the element: %+v", resp)
	}
	time.Sleep(3 * 300 * time.Millisecond)
	if e, ok := element(r, "move", 1); !ok || e.UserTransport.Port != 7 {
		t.Fatalf("the live owner's element after it answered the probe: %+v (%v)", e, ok)
	}
	refused(fresh, 1)
}
