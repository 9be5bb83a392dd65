//go:build linux

package interop

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/rsplibtest"
	"github.com/rsp-go/rsp/policy"
)

// TestRsplibRegistrarTakesTCPSessionElements registers, with rsplib's
// registrar, TCP pool elements that say they speak sessions the way rsp's
// listeners do: transport use 1 (data plus control) in the TCP transport
// parameter, which rsplib reads as its own transport use field. rsplib's
// registrar keeps the value and hands it back in handle resolutions, and,
// like rsp's, refuses a plain element (use 0) in that pool with cause 0x8.
func TestRsplibRegistrarTakesTCPSessionElements(t *testing.T) {
	rsplibtest.Require(t)
	rsplibtest.StartRegistrar(t, 3863, 9901)

	ep := endpoint.New(endpoint.Config{Registrars: []string{fmt.Sprintf("sctp:%s:3863", hostAddr)}, CacheLifetime: -1})
	defer ep.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	pe := func(port uint16, use asap.TransportUse) asap.PoolElement {
		return asap.PoolElement{
			UserTransport: asap.Transport{Kind: asap.ParamTCPTransport, Port: port, Use: use,
				Addrs: []netip.Addr{netip.MustParseAddr(hostAddr)}},
			Policy: policy.Policy{Type: policy.RoundRobin},
		}
	}
	reg, err := ep.Register(ctx, "TCPSessions", pe(7001, asap.DataPlusControl))
	if err != nil {
		t.Fatalf("rsplib's registrar refused a TCP element with transport use 1: %v", err)
	}
	defer reg.Close(ctx)
	res, err := ep.Resolve(ctx, "TCPSessions")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.PEs) != 1 || res.PEs[0].UserTransport.Kind != asap.ParamTCPTransport || res.PEs[0].UserTransport.Use != asap.DataPlusControl {
		t.Fatalf("resolution %+v: want one TCP element with transport use 1", res.PEs)
	}

	_, err = ep.Register(ctx, "TCPSessions", pe(7002, asap.DataOnly))
	var re *endpoint.RegistrationError
	if !errors.As(err, &re) || !re.Has(asap.CauseInconsistentDataControl) {
		t.Fatalf("plain element in a pool of session elements: %v, want refusal with cause 0x8", err)
	}
	t.Logf("plain element refused: %v", err)

	plain, err := ep.Register(ctx, "TCPPlain", pe(7003, asap.DataOnly))
	if err != nil {
		t.Fatalf("plain TCP element: %v", err)
	}
	defer plain.Close(ctx)
}
