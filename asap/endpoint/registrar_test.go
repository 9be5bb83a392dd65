package endpoint_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/registrar"
)

// poolIDs returns the identifiers of the elements of pool h at r.
func poolIDs(r *registrar.Registrar, h asap.PoolHandle) []asap.PEID {
	p, ok := r.Pool(h)
	if !ok {
		return nil
	}
	return ids(p.Elements)
}

// waitFor polls cond until it holds, failing the test after waitLong.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, waitLong, what, cond)
}

func TestWithRegistrar(t *testing.T) {
	// A keep-alive timeout that a loaded machine meets (at 100 ms the
	// element was removed now and then, the resolution then failing with
	// "unknown pool handle"), and a hold below of more than twice it, in
	// which an unanswered keep-alive still removes the element.
	const kaTimeout = 500 * time.Millisecond
	r, addr := testutil.StartRegistrar(t, registrar.Config{
		KeepAliveInterval: 20 * time.Millisecond,
		KeepAliveTimeout:  kaTimeout,
	})
	pe := newEndpoint(t, endpoint.Config{Registrars: []string{addr}, Reregistration: quiet})
	pu := newEndpoint(t, endpoint.Config{Registrars: []string{addr}, CacheLifetime: -1})
	ctx := ctxTimeout(t, waitLong)

	reg, err := pe.Register(ctx, "echo", testPE(0, 7))
	if err != nil {
		t.Fatal(err)
	}
	if got := poolIDs(r, "echo"); !slices.Equal(got, []asap.PEID{reg.ID()}) {
		t.Fatalf("registrar's pool echo: %v, want %#x", got, reg.ID())
	}
	waitFor(t, "Home() names the registrar", func() bool { return pe.Home() == r.ID() })

	// Keep-alives are answered: the element stays through many rounds
	// of keep-alives, any of which removes it when unanswered.
	for start := time.Now(); time.Since(start) < 2*kaTimeout+200*time.Millisecond; time.Sleep(10 * time.Millisecond) {
		if got := poolIDs(r, "echo"); !slices.Equal(got, []asap.PEID{reg.ID()}) {
			t.Fatalf("after %v of keep-alives the pool holds %v, want %#x", time.Since(start), got, reg.ID())
		}
	}

	res, err := pu.Resolve(ctx, "echo")
	if err != nil || !slices.Equal(ids(res.PEs), []asap.PEID{reg.ID()}) {
		t.Fatalf("pool user's resolution: %+v, %v; want %#x", res, err, reg.ID())
	}
	if _, err := pu.Resolve(ctx, "nope"); !errors.Is(err, endpoint.ErrUnknownPool) {
		t.Errorf("resolving an unknown pool: %v, want ErrUnknownPool", err)
	}

	if err := reg.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := poolIDs(r, "echo"); len(got) != 0 {
		t.Errorf("pool echo after Close: %v, want none", got)
	}
}

func TestWithRegistrarLifeRunsOut(t *testing.T) {
	const life = 150 * time.Millisecond
	r, addr := testutil.StartRegistrar(t, registrar.Config{KeepAliveInterval: -1, MinRegistrationLife: 10 * time.Millisecond})
	pe := newEndpoint(t, endpoint.Config{Registrars: []string{addr}, Reregistration: quiet})
	elem := testPE(0, 7)
	elem.Life = life
	reg, err := pe.Register(ctxTimeout(t, waitLong), "echo", elem)
	if err != nil {
		t.Fatal(err)
	}
	// The registrar drops the element when its life runs out and tells
	// the endpoint, which registers it again: long after several lives,
	// and long before the next re-registration period, it is there.
	start := time.Now()
	waitFor(t, "element registered after its life ran out", func() bool {
		return time.Since(start) > 4*life && slices.Equal(poolIDs(r, "echo"), []asap.PEID{reg.ID()})
	})
}

func TestWithRegistrarRestart(t *testing.T) {
	r1, addr1 := testutil.StartRegistrar(t, registrar.Config{KeepAliveInterval: -1})
	r2, addr2 := testutil.StartRegistrar(t, registrar.Config{KeepAliveInterval: -1})
	pe := newEndpoint(t, endpoint.Config{Registrars: []string{addr1, addr2}, Reregistration: quiet})
	reg, err := pe.Register(ctxTimeout(t, waitLong), "echo", testPE(0, 7))
	if err != nil {
		t.Fatal(err)
	}
	home, other := r1, r2
	if len(poolIDs(r2, "echo")) > 0 {
		home, other = r2, r1
	}
	// The home registrar ends: the endpoint registers at the other one.
	home.Close()
	waitFor(t, "element registered at the other registrar", func() bool {
		return slices.Equal(poolIDs(other, "echo"), []asap.PEID{reg.ID()})
	})
}
