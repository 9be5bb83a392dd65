package registrar_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/enrp"
	"github.com/rsp-go/rsp/internal/testhost"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/policy"
	"github.com/rsp-go/rsp/registrar"
)

// fastENRP are the ENRP timers of these tests: a dead peer is noticed
// within about 700 ms of its last presence, and a registrar starved of
// the CPU for a few hundred milliseconds (the race detector on a busy
// machine) is not taken over.
var fastENRP = registrar.ENRPConfig{
	HeartbeatInterval: 100 * time.Millisecond,
	MaxTimeLastHeard:  400 * time.Millisecond,
	MaxTimeNoResponse: 300 * time.Millisecond,
	TakeoverExpiry:    500 * time.Millisecond,
}

// member is one registrar of a test pool. Everything reaches it through
// proxies, so that it can be black-holed: asap for pool elements, and one
// proxy per peer for the ENRP connections it accepts.
type member struct {
	r     *registrar.Registrar
	asap  *testutil.Proxy
	enrp  map[int]*testutil.Proxy // the proxy peer i dials to reach this one
	index int
}

func (m *member) addr() string { return "tcp:" + m.asap.Addr() }

// blackHole makes m unreachable: no pool element, no peer hears it or
// is heard by it.
func (m *member) blackHole(pool []*member) {
	m.asap.BlackHole()
	for _, p := range m.enrp {
		p.BlackHole()
	}
	for _, o := range pool {
		if p := o.enrp[m.index]; p != nil {
			p.BlackHole()
		}
	}
}

// startPool starts n registrars with IDs 1..n, each a peer of all others
// over TCP through the proxies, and only through them (StaticPeers): the
// peer lists name the listeners themselves, which a black hole does not
// cut.
func startPool(t *testing.T, n int, tweak func(i int, cfg *registrar.Config)) []*member {
	t.Helper()
	// The listeners are open before the proxies in front of them dial
	// them, so that no port is left free for a proxy's connection to
	// itself to take.
	enrpLs := make([]mapping.Listener, n)
	for i := range enrpLs {
		enrpLs[i] = testutil.ListenTCP(t)
	}
	pool := make([]*member, n)
	for i := range pool {
		pool[i] = &member{index: i, enrp: make(map[int]*testutil.Proxy)}
		for j := range n {
			if j != i {
				pool[i].enrp[j] = testutil.StartProxy(t, enrpLs[i].Addr().String())
			}
		}
	}
	for i, m := range pool {
		cfg := registrar.Config{
			ID:                asap.ServerID(i + 1),
			KeepAliveInterval: 50 * time.Millisecond,
			KeepAliveTimeout:  2 * time.Second,
			ENRP:              fastENRP,
			Logger:            testutil.Logger(t, fmt.Sprintf("r%d", i+1)),
		}
		cfg.ENRP.StaticPeers = true
		for j, o := range pool {
			if j != i {
				cfg.ENRP.Peers = append(cfg.ENRP.Peers, "tcp:"+o.enrp[i].Addr())
			}
		}
		if tweak != nil {
			tweak(i, &cfg)
		}
		r, addr := testutil.StartRegistrar(t, cfg)
		testutil.ServeENRP(t, r, enrpLs[i])
		m.r = r
		m.asap = testutil.StartProxy(t, addr[len("tcp:"):])
	}
	for _, m := range pool {
		testutil.WaitFor(t, 5*time.Second, "the ENRP listener", func() bool { return len(m.r.ENRPAddrs()) > 0 })
		testutil.WaitFor(t, 30*time.Second, "the pool's registrars know each other", func() bool { return len(m.r.Peers()) == n-1 })
	}
	return pool
}

// homes returns the pool elements of r's handlespace with their homes.
func homes(r *registrar.Registrar) map[string]asap.ServerID {
	m := make(map[string]asap.ServerID)
	for _, p := range r.Pools() {
		for _, pe := range p.Elements {
			m[fmt.Sprintf("%s/%08x", p.Handle, uint32(pe.ID))] = pe.Home
		}
	}
	return m
}

func home(r *registrar.Registrar, h asap.PoolHandle, id asap.PEID) asap.ServerID {
	return homes(r)[fmt.Sprintf("%s/%08x", h, uint32(id))]
}

// waitRehomed waits up to within until the element pe registered (reg
// of pool "echo") has a new home among ms, known with that home at each
// of ms, and checks every poll for hold that it stays there.
func waitRehomed(t *testing.T, pe *endpoint.Endpoint, reg *endpoint.Registration, ms []*member, within, hold, poll time.Duration) {
	t.Helper()
	testutil.WaitFor(t, within, "the element's new home", func() bool {
		h := pe.Home()
		return slices.ContainsFunc(ms, func(m *member) bool { return m.r.ID() == h })
	})
	newHome := pe.Home()
	for _, m := range ms {
		testutil.WaitFor(t, 5*time.Second, "the new home at every registrar", func() bool { return home(m.r, "echo", reg.ID()) == newHome })
	}
	for start := time.Now(); time.Since(start) < hold; time.Sleep(poll) {
		for _, m := range ms {
			if got := home(m.r, "echo", reg.ID()); got != newHome {
				t.Fatalf("after %v at its new home r%d holds the element with home %08x, want %08x", time.Since(start), m.index+1, got, newHome)
			}
		}
	}
}

// peEndpoint is a pool element's ASAP endpoint that hunts among addrs. The
// TCP mapping's heartbeats notice a silent registrar within about a
// second: with a tighter timeout (200 ms) an element on a loaded machine,
// or in User-mode Linux's one slow CPU, left registrars that were alive
// and hopped between them, and the tests saw it elsewhere than they
// expected it.
func peEndpoint(t *testing.T, allow func(addr string) bool, addrs ...string) *endpoint.Endpoint {
	d := mapping.Dialer{Config: mapping.Config{HeartbeatInterval: 100 * time.Millisecond, HeartbeatTimeout: time.Second}}
	ep := endpoint.New(endpoint.Config{
		Registrars:     addrs,
		Reregistration: time.Minute,
		Dialer: func(ctx context.Context, network, address string) (mapping.Conn, error) {
			if allow != nil && !allow(network+":"+address) {
				return nil, fmt.Errorf("registrar %s is down for this test", address)
			}
			return d.DialContext(ctx, network, address)
		},
	})
	t.Cleanup(func() { ep.Close() })
	return ep
}

func elem(port uint16) asap.PoolElement {
	return asap.PoolElement{
		Life: time.Minute,
		UserTransport: asap.Transport{
			Kind: asap.ParamTCPTransport, Port: port, Use: asap.DataOnly,
			Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		},
		Policy: policy.Policy{Type: policy.RoundRobin},
	}
}

// registerEverywhere registers element 7 in pool echo through pe and
// waits until every registrar of pool has it, owned by owner.
func registerEverywhere(t *testing.T, ctx context.Context, pe *endpoint.Endpoint, pool []*member, owner asap.ServerID) *endpoint.Registration {
	t.Helper()
	reg, err := pe.Register(ctx, "echo", elem(7))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range pool {
		testutil.WaitFor(t, 5*time.Second, "the registration at every registrar", func() bool { return home(m.r, "echo", reg.ID()) == owner })
	}
	return reg
}

func TestPoolReplicatesRegistrations(t *testing.T) {
	pool := startPool(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pe := peEndpoint(t, nil, pool[0].addr())
	reg, err := pe.Register(ctx, "echo", elem(7))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range pool {
		testutil.WaitFor(t, 5*time.Second, "the registration at every registrar", func() bool { return home(m.r, "echo", reg.ID()) == pool[0].r.ID() })
		pu := endpoint.New(endpoint.Config{Registrars: []string{m.addr()}, CacheLifetime: -1})
		res, err := pu.Resolve(ctx, "echo")
		pu.Close()
		if err != nil || len(res.PEs) != 1 || res.PEs[0].ID != reg.ID() {
			t.Fatalf("resolution at r%d: %+v, %v; want %08x", m.index+1, res, err, reg.ID())
		}
	}
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range pool {
		testutil.WaitFor(t, 5*time.Second, "the deregistration at every registrar", func() bool { return len(homes(m.r)) == 0 })
	}
}

func TestPoolTakesOverADeadRegistrar(t *testing.T) {
	for _, how := range []string{"close", "black hole"} {
		t.Run(how, func(t *testing.T) {
			pool := startPool(t, 3, nil)
			a, b, c := pool[0], pool[1], pool[2]
			var aDead atomic.Bool
			// The element registers at a while a lives, then hunts among
			// the others.
			allow := func(addr string) bool { return aDead.Load() != (addr == a.addr()) }
			pe := peEndpoint(t, allow, a.addr(), b.addr(), c.addr())
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			reg := registerEverywhere(t, ctx, pe, pool, a.r.ID())

			aDead.Store(true)
			died := time.Now()
			if how == "close" {
				a.r.Close()
			} else {
				a.blackHole(pool)
			}
			for _, m := range []*member{b, c} {
				testutil.WaitFor(t, 10*time.Second, "the takeover of the dead registrar", func() bool {
					return !slices.Contains(m.r.Peers(), a.r.ID())
				})
			}
			took := time.Since(died)
			t.Logf("%s: takeover complete %v after the registrar's death", how, took.Round(time.Millisecond))
			// Silence from the last heartbeat (up to 100 ms before the
			// death) through last-heard and no-response, and a round trip.
			if limit := 5 * time.Second; took > limit {
				t.Errorf("takeover took %v, want under %v", took, limit)
			}
			// The element re-homes at b or c, is known there with its new
			// home at both, and answers keep-alives from it.
			waitRehomed(t, pe, reg, []*member{b, c}, 10*time.Second, 600*time.Millisecond, 20*time.Millisecond)
			pu := endpoint.New(endpoint.Config{Registrars: []string{b.addr()}, CacheLifetime: -1})
			defer pu.Close()
			if res, err := pu.Resolve(ctx, "echo"); err != nil || len(res.PEs) != 1 {
				t.Fatalf("resolution after the takeover: %+v, %v", res, err)
			}
		})
	}
}

func TestPoolPartitionHeals(t *testing.T) {
	pool := startPool(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := make(map[string]asap.ServerID)
	for _, m := range pool {
		pe := peEndpoint(t, nil, m.addr())
		for k := range 3 {
			reg, err := pe.Register(ctx, asap.PoolHandle(fmt.Sprintf("pool%d", k)), elem(uint16(100*m.index+k+1)))
			if err != nil {
				t.Fatal(err)
			}
			want[fmt.Sprintf("pool%d/%08x", k, uint32(reg.ID()))] = m.r.ID()
		}
	}
	for _, m := range pool {
		testutil.WaitFor(t, 5*time.Second, "every registration everywhere", func() bool { return len(homes(m.r)) == len(want) })
	}
	// a on one side, b and c on the other.
	a := pool[0]
	cut := []*testutil.Proxy{a.enrp[1], a.enrp[2], pool[1].enrp[0], pool[2].enrp[0]}
	for _, p := range cut {
		p.BlackHole()
	}
	testutil.WaitFor(t, 10*time.Second, "both sides take the other over", func() bool {
		return len(a.r.Peers()) == 0 && len(pool[1].r.Peers()) == 1 && len(pool[2].r.Peers()) == 1
	})
	for _, p := range cut {
		p.Restore()
	}
	defer func() {
		if t.Failed() {
			for _, m := range pool {
				t.Logf("r%d: peers %v, elements %v", m.index+1, m.r.Peers(), homes(m.r))
			}
		}
	}()
	testutil.WaitFor(t, 20*time.Second, "the pool converges", func() bool {
		for _, m := range pool {
			if len(m.r.Peers()) != 2 || !cmp.Equal(homes(m.r), want) {
				return false
			}
			for _, o := range pool {
				if m.r.Checksum(o.r.ID()) != pool[0].r.Checksum(o.r.ID()) {
					return false
				}
			}
		}
		return true
	})
}

func TestPoolSynchronisesALargeHandlespace(t *testing.T) {
	const n = 100000
	pool := startPool(t, 1, nil)
	a := pool[0].r
	a.InjectOwned("big", 1, n, elem(9))
	enrpAddr := a.ENRPAddrs()[0].String()
	start := time.Now()
	cfg := registrar.Config{ID: 99, ENRP: fastENRP}
	cfg.ENRP.Peers = []string{"tcp:" + enrpAddr}
	b, _ := testutil.StartRegistrar(t, cfg)
	want := a.Checksum(a.ID())
	testutil.WaitFor(t, 60*time.Second, "the new registrar to hold the handlespace", func() bool { return b.Checksum(a.ID()) == want })
	took := time.Since(start)
	if p, _ := b.Pool("big"); len(p.Elements) != n {
		t.Fatalf("new registrar holds %d elements, want %d", len(p.Elements), n)
	}
	t.Logf("%d elements synchronised in %v (%.0f elements/s)", n, took.Round(time.Millisecond), n/took.Seconds())
}

// TestENRPBadPeer speaks ENRP to a registrar by hand: malformed messages
// are answered with ENRP_ERROR, a claim on an element of another server is
// refused, and too many bad messages close the connection, all without
// touching the pool's registrations.
func TestENRPBadPeer(t *testing.T) {
	pool := startPool(t, 1, func(_ int, cfg *registrar.Config) { cfg.ENRP.MaxBadMessages = 5 })
	r := pool[0].r
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reg, err := peEndpoint(t, nil, pool[0].addr()).Register(ctx, "echo", elem(7))
	if err != nil {
		t.Fatal(err)
	}
	var d mapping.Dialer
	c, err := d.DialContext(ctx, "tcp", r.ENRPAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	send := func(m enrp.Message) {
		b, err := m.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.WriteMsg(b, mapping.PPIDENRP); err != nil {
			t.Fatal(err)
		}
	}
	// recv returns the next message of type typ.
	recv := func(typ enrp.MessageType) (enrp.Message, error) {
		buf := make([]byte, 65536)
		for {
			n, _, err := c.ReadMsg(buf)
			if err != nil {
				return nil, err
			}
			if m, _ := enrp.Unmarshal(buf[:n]); m != nil && m.Type() == typ {
				return m, nil
			}
		}
	}
	const me = 0x77
	send(&enrp.Presence{Header: enrp.Header{Sender: me}, Checksum: 0xffff})
	// A claim: an element whose home is r, from me.
	pe := elem(8)
	pe.ID, pe.Home = 42, r.ID()
	send(&enrp.HandleUpdate{Header: enrp.Header{Sender: me}, Action: enrp.AddPE, Handle: "echo", PE: pe})
	m, err := recv(enrp.TypeError)
	if err != nil {
		t.Fatal(err)
	}
	if e := m.(*enrp.Error); len(e.Causes) != 1 || e.Causes[0].Code != asap.CauseRejectedSecurity {
		t.Fatalf("answer to a claim: %+v", e)
	}
	// Garbage with a sender: invalid values.
	c.WriteMsg([]byte{byte(enrp.TypePresence), 0, 0, 12, 0, 0, 0, me, 0, 0, 0, 0}, mapping.PPIDENRP)
	m, err = recv(enrp.TypeError)
	if err != nil {
		t.Fatal(err)
	}
	if e := m.(*enrp.Error); e.Causes[0].Code != asap.CauseInvalidValues {
		t.Fatalf("answer to a malformed presence: %+v", e)
	}
	for range 5 {
		c.WriteMsg([]byte{1, 2, 3}, mapping.PPIDENRP)
	}
	if _, err := recv(0xff); err == nil {
		t.Fatal("connection not closed after too many bad messages")
	}
	if got := homes(r); !cmp.Equal(got, map[string]asap.ServerID{fmt.Sprintf("echo/%08x", uint32(reg.ID())): r.ID()}) {
		t.Fatalf("handlespace after the bad peer: %v", got)
	}
}

// TestPoolOverSCTP is a pool of three registrars speaking ENRP over SCTP
// (PPID 12) on loopback, where the kernel has SCTP: a registration at one
// is at all three, and a registrar that closes is taken over.
func TestPoolOverSCTP(t *testing.T) {
	if !mapping.SCTPSupported() {
		t.Skip("the kernel has no SCTP; run with .ci/uml/test-sctp")
	}
	addrs := make([]string, 3)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("sctp:127.0.0.1:%d", 9921+i)
	}
	rs := make([]*registrar.Registrar, 3)
	var asapAddrs []string
	for i := range rs {
		cfg := registrar.Config{ID: asap.ServerID(i + 1), ENRP: fastENRP, Logger: testutil.Logger(t, fmt.Sprintf("r%d", i+1))}
		cfg.ENRP.Listen = []string{addrs[i]}
		for j, a := range addrs {
			if j != i {
				cfg.ENRP.Peers = append(cfg.ENRP.Peers, a)
			}
		}
		r, addr := testutil.StartRegistrar(t, cfg)
		rs[i], asapAddrs = r, append(asapAddrs, addr)
	}
	for _, r := range rs {
		testutil.WaitFor(t, 10*time.Second, "the registrars to peer over SCTP", func() bool { return len(r.Peers()) == 2 })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reg, err := peEndpoint(t, nil, asapAddrs[0]).Register(ctx, "echo", elem(7))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		testutil.WaitFor(t, 5*time.Second, "the registration at every registrar", func() bool { return home(r, "echo", reg.ID()) == rs[0].ID() })
	}
	rs[0].Close()
	testutil.WaitFor(t, 10*time.Second, "the takeover", func() bool {
		h := home(rs[1], "echo", reg.ID())
		return (h == rs[1].ID() || h == rs[2].ID()) && h == home(rs[2], "echo", reg.ID()) && len(rs[1].Peers()) == 1
	})
}

// TestPoolLearnsPeersFromPeerLists: registrars 2 and 3 are configured with
// registrar 1 only; each asks it for its peer list, and the one that
// learns of the other from it connects, so that the three form a full
// mesh and a registration at 2 reaches 3 directly even once 1 is gone.
func TestPoolLearnsPeersFromPeerLists(t *testing.T) {
	start := func(id asap.ServerID, peers ...string) (*registrar.Registrar, string) {
		cfg := registrar.Config{
			ID:                id,
			KeepAliveInterval: 50 * time.Millisecond,
			KeepAliveTimeout:  2 * time.Second,
			ENRP:              fastENRP,
			Logger:            testutil.Logger(t, fmt.Sprintf("r%d", id)),
		}
		cfg.ENRP.Peers = peers
		r, addr := testutil.StartRegistrar(t, cfg)
		testutil.ServeENRP(t, r, testutil.ListenTCP(t))
		testutil.WaitFor(t, 5*time.Second, "the ENRP listener", func() bool { return len(r.ENRPAddrs()) > 0 })
		return r, addr
	}
	r1, _ := start(1)
	r1ENRP := "tcp:" + r1.ENRPAddrs()[0].String()
	r2, r2addr := start(2, r1ENRP)
	testutil.WaitFor(t, 10*time.Second, "registrar 1 knows registrar 2", func() bool { return slices.Contains(r1.Peers(), 2) })
	r3, _ := start(3, r1ENRP)
	for _, r := range []*registrar.Registrar{r1, r2, r3} {
		testutil.WaitFor(t, 10*time.Second, "every registrar knows both others", func() bool { return len(r.Peers()) == 2 })
	}
	if got := r3.Peers(); !slices.Equal(got, []asap.ServerID{1, 2}) {
		t.Fatalf("registrar 3's peers %v, want 1 and 2", got)
	}
	r1.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reg, err := peEndpoint(t, nil, r2addr).Register(ctx, "learnt", elem(7001))
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the registration at 2 reaches 3 without 1", func() bool { return home(r3, "learnt", reg.ID()) == 2 })
}

// TestNewRegistrarServesAfterItsMentor: a registrar that joins a pool of
// two serves pool users only once its mentor's handlespace has arrived,
// and then answers with the elements of both; one whose mentor never
// answers serves after MentorWait.
func TestNewRegistrarServesAfterItsMentor(t *testing.T) {
	pool := startPool(t, 2, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, m := range pool {
		if _, err := peEndpoint(t, nil, m.addr()).Register(ctx, asap.PoolHandle(fmt.Sprintf("pool%d", i+1)), elem(uint16(7100+i))); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range pool {
		testutil.WaitFor(t, 10*time.Second, "both registrations everywhere", func() bool { return len(homes(m.r)) == 2 })
	}
	resolve := func(addr string, h asap.PoolHandle, d time.Duration) (endpoint.Resolution, error) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		pu := endpoint.New(endpoint.Config{Registrars: []string{addr}, CacheLifetime: -1})
		defer pu.Close()
		return pu.Resolve(ctx, h)
	}
	mentor := testutil.StartProxy(t, pool[0].r.ENRPAddrs()[0].String())
	mentor.BlackHole()
	start := func(id asap.ServerID, wait time.Duration) (*registrar.Registrar, string) {
		cfg := registrar.Config{ID: id, ENRP: fastENRP, Logger: testutil.Logger(t, fmt.Sprintf("r%d", id))}
		cfg.ENRP.Peers = []string{"tcp:" + mentor.Addr()}
		cfg.ENRP.MentorWait = wait
		r, addr := testutil.StartRegistrar(t, cfg)
		testutil.ServeENRP(t, r, testutil.ListenTCP(t))
		return r, addr
	}
	r3, addr3 := start(3, time.Minute)
	if res, err := resolve(addr3, "pool1", 700*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a registrar without its mentor's handlespace answered: %+v, %v", res, err)
	}
	mentor.Restore()
	for i := range pool {
		h := asap.PoolHandle(fmt.Sprintf("pool%d", i+1))
		res, err := resolve(addr3, h, 20*time.Second)
		if err != nil || len(res.PEs) != 1 {
			t.Fatalf("first resolution of %s at the new registrar: %+v, %v; want its element", h, res, err)
		}
	}
	testutil.WaitFor(t, 10*time.Second, "the new registrar peers with both", func() bool { return slices.Equal(r3.Peers(), []asap.ServerID{1, 2}) })

	// A mentor that never answers holds a registrar back MentorWait only.
	mentor.BlackHole()
	began := time.Now()
	_, addr4 := start(4, time.Second)
	if _, err := resolve(addr4, "pool1", 15*time.Second); errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a registrar whose mentor is silent does not serve after MentorWait: %v", err)
	}
	if d := time.Since(began); d < time.Second {
		t.Errorf("served after %v, before MentorWait", d)
	}
}

// TestPoolTakeoverMovesSCTPElementHome: a pool element registered over
// SCTP at a registrar that goes silent (its ENRP links and its ASAP
// association black-holed, as a dead host looks) is taken over by another
// registrar of the pool, whose keep-alive with the H flag reaches it on an
// association to its ASAP transport address. The element answers there and
// is home at the new registrar at every registrar of the pool without a
// hunt or a registration: it dials no registrar again.
func TestPoolTakeoverMovesSCTPElementHome(t *testing.T) {
	if !mapping.SCTPSupported() {
		t.Skip("the kernel has no SCTP; run with .ci/uml/test-sctp")
	}
	if ok, why := testhost.Available(); !ok {
		t.Skip(why)
	}
	pool := startPool(t, 3, nil)
	a, b, c := pool[0], pool[1], pool[2]
	sl, err := a.r.Listen(context.Background(), "sctp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go a.r.Serve(sl)
	port, err := strconv.Atoi(sl.Addr().String()[strings.LastIndexByte(sl.Addr().String(), ':')+1:])
	if err != nil {
		t.Fatal(err)
	}

	var dials atomic.Int32
	d := mapping.Dialer{}
	pe := endpoint.New(endpoint.Config{
		Registrars:     []string{"sctp:" + sl.Addr().String()},
		Reregistration: time.Hour, // no periodic re-registration within the test
		Dialer: func(ctx context.Context, network, address string) (mapping.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, network, address)
		},
		Logger: testutil.Logger(t, "pe"),
	})
	t.Cleanup(func() { pe.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg := registerEverywhere(t, ctx, pe, pool, a.r.ID())
	testutil.WaitFor(t, 5*time.Second, "the element to know its home", func() bool { return pe.Home() == a.r.ID() })

	testhost.BlackholePort(t, port)
	a.blackHole(pool)

	// Keep-alives at the new home go on being answered: the element stays
	// there, well past the registrar's KeepAliveTimeout.
	waitRehomed(t, pe, reg, []*member{b, c}, 15*time.Second, 3*time.Second, 50*time.Millisecond)
	if n := dials.Load(); n != 1 {
		t.Errorf("the element dialed a registrar %d times, want once: it hunted instead of being taken over", n)
	}
	// The element's requests go to its new home on the association that
	// registrar opened: an update is answered.
	if err := reg.Update(ctx, policy.Policy{Type: policy.RoundRobin}); err != nil {
		t.Fatalf("update at the new home: %v", err)
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("the element dialed a registrar %d times after an update, want once", n)
	}
}
