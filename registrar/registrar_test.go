package registrar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/policy"
)

// startRegistrar runs a registrar on a loopback TCP port and returns it with
// its address.
func startRegistrar(t *testing.T, cfg Config) (*Registrar, string) {
	t.Helper()
	r := New(cfg)
	l, err := Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(l)
	t.Cleanup(func() { r.Close() })
	return r, l.Addr().String()
}

// client is a test peer speaking ASAP to the registrar.
type client struct {
	t   *testing.T
	c   mapping.Conn
	buf []byte
}

func dialClient(t *testing.T, addr string) *client {
	t.Helper()
	return dialClientOver(t, "tcp", addr)
}

// dialClientOver is dialClient over network ("tcp" or "sctp").
func dialClientOver(t *testing.T, network, addr string) *client {
	t.Helper()
	return dialClientWith(t, network, addr, mapping.Dialer{})
}

// dialClientFrom is dialClient from local address src (a loopback address
// such as 127.0.0.2), so that the registrar sees another peer address.
func dialClientFrom(t *testing.T, addr, src string) *client {
	t.Helper()
	return dialClientWith(t, "tcp", addr, mapping.Dialer{NetDialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}})
}

func dialClientWith(t *testing.T, network, addr string, d mapping.Dialer) *client {
	t.Helper()
	c, err := d.DialContext(context.Background(), network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, buf: make([]byte, 65536)}
}

func (c *client) send(m asap.Message) {
	c.t.Helper()
	b, err := m.AppendBinary(nil)
	if err != nil {
		c.t.Fatalf("encoding %T: %v", m, err)
	}
	if err := c.c.WriteMsg(b, mapping.PPIDASAP); err != nil {
		c.t.Fatalf("sending %T: %v", m, err)
	}
}

func (c *client) sendRaw(b []byte) {
	c.t.Helper()
	if err := c.c.WriteMsg(b, mapping.PPIDASAP); err != nil {
		c.t.Fatal(err)
	}
}

// recv returns the next message, failing the test after timeout.
func (c *client) recv(timeout time.Duration) asap.Message {
	c.t.Helper()
	m, err := c.tryRecv(timeout)
	if err != nil {
		c.t.Fatalf("receiving: %v", err)
	}
	return m
}

func (c *client) tryRecv(timeout time.Duration) (asap.Message, error) {
	c.c.SetReadDeadline(time.Now().Add(timeout))
	n, ppid, err := c.c.ReadMsg(c.buf)
	if err != nil {
		return nil, err
	}
	if ppid != mapping.PPIDASAP {
		c.t.Fatalf("PPID %d, want %d", ppid, mapping.PPIDASAP)
	}
	return asap.Unmarshal(c.buf[:n])
}

// expect returns the next message of type T, answering keep-alives on the
// way when ack is set.
func expect[T asap.Message](c *client, timeout time.Duration) T {
	c.t.Helper()
	m := c.recv(timeout)
	v, ok := m.(T)
	if !ok {
		var zero T
		c.t.Fatalf("got %T %+v, want %T", m, m, zero)
	}
	return v
}

func loopbackPE(id asap.PEID, port uint16, pol policy.Policy) asap.PoolElement {
	return asap.PoolElement{
		ID:   id,
		Life: 30 * time.Second,
		UserTransport: asap.Transport{
			Kind: asap.ParamTCPTransport, Port: port,
			Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		},
		Policy: pol,
	}
}

var rr = policy.Policy{Type: policy.RoundRobin}

func (c *client) register(h asap.PoolHandle, pe asap.PoolElement) *asap.RegistrationResponse {
	c.t.Helper()
	c.send(&asap.Registration{Handle: h, PE: pe})
	return expect[*asap.RegistrationResponse](c, 5*time.Second)
}

func noKeepAlives() Config { return Config{KeepAliveInterval: -1} }

func TestRegisterAndResolve(t *testing.T) {
	r, addr := startRegistrar(t, noKeepAlives())
	pe := dialClient(t, addr)
	resp := pe.register("echo", loopbackPE(0x1234, 7, rr))
	if resp.Reject || resp.Handle != "echo" || resp.ID != 0x1234 || len(resp.Causes) != 0 {
		t.Fatalf("registration response %+v, want an acceptance for echo/0x1234", resp)
	}
	p, ok := r.Pool("echo")
	if !ok || len(p.Elements) != 1 {
		t.Fatalf("pool echo = %+v, %v; want one element", p, ok)
	}
	got := p.Elements[0]
	if got.Home != r.ID() || got.UserTransport.Port != 7 || got.UserTransport.Addrs[0] != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("registered element %+v: want home %v, 127.0.0.1:7", got, r.ID())
	}

	pu := dialClient(t, addr)
	pu.send(&asap.HandleResolution{Handle: "echo"})
	hr := expect[*asap.HandleResolutionResponse](pu, 5*time.Second)
	if len(hr.Causes) != 0 || len(hr.PEs) != 1 || hr.PEs[0].ID != 0x1234 || hr.Policy == nil || hr.Policy.Type != policy.RoundRobin {
		t.Fatalf("handle resolution response %+v: want element 0x1234 with RR", hr)
	}

	pu.send(&asap.HandleResolution{Handle: "nope"})
	hr = expect[*asap.HandleResolutionResponse](pu, 5*time.Second)
	if len(hr.PEs) != 0 || len(hr.Causes) != 1 || hr.Causes[0].Code != asap.CauseUnknownPoolHandle {
		t.Fatalf("resolution of unknown pool: %+v, want cause unknown pool handle", hr)
	}
}

func TestUnspecifiedAddressTakesPeerAddress(t *testing.T) {
	r, addr := startRegistrar(t, noKeepAlives())
	pe := dialClient(t, addr)
	e := loopbackPE(0x77, 8080, rr)
	e.UserTransport.Addrs = []netip.Addr{netip.IPv4Unspecified()}
	if resp := pe.register("web", e); resp.Reject {
		t.Fatalf("refused: %+v", resp)
	}
	p, _ := r.Pool("web")
	if got := p.Elements[0].UserTransport.Addrs; len(got) != 1 || got[0] != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("registered addresses %v, want the connection's 127.0.0.1", got)
	}
}

func TestRegistrationRefusals(t *testing.T) {
	_, addr := startRegistrar(t, Config{KeepAliveInterval: -1, MaxPEsPerPool: 2})
	pe := dialClient(t, addr)
	if resp := pe.register("pool", loopbackPE(1, 7, rr)); resp.Reject {
		t.Fatalf("first registration refused: %+v", resp)
	}
	foreign := loopbackPE(5, 7, rr)
	foreign.UserTransport.Addrs = []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	udp := loopbackPE(3, 7, rr)
	udp.UserTransport.Kind = asap.ParamUDPTransport
	control := loopbackPE(6, 7, rr)
	control.UserTransport.Use = asap.DataPlusControl

	tests := []struct {
		name  string
		pe    asap.PoolElement
		cause asap.CauseCode
	}{
		{"policy mismatch", loopbackPE(2, 7, policy.Policy{Type: policy.LeastUsed}), asap.CauseInconsistentPolicy},
		{"transport mismatch", udp, asap.CauseInconsistentTransport},
		{"data/control mismatch", control, asap.CauseInconsistentDataControl},
		{"zero identifier", loopbackPE(0, 7, rr), asap.CauseInvalidValues},
		{"address not the element's own", foreign, asap.CauseInvalidValues},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pe.t = t
			resp := pe.register("pool", tt.pe)
			if !resp.Reject || len(resp.Causes) == 0 || resp.Causes[0].Code != tt.cause {
				t.Fatalf("response %+v: want R=1 with cause %v", resp, tt.cause)
			}
		})
	}
	pe.t = t
	// An invalid policy type (0x40000000) does not decode; the refusal
	// still names the element.
	raw, err := asap.Registration{Handle: "pool", PE: loopbackPE(4, 7, rr)}.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	raw = bytes.Replace(raw, []byte{0, 8, 0, 8, 0, 0, 0, 1}, []byte{0, 8, 0, 8, 0x40, 0, 0, 0}, 1)
	pe.sendRaw(raw)
	if resp := expect[*asap.RegistrationResponse](pe, 5*time.Second); !resp.Reject || resp.ID != 4 || resp.Causes[0].Code != asap.CauseInvalidValues {
		t.Fatalf("invalid policy: %+v, want R=1 for element 4 with invalid values", resp)
	}
	// The policy refusal carries the pool's policy.
	resp := pe.register("pool", loopbackPE(2, 7, policy.Policy{Type: policy.LeastUsed}))
	pol, err := policy.ParsePolicy(resp.Causes[0].Info[4:])
	if err != nil || pol.Type != policy.RoundRobin {
		t.Errorf("cause info %x: want the pool's round robin policy (%v)", resp.Causes[0].Info, err)
	}
	// The pool holds at most two elements.
	if resp := pe.register("pool", loopbackPE(2, 7, rr)); resp.Reject {
		t.Fatalf("second element refused: %+v", resp)
	}
	if resp := pe.register("pool", loopbackPE(3, 7, rr)); !resp.Reject || resp.Causes[0].Code != asap.CauseLackOfResources {
		t.Fatalf("third element: %+v, want lack of resources", resp)
	}
}

func TestReregistrationUpdates(t *testing.T) {
	r, addr := startRegistrar(t, noKeepAlives())
	pe := dialClient(t, addr)
	lu := policy.Policy{Type: policy.LeastUsed, Load: 100}
	pe.register("lu", loopbackPE(9, 7, lu))
	lu.Load = 5000
	if resp := pe.register("lu", loopbackPE(9, 7, lu)); resp.Reject {
		t.Fatalf("re-registration refused: %+v", resp)
	}
	p, _ := r.Pool("lu")
	if len(p.Elements) != 1 || p.Elements[0].Policy.Load != 5000 {
		t.Fatalf("pool after re-registration %+v: want one element with load 5000", p)
	}
}

func TestDeregistration(t *testing.T) {
	r, addr := startRegistrar(t, noKeepAlives())
	pe := dialClient(t, addr)
	other := dialClient(t, addr)
	pe.register("d", loopbackPE(1, 7, rr))
	pe.register("d", loopbackPE(2, 7, rr))

	// Another connection may not remove it.
	other.send(&asap.Deregistration{Handle: "d", ID: 1})
	if resp := expect[*asap.DeregistrationResponse](other, 5*time.Second); len(resp.Causes) == 0 {
		t.Fatalf("deregistration by a stranger accepted: %+v", resp)
	}
	pe.send(&asap.Deregistration{Handle: "d", ID: 1})
	if resp := expect[*asap.DeregistrationResponse](pe, 5*time.Second); len(resp.Causes) != 0 || resp.ID != 1 {
		t.Fatalf("deregistration failed: %+v", resp)
	}
	if p, _ := r.Pool("d"); len(p.Elements) != 1 || p.Elements[0].ID != 2 {
		t.Fatalf("pool after deregistration: %+v, want element 2 only", p)
	}
	pe.send(&asap.Deregistration{Handle: "d", ID: 2})
	expect[*asap.DeregistrationResponse](pe, 5*time.Second)
	if _, ok := r.Pool("d"); ok {
		t.Fatal("empty pool still exists")
	}
	// Removing an unknown element succeeds.
	pe.send(&asap.Deregistration{Handle: "d", ID: 3})
	if resp := expect[*asap.DeregistrationResponse](pe, 5*time.Second); len(resp.Causes) != 0 {
		t.Fatalf("deregistration of unknown element: %+v, want success", resp)
	}
}

func TestResolutionItemsAndRoundRobin(t *testing.T) {
	_, addr := startRegistrar(t, noKeepAlives())
	pe := dialClient(t, addr)
	for id := asap.PEID(1); id <= 5; id++ {
		pe.register("rr", loopbackPE(id, uint16(id), rr))
	}
	pu := dialClient(t, addr)
	firsts := map[asap.PEID]int{}
	for range 10 {
		pu.send(&asap.HandleResolution{Handle: "rr", Items: 2})
		hr := expect[*asap.HandleResolutionResponse](pu, 5*time.Second)
		if len(hr.PEs) != 2 {
			t.Fatalf("got %d elements, want the 2 asked for", len(hr.PEs))
		}
		firsts[hr.PEs[0].ID]++
	}
	// Round robin moves the head: over 10 resolutions each of the 5
	// elements comes first twice.
	for id := asap.PEID(1); id <= 5; id++ {
		if firsts[id] != 2 {
			t.Fatalf("first elements %v: want each of 1..5 twice", firsts)
		}
	}
	pu.send(&asap.HandleResolution{Handle: "rr"})
	if hr := expect[*asap.HandleResolutionResponse](pu, 5*time.Second); len(hr.PEs) != DefaultHandleResolutionItems {
		t.Fatalf("default resolution returned %d elements, want %d", len(hr.PEs), DefaultHandleResolutionItems)
	}
	pu.send(&asap.HandleResolution{Handle: "rr", Items: 0xffffffff})
	if hr := expect[*asap.HandleResolutionResponse](pu, 5*time.Second); len(hr.PEs) != 5 {
		t.Fatalf("resolution for all returned %d elements, want 5", len(hr.PEs))
	}
}

func TestKeepAlive(t *testing.T) {
	cfg := Config{KeepAliveInterval: 100 * time.Millisecond, KeepAliveTimeout: 200 * time.Millisecond}
	r, addr := startRegistrar(t, cfg)
	alive := dialClient(t, addr)
	silent := dialClient(t, addr)
	alive.register("ka", loopbackPE(1, 7, rr))
	silent.register("ka", loopbackPE(2, 7, rr))

	// The live element answers three keep-alives; the silent one does not
	// and is gone after interval+timeout.
	for range 3 {
		ka := expect[*asap.EndpointKeepAlive](alive, 2*time.Second)
		if ka.Server != r.ID() || ka.Handle != "ka" || ka.Home {
			t.Fatalf("keep-alive %+v: want server %v, handle ka, H=0", ka, r.ID())
		}
		alive.send(&asap.EndpointKeepAliveAck{Handle: "ka", ID: 1})
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		p, _ := r.Pool("ka")
		if len(p.Elements) == 1 && p.Elements[0].ID == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool %+v: want only the live element 1", p)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRegistrationLifeExpires(t *testing.T) {
	r, addr := startRegistrar(t, Config{KeepAliveInterval: -1, MinRegistrationLife: 10 * time.Millisecond})
	pe := dialClient(t, addr)
	e := loopbackPE(1, 7, rr)
	e.Life = 300 * time.Millisecond
	start := time.Now()
	pe.register("life", e)
	resp := expect[*asap.DeregistrationResponse](pe, 3*time.Second)
	if resp.Handle != "life" || resp.ID != 1 {
		t.Fatalf("unsolicited deregistration response %+v: want life/1", resp)
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Fatalf("expired after %v, before its life of 300ms", took)
	}
	if _, ok := r.Pool("life"); ok {
		t.Fatal("expired element still in the handlespace")
	}
}

func TestUnreachableReports(t *testing.T) {
	r, addr := startRegistrar(t, Config{KeepAliveInterval: -1, KeepAliveTimeout: 300 * time.Millisecond, UnreachableRate: -1})
	pe := dialClient(t, addr)
	pe.register("eu", loopbackPE(1, 7, rr))
	pu := dialClient(t, addr)

	// Each report makes the registrar probe the element at once; an
	// element that answers stays, however many reports one pool user
	// sends.
	for round := range 3 {
		for range 2 * DefaultMaxBadPEReports {
			pu.send(&asap.EndpointUnreachable{Handle: "eu", ID: 1})
		}
		pu.expectSilence("unreachable reports") // all handled
		ka := expect[*asap.EndpointKeepAlive](pe, 2*time.Second)
		if ka.Handle != "eu" || ka.ID != 1 {
			t.Fatalf("round %d: probe %+v", round, ka)
		}
		pe.send(&asap.EndpointKeepAliveAck{Handle: "eu", ID: 1})
		pe.expectSilence("one probe for a burst of reports")
		if got := ids(r, "eu"); !slices.Equal(got, []asap.PEID{1}) {
			t.Fatalf("round %d: element that answers its probe removed (pool %v)", round, got)
		}
	}
	time.Sleep(time.Second) // three probe timeouts: no probe was left to time out
	if got := ids(r, "eu"); !slices.Equal(got, []asap.PEID{1}) {
		t.Fatalf("element that answered its probes removed later (pool %v)", got)
	}

	// An element that does not answer the probe is removed when the
	// keep-alive timeout runs out.
	pu.send(&asap.EndpointUnreachable{Handle: "eu", ID: 1})
	start := time.Now()
	expect[*asap.EndpointKeepAlive](pe, 2*time.Second)
	waitFor(t, 2*time.Second, "silent element still registered", func() bool { _, ok := r.Pool("eu"); return !ok })
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Fatalf("silent element removed after %v, before its probe's timeout", took)
	}
}

func TestConnectionCloseRemovesElements(t *testing.T) {
	r, addr := startRegistrar(t, noKeepAlives())
	pe := dialClient(t, addr)
	pe.register("gone", loopbackPE(1, 7, rr))
	pe.c.Close()
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, ok := r.Pool("gone"); !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("element of a closed connection still registered")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestUnrecognizedMessageReported(t *testing.T) {
	_, addr := startRegistrar(t, noKeepAlives())
	c := dialClient(t, addr)
	// Type 0x7f has action bits 01: discard and report.
	c.sendRaw([]byte{0x7f, 0, 0, 8, 1, 2, 3, 4})
	e := expect[*asap.Error](c, 2*time.Second)
	if len(e.Causes) != 1 || e.Causes[0].Code != asap.CauseUnrecognizedMessage {
		t.Fatalf("error %+v: want cause unrecognized message", e)
	}
	// Type 0x3f has action bits 00: discarded silently.
	c.sendRaw([]byte{0x3f, 0, 0, 4})
	if m, err := c.tryRecv(200 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v, %v after a silently discarded message", m, err)
	}
	// The connection still works.
	c.register("after", loopbackPE(1, 7, rr))
}

func TestGarbageDoesNotStopTheRegistrar(t *testing.T) {
	r, addr := startRegistrar(t, noKeepAlives())
	c := dialClient(t, addr)
	for _, b := range [][]byte{
		{},
		{0x01},
		{0x01, 0, 0, 4},
		{0x01, 0, 0xff, 0xff, 0, 9, 0, 3},
		{0x05, 0, 0, 12, 0, 9, 0, 200, 1, 2, 3, 4},
	} {
		c.sendRaw(b)
	}
	// Errors may answer the garbage; the registration's response follows.
	c.send(&asap.Registration{Handle: "ok", PE: loopbackPE(1, 7, rr)})
	for i := 0; ; i++ {
		m := c.recv(2 * time.Second)
		if resp, ok := m.(*asap.RegistrationResponse); ok && resp.Handle == "ok" {
			if resp.Reject {
				t.Fatalf("registration after garbage refused: %+v", resp)
			}
			break
		}
		if i > 10 {
			t.Fatal("no registration response after garbage")
		}
	}
	if _, ok := r.Pool("ok"); !ok {
		t.Fatal("registration after garbage lost")
	}
}

func TestHandleResolutionRateLimit(t *testing.T) {
	// Two resolutions a second, in bursts of two: over the limit a
	// resolution is refused with "lack of resources", and the connection
	// is read no faster than the limit.
	const rate = 2
	_, addr := startRegistrar(t, Config{KeepAliveInterval: -1, HandleResolutionRate: rate})
	c := dialClient(t, addr)
	c.register("rl", loopbackPE(1, 7, rr))
	limited, answered := 0, 0
	start := time.Now()
	for range 8 {
		c.send(&asap.HandleResolution{Handle: "rl"})
		hr := expect[*asap.HandleResolutionResponse](c, 5*time.Second)
		if len(hr.Causes) > 0 && hr.Causes[0].Code == asap.CauseLackOfResources {
			limited++
		} else {
			answered++
		}
	}
	took := time.Since(start)
	if limited == 0 {
		t.Fatal("no resolution of 8 back-to-back refused at 2/s")
	}
	if max := rate*took.Seconds() + rate + 1; float64(answered) > max {
		t.Fatalf("%d resolutions answered in %v at %d/s, want at most %.0f", answered, took, rate, max)
	}
	if took < time.Second {
		t.Fatalf("8 resolutions at 2/s answered within %v: the connection is not throttled", took)
	}
}

// TestPipelinedRequestsAnsweredInOrder sends many requests at once, as a
// pipelining peer does, and checks that each is answered, in order, both
// on connections the registrar reads in batches and on plain ones.
func TestPipelinedRequestsAnsweredInOrder(t *testing.T) {
	for _, batched := range []bool{true, false} {
		t.Run(map[bool]string{true: "batched", false: "plain"}[batched], func(t *testing.T) {
			r, addr := startRegistrar(t, noKeepAlives())
			pe := dialClient(t, addr)
			pe.register("known", loopbackPE(1, 7, rr))
			pu := pe
			if !batched {
				// A connection that hides its batch methods.
				lc := mapping.ListenConfig{}
				l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				go func() {
					if c, err := l.Accept(); err == nil {
						r.ServeConn(struct{ mapping.Conn }{c})
					}
				}()
				pu = dialClient(t, l.Addr().String())
			}
			const n = 100
			var batch []mapping.Msg
			for i := range n {
				h := asap.PoolHandle("known")
				if i%3 == 1 {
					h = asap.PoolHandle(fmt.Sprintf("unknown-%d", i))
				}
				b, err := (&asap.HandleResolution{Handle: h}).AppendBinary(nil)
				if err != nil {
					t.Fatal(err)
				}
				batch = append(batch, mapping.Msg{Buf: b, PPID: mapping.PPIDASAP})
			}
			if _, err := pu.c.(mapping.BatchConn).WriteBatch(batch); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				hr := expect[*asap.HandleResolutionResponse](pu, 5*time.Second)
				if i%3 == 1 {
					if want := asap.PoolHandle(fmt.Sprintf("unknown-%d", i)); hr.Handle != want || len(hr.PEs) != 0 {
						t.Fatalf("answer %d: %s with %d elements, want %s with none", i, hr.Handle, len(hr.PEs), want)
					}
				} else if hr.Handle != "known" || len(hr.PEs) != 1 {
					t.Fatalf("answer %d: %s with %d elements, want known with one", i, hr.Handle, len(hr.PEs))
				}
			}
		})
	}
}
