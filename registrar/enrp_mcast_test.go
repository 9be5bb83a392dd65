package registrar_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/internal/testhost"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/registrar"
)

// TestPoolDiscoversPeersByMulticast: three registrars configured with no
// peers, sending ENRP presences to one multicast group on the test host,
// find each other and replicate a registration; a fourth allowed one peer
// connects to no more, and none takes itself for a peer.
func TestPoolDiscoversPeersByMulticast(t *testing.T) {
	testhost.RequireMulticast(t)
	group := multicastGroup(t, "239.0.0.51")
	start := func(id asap.ServerID, maxPeers int) (*registrar.Registrar, string) {
		cfg := registrar.Config{ID: id, ENRP: fastENRP, Logger: testutil.Logger(t, fmt.Sprintf("r%d", id))}
		cfg.ENRP.Listen = []string{"tcp:" + testhost.Addr + ":0"}
		cfg.ENRP.Announce = group
		cfg.ENRP.AnnounceInterface = testhost.Interface
		cfg.ENRP.MaxPeers = maxPeers
		return testutil.StartRegistrar(t, cfg)
	}
	var rs []*registrar.Registrar
	var addrs []string
	for id := range asap.ServerID(3) {
		r, addr := start(id+1, 0)
		rs, addrs = append(rs, r), append(addrs, addr)
	}
	for _, r := range rs {
		var want []asap.ServerID
		for _, o := range rs {
			if o != r {
				want = append(want, o.ID())
			}
		}
		testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("registrar %d to find the others by multicast", r.ID()), func() bool { return slices.Equal(r.Peers(), want) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg, err := peEndpoint(t, nil, addrs[0]).Register(ctx, "found", elem(7201))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs[1:] {
		testutil.WaitFor(t, 5*time.Second, "the registration at the registrars found by multicast", func() bool { return home(r, "found", reg.ID()) == rs[0].ID() })
	}

	r4, _ := start(4, 1)
	testutil.WaitFor(t, 10*time.Second, "the fourth registrar to find a peer", func() bool { return len(r4.Peers()) == 1 })
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if p := r4.Peers(); len(p) > 1 || slices.Contains(p, r4.ID()) {
			t.Fatalf("registrar 4 allowed one peer has peers %v", p)
		}
	}
	for _, r := range rs {
		if slices.Contains(r.Peers(), r.ID()) {
			t.Fatalf("registrar %d is its own peer", r.ID())
		}
	}
}
