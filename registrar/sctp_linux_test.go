package registrar

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/internal/sctp"
	"github.com/rsp-go/rsp/mapping"
)

// The tests in this file run the registrar over kernel SCTP, where Listen
// gives one one-to-many socket for all associations.

func requireSCTP(t *testing.T) {
	t.Helper()
	if !sctp.Supported() {
		t.Skip("the kernel has no SCTP; run the SCTP tests inside User-mode Linux with .ci/uml/test-sctp")
	}
}

// startSCTPRegistrar runs a registrar on a loopback SCTP port and returns
// it, its address and what its Serve returned, once it has.
func startSCTPRegistrar(t *testing.T, cfg Config) (*Registrar, string, chan error) {
	t.Helper()
	r := New(cfg)
	l, err := Listen(context.Background(), "sctp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.(*assocListener); !ok {
		t.Fatalf("Listen over SCTP gave a %T, want the association socket", l)
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve(l) }()
	t.Cleanup(func() { r.Close() })
	return r, l.Addr().String(), served
}

func sctpPE(id asap.PEID, port uint16) asap.PoolElement {
	pe := loopbackPE(id, port, rr)
	pe.UserTransport.Kind = asap.ParamSCTPTransport
	return pe
}

func TestSCTPRegisterResolveAndEnd(t *testing.T) {
	requireSCTP(t)
	r, addr, _ := startSCTPRegistrar(t, noKeepAlives())
	pe := dialClientOver(t, "sctp", addr)
	if resp := pe.register("echo", sctpPE(7, 7000)); resp.Reject {
		t.Fatalf("registration refused: %+v", resp)
	}
	got, ok := element(r, "echo", 7)
	if !ok || got.ASAPTransport == nil || got.ASAPTransport.Kind != asap.ParamSCTPTransport || got.ASAPTransport.Addrs[0] != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("element %+v: want one with the association's SCTP address as its ASAP transport", got)
	}

	// Another association resolves, one request at a time and pipelined.
	pu := dialClientOver(t, "sctp", addr)
	pu.send(&asap.HandleResolution{Handle: "echo"})
	if hr := expect[*asap.HandleResolutionResponse](pu, 5*time.Second); len(hr.PEs) != 1 || hr.PEs[0].ID != 7 {
		t.Fatalf("resolution: %+v, want element 7", hr)
	}
	var batch []mapping.Msg
	for i := range 50 {
		h := asap.PoolHandle("echo")
		if i%2 == 1 {
			h = asap.PoolHandle(fmt.Sprintf("none-%d", i))
		}
		b, _ := (&asap.HandleResolution{Handle: h}).AppendBinary(nil)
		batch = append(batch, mapping.Msg{Buf: b, PPID: mapping.PPIDASAP})
	}
	if _, err := pu.c.(mapping.BatchConn).WriteBatch(batch); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		hr := expect[*asap.HandleResolutionResponse](pu, 5*time.Second)
		if want := (i%2 == 0); (len(hr.PEs) == 1) != want {
			t.Fatalf("answer %d: %+v", i, hr)
		}
	}

	// The element's association ends: it leaves the handlespace, and the
	// registrar forgets the association.
	pe.c.Close()
	waitFor(t, 5*time.Second, "element 7 still registered after its association ended", func() bool { return len(ids(r, "echo")) == 0 })
	waitFor(t, 5*time.Second, "the ended association is still served", func() bool { return connCount(r) == 1 })
}

func TestSCTPKeepAlive(t *testing.T) {
	requireSCTP(t)
	r, addr, _ := startSCTPRegistrar(t, Config{KeepAliveInterval: 100 * time.Millisecond, KeepAliveTimeout: 200 * time.Millisecond})
	alive := dialClientOver(t, "sctp", addr)
	silent := dialClientOver(t, "sctp", addr)
	alive.register("ka", sctpPE(1, 7))
	silent.register("ka", sctpPE(2, 7))
	for range 3 {
		ka := expect[*asap.EndpointKeepAlive](alive, 2*time.Second)
		if ka.Server != r.ID() || ka.Handle != "ka" {
			t.Fatalf("keep-alive %+v", ka)
		}
		alive.send(&asap.EndpointKeepAliveAck{Handle: "ka", ID: 1})
	}
	waitFor(t, 3*time.Second, "the silent element is still registered", func() bool {
		s := ids(r, "ka")
		return len(s) == 1 && s[0] == 1
	})
}

// TestSCTPManyAssociations sets up more associations at once than a
// listener's accept queue used to hold; each is served.
func TestSCTPManyAssociations(t *testing.T) {
	requireSCTP(t)
	r, addr, _ := startSCTPRegistrar(t, noKeepAlives())
	pe := dialClientOver(t, "sctp", addr)
	pe.register("many", sctpPE(1, 7))
	const peers = 200
	var wg sync.WaitGroup
	errs := make(chan error, peers)
	for range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var d mapping.Dialer
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := d.DialContext(ctx, "sctp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			b, _ := (&asap.HandleResolution{Handle: "many"}).AppendBinary(nil)
			if err := c.WriteMsg(b, mapping.PPIDASAP); err != nil {
				errs <- err
				return
			}
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			buf := make([]byte, 4096)
			n, _, err := c.ReadMsg(buf)
			if err != nil {
				errs <- err
				return
			}
			if m, err := asap.Unmarshal(buf[:n]); err != nil {
				errs <- err
			} else if hr, ok := m.(*asap.HandleResolutionResponse); !ok || len(hr.PEs) != 1 {
				errs <- fmt.Errorf("answer %+v", m)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitFor(t, 10*time.Second, "closed associations still served", func() bool { return connCount(r) == 1 })
}

// TestSCTPSlowPeerAborted floods the registrar over one association with
// resolutions whose answers are large, never reading them. When the
// socket's send buffer stays full for WriteTimeout, the registrar aborts
// that association, and meanwhile and after serves another.
func TestSCTPSlowPeerAborted(t *testing.T) {
	requireSCTP(t)
	const writeTimeout = 300 * time.Millisecond
	r, addr, _ := startSCTPRegistrar(t, Config{KeepAliveInterval: -1, WriteTimeout: writeTimeout})
	pe := dialClientOver(t, "sctp", addr)
	for id := asap.PEID(1); id <= 128; id++ {
		if resp := pe.register("big", sctpPE(id, uint16(id))); resp.Reject {
			t.Fatalf("registration %d refused: %+v", id, resp)
		}
	}
	slow := dialClientOver(t, "sctp", addr)
	slow.register("slow", sctpPE(1, 7))
	req := encode(t, &asap.HandleResolution{Handle: "big", Items: 0xffffffff})
	flooded := make(chan error, 1)
	go func() {
		slow.c.SetWriteDeadline(time.Now().Add(60 * time.Second))
		for {
			if err := slow.c.WriteMsg(req, mapping.PPIDASAP); err != nil {
				flooded <- err
				return
			}
		}
	}()
	other := dialClientOver(t, "sctp", addr)
	start := time.Now()
	for i := 0; ; i++ {
		if _, ok := r.Pool("slow"); !ok {
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatal("slow peer not aborted within a minute")
		}
		other.send(&asap.HandleResolution{Handle: "big", Items: 1})
		if hr := expect[*asap.HandleResolutionResponse](other, 10*time.Second); len(hr.PEs) != 1 {
			t.Fatalf("resolution during the flood: %+v", hr)
		}
	}
	select {
	case err := <-flooded:
		if err == nil {
			t.Fatal("flood ended without an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the slow peer can still write after it was aborted")
	}
	other.send(&asap.HandleResolution{Handle: "big", Items: 1})
	expect[*asap.HandleResolutionResponse](other, 5*time.Second)
}

func TestSCTPClose(t *testing.T) {
	requireSCTP(t)
	r, addr, served := startSCTPRegistrar(t, noKeepAlives())
	pu := dialClientOver(t, "sctp", addr)
	pu.send(&asap.HandleResolution{Handle: "x"})
	expect[*asap.HandleResolutionResponse](pu, 5*time.Second)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if !errors.Is(err, ErrRegistrarClosed) {
			t.Fatalf("Serve after Close: %v, want ErrRegistrarClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
	pu.expectClosed(5 * time.Second)
}
