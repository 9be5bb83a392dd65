package registrar_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/mcast"
	"github.com/rsp-go/rsp/internal/testhost"
	"github.com/rsp-go/rsp/policy"
	"github.com/rsp-go/rsp/registrar"
)

// announceGroup returns a multicast group with a port of its own for one
// test.
func announceGroup(t *testing.T) string {
	t.Helper()
	return multicastGroup(t, "239.0.0.50")
}

// multicastGroup returns group address g with a port of its own for one
// test.
func multicastGroup(t *testing.T, g string) string {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(testhost.Addr)})
	if err != nil {
		t.Fatal(err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	return fmt.Sprintf("%s:%d", g, port)
}

// announcingRegistrar serves ASAP over TCP on the test host's address and
// announces it in group.
func announcingRegistrar(t *testing.T, group string, interval time.Duration) (*registrar.Registrar, string) {
	t.Helper()
	r := registrar.New(registrar.Config{
		Announce: group, AnnounceInterface: testhost.Interface,
		AnnounceInterval: interval, AnnounceTimeout: 5 * interval,
	})
	l, err := registrar.Listen(context.Background(), "tcp", testhost.Addr+":0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve(l) }()
	t.Cleanup(func() {
		r.Close()
		if err := <-served; !errors.Is(err, registrar.ErrRegistrarClosed) {
			t.Errorf("Serve returned %v, want ErrRegistrarClosed", err)
		}
	})
	return r, l.Addr().String()
}

// TestServerAnnounceContents checks that a registrar sends
// ASAP_SERVER_ANNOUNCE to its group with its server identifier and its TCP
// listener, at its announce interval.
func TestServerAnnounceContents(t *testing.T) {
	testhost.RequireMulticast(t)
	group := announceGroup(t)
	rx, err := mcast.Listen(group, testhost.Interface)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	r, addr := announcingRegistrar(t, group, 100*time.Millisecond)

	buf := make([]byte, 65536)
	var times []time.Time
	for len(times) < 5 {
		rx.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, _, err := rx.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("after %d announces: %v", len(times), err)
		}
		var m asap.ServerAnnounce
		if err := m.UnmarshalBinary(buf[:n]); err != nil {
			t.Fatalf("announce does not decode: %v", err)
		}
		if m.Server != r.ID() {
			t.Fatalf("announce from server %08x, want %08x", m.Server, r.ID())
		}
		want := netip.MustParseAddrPort(addr)
		if len(m.Transports) != 1 || m.Transports[0].Kind != asap.ParamTCPTransport ||
			m.Transports[0].Port != want.Port() || !slices.Equal(m.Transports[0].Addrs, []netip.Addr{want.Addr()}) {
			t.Fatalf("announced transports %+v, want TCP %v", m.Transports, want)
		}
		times = append(times, time.Now())
	}
	if period := times[4].Sub(times[0]) / 4; period < 50*time.Millisecond || period > time.Second {
		t.Fatalf("announce period %v, want about 100ms", period)
	}
}

// TestAnnouncePeriodScalesWithPeers checks the (N+1) × T6 rule: a registrar
// that hears another one in its group announces half as often.
//
// The two registrars are counted at the same time, over one window that
// ends when the one alone has announced 20 times: in User-mode Linux on a
// loaded host the process is now and then not run for a while, and two
// windows counted one after the other (2 s each, as before) saw 7
// announces each, the one alone starved in its window and the other not.
// Counted together, a stall delays both.
func TestAnnouncePeriodScalesWithPeers(t *testing.T) {
	testhost.RequireMulticast(t)
	const interval = 100 * time.Millisecond
	const want = 20 // announces alone: about 2 s
	listen := func(group string) *net.UDPConn {
		rx, err := mcast.Listen(group, testhost.Interface)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rx.Close() })
		return rx
	}
	stop := make(chan struct{})
	var once sync.Once
	end := func() { once.Do(func() { close(stop) }) }
	// count counts id's announces on rx until stop is closed or, if
	// enough is set, it has that many (then it ends the window).
	count := func(rx *net.UDPConn, id asap.ServerID, enough int, n *int) {
		buf := make([]byte, 65536)
		for {
			select {
			case <-stop:
				return
			default:
			}
			rx.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			k, _, err := rx.ReadFromUDPAddrPort(buf)
			if err != nil {
				continue
			}
			var m asap.ServerAnnounce
			if m.UnmarshalBinary(buf[:k]) == nil && m.Server == id {
				*n++
				if *n == enough {
					end()
					return
				}
			}
		}
	}
	alone, shared := announceGroup(t), announceGroup(t)
	r1, _ := announcingRegistrar(t, alone, interval)
	r2, _ := announcingRegistrar(t, shared, interval)
	announcingRegistrar(t, shared, interval)
	time.Sleep(5 * interval) // each of the pair hears the other
	rx1, rx2 := listen(alone), listen(shared)

	var n1, n2 int
	done := make(chan struct{})
	start := time.Now()
	go func() { defer close(done); count(rx2, r2.ID(), 0, &n2) }()
	timeout := time.AfterFunc(10*time.Second, end)
	count(rx1, r1.ID(), want, &n1)
	timeout.Stop()
	end()
	<-done
	t.Logf("in %v: %d announces alone, %d beside another registrar", time.Since(start).Round(time.Millisecond), n1, n2)
	if n1 < want {
		t.Fatalf("%d announces alone in 10 s, want %d in about 2 s", n1, want)
	}
	if float64(n2) > 0.75*float64(n1) || n2 < n1/4 {
		t.Fatalf("%d announces beside another registrar, %d alone: want about half", n2, n1)
	}
}

// TestEndpointFindsRegistrarByAnnounce checks that a pool element with no
// registrar configured finds one through its announces, registers there,
// and forgets it once its announces stop for AnnounceTimeout.
func TestEndpointFindsRegistrarByAnnounce(t *testing.T) {
	testhost.RequireMulticast(t)
	t.Setenv(endpoint.EnvRegistrars, "")
	group := announceGroup(t)
	ep := endpoint.New(endpoint.Config{
		Announces: group, AnnounceInterface: testhost.Interface,
		AnnounceTimeout: 500 * time.Millisecond, ConnectTimeout: 3 * time.Second,
	})
	defer ep.Close()

	var registered atomic.Bool
	done := make(chan error, 1)
	go func() {
		// Started before the registrar: the hunt waits for an announce.
		reg, err := ep.Register(context.Background(), "announced", asap.PoolElement{
			UserTransport: asap.Transport{Kind: asap.ParamTCPTransport, Port: 7, Addrs: []netip.Addr{netip.MustParseAddr(testhost.Addr)}},
			Policy:        policy.Policy{Type: policy.RoundRobin},
		})
		if err == nil {
			registered.Store(true)
			t.Cleanup(func() { reg.Close(context.Background()) })
		}
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	if registered.Load() {
		t.Fatal("registered before any registrar announced")
	}
	r, addr := announcingRegistrar(t, group, 100*time.Millisecond)
	if err := <-done; err != nil {
		t.Fatalf("registration through an announced registrar: %v", err)
	}
	if p, ok := r.Pool("announced"); !ok || len(p.Elements) != 1 {
		t.Fatalf("the announcing registrar holds %+v, want the pool element", p)
	}
	if got, want := ep.Announced(), []string{"tcp:" + addr}; !slices.Equal(got, want) {
		t.Fatalf("announced registrars %v, want %v", got, want)
	}

	r.Close()
	deadline := time.Now().Add(3 * time.Second)
	for len(ep.Announced()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("registrar still listed %v after its announces stopped", ep.Announced())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEndpointWaitsForAnnounceAndGivesUp checks that a hunt with no
// registrar configured waits for an announce up to the connect timeout and
// then fails with ErrNoRegistrar.
func TestEndpointWaitsForAnnounceAndGivesUp(t *testing.T) {
	testhost.RequireMulticast(t)
	t.Setenv(endpoint.EnvRegistrars, "")
	ep := endpoint.New(endpoint.Config{
		Announces: announceGroup(t), AnnounceInterface: testhost.Interface,
		ConnectTimeout: 300 * time.Millisecond, RequestTimeout: 300 * time.Millisecond,
	})
	defer ep.Close()
	start := time.Now()
	_, err := ep.Resolve(context.Background(), "nobody")
	if !errors.Is(err, endpoint.ErrNoRegistrar) {
		t.Fatalf("Resolve with no registrar announced: %v, want ErrNoRegistrar", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("gave up after %v, want about the connect timeout", d)
	}
}
