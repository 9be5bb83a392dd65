//go:build linux

package interop

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/rsplibtest"
	"github.com/rsp-go/rsp/internal/testhost"
	"github.com/rsp-go/rsp/policy"
	"github.com/rsp-go/rsp/registrar"
)

// TestRSPFindsRsplibRegistrarByAnnounce has rsplib's registrar announce
// itself (an ASAP_SERVER_ANNOUNCE with its server identifier only); an rsp
// pool element with no registrar configured hears it, registers there over
// SCTP at the announce's source address and the ASAP port, and rsplib's
// hsdump shows the element.
func TestRSPFindsRsplibRegistrarByAnnounce(t *testing.T) {
	rsplibtest.Require(t)
	testhost.RequireMulticast(t)
	t.Setenv(endpoint.EnvRegistrars, "")
	const group = "239.0.0.50:3875"
	rsplibtest.StartRegistrar(t, 3863, 9901, "-asapannounce="+group)

	ep := endpoint.New(endpoint.Config{Announces: group, AnnounceInterface: testhost.Interface, ConnectTimeout: 10 * time.Second})
	defer ep.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	pe := asap.PoolElement{
		UserTransport: asap.Transport{Kind: asap.ParamSCTPTransport, Port: 7777, Addrs: []netip.Addr{netip.MustParseAddr(hostAddr)}},
		Policy:        policy.Policy{Type: policy.RoundRobin},
	}
	reg, err := ep.Register(ctx, "AnnouncedPool", pe)
	if err != nil {
		t.Fatalf("registering through rsplib's announced registrar: %v", err)
	}
	defer reg.Close(context.Background())
	if got, want := ep.Announced(), "sctp:"+hostAddr+":3863"; !slices.Contains(got, want) {
		t.Errorf("announced registrars %v, want %s among them", got, want)
	}
	id := fmt.Sprintf("$%08x", uint32(reg.ID()))
	var out string
	for range 5 { // hsdump reads the handlespace as an ENRP peer; give it a few tries
		out = hsdump(t, fmt.Sprintf("%s:9901", hostAddr))
		if strings.Contains(out, id) && strings.Contains(out, `pool "announcedpool"`) {
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("hsdump lacks pool element %s of pool AnnouncedPool:\n%s", id, out)
}

// TestRsplibFindsRSPRegistrarByAnnounce has the rsp registrar announce
// itself; rsplib's rspserver, told only the announce group, hears it and
// registers there.
func TestRsplibFindsRSPRegistrarByAnnounce(t *testing.T) {
	rsplibtest.Require(t)
	testhost.RequireMulticast(t)
	const group = "239.0.0.50:3876"
	r := registrar.New(registrar.Config{Announce: group, AnnounceInterface: testhost.Interface})
	defer r.Close()
	l, err := registrar.Listen(context.Background(), "sctp", hostAddr+":3863")
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(l)

	rsplibtest.Start(t, nil, "rspserver", "-echo", "-asapannounce="+group)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if p, ok := r.Pool("EchoPool"); ok && len(p.Elements) > 0 {
			t.Logf("rspserver found the rsp registrar by its announce: PE %08x", uint32(p.Elements[0].ID))
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("rsplib's rspserver did not register with the announcing rsp registrar")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
