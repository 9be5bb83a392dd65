//go:build linux

package interop

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/rsplibtest"
	"github.com/rsp-go/rsp/internal/testhost"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/policy"
	"github.com/rsp-go/rsp/registrar"
)

// rsplib's registrar with ENRP timers a little faster than its defaults,
// so that its takeover fits the test: heartbeat 1 s, last heard 2 s, no
// response 1 s, takeover expiry 2 s.
var rsplibPeerTimers = []string{
	"-peerheartbeatcycle=1000", "-peermaxtimelastheard=2000",
	"-peermaxtimenoresponse=1000", "-takeoverexpiryinterval=2000",
}

// enrpPair is an rsp registrar and an rsplib registrar that are ENRP
// peers over SCTP.
type enrpPair struct {
	rsp       *registrar.Registrar
	rsplibPid int
	rsplibID  asap.ServerID
}

const (
	rspASAP    = 3873
	rspENRP    = 9911
	rsplibASAP = 3863
	rsplibENRP = 9901
)

// startRSP starts an rsp registrar with ASAP and ENRP over SCTP on the
// test host, its ENRP peers at the ports peers.
func startRSP(t *testing.T, id asap.ServerID, asapPort, enrpPort int, cfg registrar.ENRPConfig, peers ...int) *registrar.Registrar {
	t.Helper()
	cfg.Listen = []string{fmt.Sprintf("sctp:%s:%d", hostAddr, enrpPort)}
	for _, p := range peers {
		cfg.Peers = append(cfg.Peers, fmt.Sprintf("sctp:%s:%d", hostAddr, p))
	}
	r := registrar.New(registrar.Config{
		ID: id, ENRP: cfg, Logger: testutil.Logger(t, fmt.Sprintf("rsp %08x", uint32(id))),
		KeepAliveInterval: 500 * time.Millisecond, KeepAliveTimeout: time.Second,
	})
	t.Cleanup(func() { r.Close() })
	l, err := registrar.Listen(context.Background(), "sctp", fmt.Sprintf("%s:%d", hostAddr, asapPort))
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(l)
	return r
}

// startRsplib starts rsplib's registrar with its ENRP peers at the ports
// peers, and returns its process identifier.
func startRsplib(t *testing.T, peers ...int) int {
	t.Helper()
	args := append([]string(nil), rsplibPeerTimers...)
	for _, p := range peers {
		args = append(args, fmt.Sprintf("-peer=%s:%d", hostAddr, p))
	}
	return rsplibtest.StartRegistrar(t, rsplibASAP, rsplibENRP, args...)
}

func startENRPPair(t *testing.T) *enrpPair {
	t.Helper()
	rsplibtest.Require(t)
	r := startRSP(t, 0x0000abcd, rspASAP, rspENRP, registrar.ENRPConfig{}, rsplibENRP)
	pid := startRsplib(t, rspENRP)
	p := &enrpPair{rsp: r, rsplibPid: pid}
	testutil.WaitFor(t, 20*time.Second, "the rsp registrar to peer with rsplib's", func() bool { return len(r.Peers()) == 1 })
	p.rsplibID = r.Peers()[0]
	t.Logf("rsplib's registrar is %08x", uint32(p.rsplibID))
	return p
}

// homeAt returns the home of element id of pool h in r's handlespace, or 0.
func homeAt(r *registrar.Registrar, h asap.PoolHandle, id asap.PEID) asap.ServerID {
	if p, ok := r.Pool(h); ok {
		for _, pe := range p.Elements {
			if pe.ID == id {
				return pe.Home
			}
		}
	}
	return 0
}

// hsdumpHome returns the home registrar hsdump shows for element id at
// the registrar whose ENRP address is enrp, or 0.
func hsdumpHome(t *testing.T, enrp string, id asap.PEID) (asap.ServerID, string) {
	text := hsdump(t, enrp)
	// An element is printed as "$xxxxxxxx flags=...", and on the next
	// line "chsum=$... home=$yyyyyyyy ...".
	re := regexp.MustCompile(`\$` + fmt.Sprintf("%08x", uint32(id)) + ` [^\n]*\n\s*chsum=\S+ home=\$([0-9a-f]{8})`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return 0, text
	}
	var home uint32
	fmt.Sscanf(m[1], "%x", &home)
	return asap.ServerID(home), text
}

// rsplibElement starts rsplib's rspserver, an echo pool element, at the
// registrar at asapPort and returns its identifier as the rsp registrar
// learns it.
func rsplibElement(t *testing.T, p *enrpPair, asapPort int) asap.PEID {
	rsplibtest.Start(t, nil, "rspserver", "-echo", fmt.Sprintf("-registrar=%s:%d", hostAddr, asapPort), "-asapannounce=off")
	var id asap.PEID
	testutil.WaitFor(t, 20*time.Second, "rspserver's element in the rsp registrar's handlespace", func() bool {
		if pool, ok := p.rsp.Pool("EchoPool"); ok && len(pool.Elements) > 0 {
			id = pool.Elements[0].ID
			return true
		}
		return false
	})
	return id
}

// rspElement registers an rsp pool element over SCTP at the registrars
// listed (the first one first).
func rspElement(t *testing.T, registrars ...string) *endpoint.Registration {
	ep := endpoint.New(endpoint.Config{Registrars: registrars, Reregistration: 2 * time.Second})
	t.Cleanup(func() { ep.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pe := asap.PoolElement{
		UserTransport: asap.Transport{Kind: asap.ParamSCTPTransport, Port: 7777, Use: asap.DataOnly, Addrs: []netip.Addr{netip.MustParseAddr(hostAddr)}},
		Policy:        policy.Policy{Type: policy.RoundRobin},
	}
	reg, err := ep.Register(ctx, "RspPool", pe)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// TestENRPWithRsplibRegistrar: an rsp registrar and rsplib's registrar
// peer over SCTP; an element registered at either is in both
// handlespaces with the same home, and hsdump shows both at both.
func TestENRPWithRsplibRegistrar(t *testing.T) {
	p := startENRPPair(t)
	rsplibPE := rsplibElement(t, p, rsplibASAP)
	rspPE := rspElement(t, fmt.Sprintf("sctp:%s:%d", hostAddr, rspASAP)).ID()
	if got := homeAt(p.rsp, "EchoPool", rsplibPE); got != p.rsplibID {
		t.Errorf("rsplib's element's home at rsp: %08x, want %08x", got, p.rsplibID)
	}
	for _, enrp := range []string{fmt.Sprintf("%s:%d", hostAddr, rsplibENRP), fmt.Sprintf("%s:%d", hostAddr, rspENRP)} {
		var text string
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Second) {
			var h1, h2 asap.ServerID
			h1, text = hsdumpHome(t, enrp, rspPE)
			h2, _ = hsdumpHome(t, enrp, rsplibPE)
			if h1 == p.rsp.ID() && h2 == p.rsplibID {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("hsdump at %s does not show %08x with home %08x and %08x with home %08x:\n%s", enrp, uint32(rspPE), uint32(p.rsp.ID()), uint32(rsplibPE), uint32(p.rsplibID), text)
			}
		}
		t.Logf("hsdump %s:\n%s", enrp, text)
	}
	// Both resolve both pools.
	for _, reg := range []int{rspASAP, rsplibASAP} {
		pu := endpoint.New(endpoint.Config{Registrars: []string{fmt.Sprintf("sctp:%s:%d", hostAddr, reg)}, CacheLifetime: -1})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for h, id := range map[asap.PoolHandle]asap.PEID{"RspPool": rspPE, "EchoPool": rsplibPE} {
			res, err := pu.Resolve(ctx, h)
			if err != nil || !slices.ContainsFunc(res.PEs, func(pe asap.PoolElement) bool { return pe.ID == id }) {
				t.Errorf("resolving %s at the registrar on port %d: %+v, %v; want %08x", h, reg, res, err, uint32(id))
			}
		}
		cancel()
		pu.Close()
	}
	// The checksums agree: nobody resynchronises in a loop.
	if a, b := p.rsp.Checksum(p.rsplibID), p.rsp.Checksum(p.rsp.ID()); a == 0 || b == 0 {
		t.Errorf("checksums %04x %04x", a, b)
	}
}

// TestENRPRsplibTakesOverRSP: when an rsp registrar dies, rsplib's takes
// over its elements. rsplib 3.4.4 completes a takeover only on the
// acknowledgement of another peer (with none it lets the takeover expire
// and drops the peer), so the pool has a third registrar, rsp again, with
// slower timers and a higher identifier, which acknowledges rsplib's
// takeover and shows its outcome: the element's home is rsplib's in its
// handlespace. rsplib then probes the element with a home-flagged
// keep-alive on an association to the element's ASAP transport address,
// where rsp's element takes it (not asserted here).
func TestENRPRsplibTakesOverRSP(t *testing.T) {
	rsplibtest.Require(t)
	const bASAP, bENRP = 3874, 9912
	a := startRSP(t, 0x0000abcd, rspASAP, rspENRP, registrar.ENRPConfig{}, rsplibENRP, bENRP)
	b := startRSP(t, 0xfffffff0, bASAP, bENRP, registrar.ENRPConfig{MaxTimeLastHeard: 6 * time.Second, MaxTimeNoResponse: 4 * time.Second}, rsplibENRP, rspENRP)
	startRsplib(t, rspENRP, bENRP)
	testutil.WaitFor(t, 20*time.Second, "the three registrars to peer", func() bool { return len(a.Peers()) == 2 && len(b.Peers()) == 2 })
	var rsplibID asap.ServerID
	for _, id := range b.Peers() {
		if id != a.ID() {
			rsplibID = id
		}
	}
	rspPE := rspElement(t, fmt.Sprintf("sctp:%s:%d", hostAddr, rspASAP)).ID()
	testutil.WaitFor(t, 10*time.Second, "the element at the other rsp registrar", func() bool { return homeAt(b, "RspPool", rspPE) == a.ID() })
	a.Close()
	died := time.Now()
	testutil.WaitFor(t, 20*time.Second, "rsplib's takeover of the dead registrar's element", func() bool { return homeAt(b, "RspPool", rspPE) == rsplibID })
	t.Logf("rsplib (%08x) took the element over %v after the rsp registrar closed", uint32(rsplibID), time.Since(died).Round(100*time.Millisecond))
	if h, text := hsdumpHome(t, fmt.Sprintf("%s:%d", hostAddr, rsplibENRP), rspPE); h != rsplibID && h != 0 {
		t.Errorf("hsdump at rsplib shows home %08x, want %08x:\n%s", uint32(h), uint32(rsplibID), text)
	}
}

// TestENRPRSPTakesOverRsplib: when rsplib's registrar dies, the rsp
// registrar takes over its elements, tells them with home-flagged
// keep-alives, and keeps them with its keep-alives.
func TestENRPRSPTakesOverRsplib(t *testing.T) {
	p := startENRPPair(t)
	rsplibPE := rsplibElement(t, p, rsplibASAP)
	died := time.Now()
	if err := syscall.Kill(p.rsplibPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the rsp registrar to take rsplib's element over", func() bool {
		return homeAt(p.rsp, "EchoPool", rsplibPE) == p.rsp.ID() && len(p.rsp.Peers()) == 0
	})
	t.Logf("rsp took over %v after rsplib's registrar was killed", time.Since(died).Round(10*time.Millisecond))
	// The element hears that rsp is its home (a keep-alive with the H
	// flag on an association rsp opens to it) and answers rsp's
	// keep-alives from then on: with a 1 s keep-alive timeout, one that
	// did not would be gone.
	testutil.WaitFor(t, 10*time.Second, "rsp's association to the taken-over element", func() bool { return p.rsp.Conns() == 1 })
	time.Sleep(4 * time.Second)
	if h := homeAt(p.rsp, "EchoPool", rsplibPE); h != p.rsp.ID() || p.rsp.Conns() != 1 {
		t.Fatalf("4 s after the home keep-alive: element's home %08x, %d connections; want %08x and the association kept", uint32(h), p.rsp.Conns(), uint32(p.rsp.ID()))
	}
	text := hsdump(t, fmt.Sprintf("%s:%d", hostAddr, rspENRP))
	if !strings.Contains(text, fmt.Sprintf("$%08x", uint32(rsplibPE))) {
		t.Errorf("hsdump at rsp lacks the taken-over element:\n%s", text)
	}
}

// TestENRPFindsRsplibByMulticast: an rsp registrar and rsplib's, neither
// configured with the other, send ENRP presences to one multicast group
// (rsplib's -enrpannounce) and become peers; an element registered at the
// rsp registrar shows in rsplib's handlespace with its home.
func TestENRPFindsRsplibByMulticast(t *testing.T) {
	rsplibtest.Require(t)
	group := fmt.Sprintf("239.0.0.51:%d", 9931)
	args := append([]string{"-enrpannounce=" + group}, rsplibPeerTimers...)
	rsplibtest.StartRegistrar(t, rsplibASAP, rsplibENRP, args...)
	r := startRSP(t, 0x0000abce, rspASAP, rspENRP, registrar.ENRPConfig{Announce: group, AnnounceInterface: testhost.Interface})
	testutil.WaitFor(t, 20*time.Second, "the rsp registrar to find rsplib's by multicast", func() bool { return len(r.Peers()) == 1 })
	rsplibID := r.Peers()[0]
	reg := rspElement(t, fmt.Sprintf("sctp:%s:%d", hostAddr, rspASAP))
	var text string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		var h asap.ServerID
		if h, text = hsdumpHome(t, fmt.Sprintf("%s:%d", hostAddr, rsplibENRP), reg.ID()); h == r.ID() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsplib's registrar %08x does not show %08x with home %08x:\n%s", uint32(rsplibID), uint32(reg.ID()), uint32(r.ID()), text)
		}
	}
}
