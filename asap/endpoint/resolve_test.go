package endpoint_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/policy"
)

var threePEs = []asap.PoolElement{testPE(1, 7), testPE(2, 8), testPE(3, 9)}

func TestResolve(t *testing.T) {
	lu := &policy.Policy{Type: policy.LeastUsed}
	f := newFake(t, answering(map[asap.PoolHandle]pool{"echo": {policy: lu, pes: threePEs}}))
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, ResolveItems: 5})
	res, err := ep.Resolve(ctxTimeout(t, waitLong), "echo")
	if err != nil {
		t.Fatal(err)
	}
	if res.Cached || res.Policy != *lu || !slices.Equal(ids(res.PEs), []asap.PEID{1, 2, 3}) {
		t.Errorf("resolution %+v, want PEs 1 2 3 with least used, not cached", res)
	}
	if res.PEs[1].UserTransport.Port != 8 {
		t.Errorf("PE 2 transport %+v, want port 8", res.PEs[1].UserTransport)
	}
	m, _ := nextOf[*asap.HandleResolution](f)
	if m.Handle != "echo" || m.Items != 5 || m.Subscribe {
		t.Errorf("handle resolution %+v, want echo with 5 items, no subscription", m)
	}
}

func TestResolveUnknownPool(t *testing.T) {
	f := newFake(t, func(m asap.Message) []asap.Message {
		hr, ok := m.(*asap.HandleResolution)
		if !ok {
			return nil
		}
		resp := &asap.HandleResolutionResponse{Handle: hr.Handle}
		switch hr.Handle {
		case "unknown":
			resp.Causes = []asap.Cause{{Code: asap.CauseUnknownPoolHandle}}
		case "busy":
			resp.Causes = []asap.Cause{{Code: asap.CauseLackOfResources}}
		}
		return []asap.Message{resp}
	})
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}})
	ctx := ctxTimeout(t, waitLong)
	for _, h := range []asap.PoolHandle{"unknown", "empty"} {
		if _, err := ep.Resolve(ctx, h); !errors.Is(err, endpoint.ErrUnknownPool) {
			t.Errorf("Resolve(%q): %v, want ErrUnknownPool", h, err)
		}
	}
	_, err := ep.Resolve(ctx, "busy")
	if err == nil || errors.Is(err, endpoint.ErrUnknownPool) {
		t.Errorf("Resolve refused for lack of resources: %v, want an error other than ErrUnknownPool", err)
	}
	// Failures are not cached.
	ep.Resolve(ctx, "unknown")
	if n := f.count(asap.TypeHandleResolution); n != 4 {
		t.Errorf("%d requests, want 4", n)
	}
}

func TestResolveCached(t *testing.T) {
	f := newFake(t, answering(map[asap.PoolHandle]pool{"echo": {pes: threePEs}, "other": {pes: threePEs[:1]}}))
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, CacheLifetime: time.Minute})
	ctx := ctxTimeout(t, waitLong)
	res, err := ep.Resolve(ctx, "echo")
	if err != nil || res.Cached {
		t.Fatalf("first Resolve: %+v, %v; want a fresh answer", res, err)
	}
	for range 3 {
		res, err = ep.Resolve(ctx, "echo")
		if err != nil || !res.Cached || len(res.PEs) != 3 {
			t.Fatalf("Resolve of a fresh entry: %+v, %v; want the three PEs from the cache", res, err)
		}
	}
	if n := f.count(asap.TypeHandleResolution); n != 1 {
		t.Errorf("%d requests for a fresh entry, want 1", n)
	}
	// Each pool has an entry of its own.
	if res, err := ep.Resolve(ctx, "other"); err != nil || res.Cached || len(res.PEs) != 1 {
		t.Errorf("Resolve(other): %+v, %v; want a fresh answer with one PE", res, err)
	}
	// Invalidate drops the entry.
	ep.Invalidate("echo")
	if res, err := ep.Resolve(ctx, "echo"); err != nil || res.Cached {
		t.Errorf("Resolve after Invalidate: %+v, %v; want a fresh answer", res, err)
	}
	if n := f.count(asap.TypeHandleResolution); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

func TestResolveCacheExpiry(t *testing.T) {
	const lifetime = 100 * time.Millisecond
	f := newFake(t, answering(map[asap.PoolHandle]pool{"echo": {pes: threePEs}}))
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, CacheLifetime: lifetime})
	ctx := ctxTimeout(t, waitLong)
	start := time.Now()
	if _, err := ep.Resolve(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	cached := 0
	for {
		res, err := ep.Resolve(ctx, "echo")
		if err != nil {
			t.Fatal(err)
		}
		if !res.Cached {
			break
		}
		cached++
		if time.Since(start) > waitLong {
			t.Fatalf("still answered from the cache after %v, lifetime %v", waitLong, lifetime)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if el := time.Since(start); el < lifetime || el > 8*lifetime {
		t.Errorf("asked the registrar again after %v, lifetime %v", el, lifetime)
	}
	if cached == 0 {
		t.Error("no answer came from the cache")
	}
	if n := f.count(asap.TypeHandleResolution); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

func TestResolveNoCache(t *testing.T) {
	f := newFake(t, answering(map[asap.PoolHandle]pool{"echo": {pes: threePEs}}))
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, CacheLifetime: -1})
	ctx := ctxTimeout(t, waitLong)
	for i := range 3 {
		res, err := ep.Resolve(ctx, "echo")
		if err != nil || res.Cached {
			t.Fatalf("Resolve %d: %+v, %v; want a fresh answer", i, res, err)
		}
	}
	if n := f.count(asap.TypeHandleResolution); n != 3 {
		t.Errorf("%d requests without cache, want 3", n)
	}
}

func TestResolveSharesRequest(t *testing.T) {
	f := newFake(t, nil) // the test answers
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, CacheLifetime: -1})
	ctx := ctxTimeout(t, waitLong)

	const callers = 8
	type result struct {
		res endpoint.Resolution
		err error
	}
	results := make(chan result, callers)
	var started sync.WaitGroup
	started.Add(callers)
	for range callers {
		go func() {
			started.Done()
			res, err := ep.Resolve(ctx, "echo")
			results <- result{res, err}
		}()
	}
	m, conn := nextOf[*asap.HandleResolution](f)
	started.Wait()
	// Give the last callers time to join the request under way; one that
	// comes later would make a request of its own, which the count below
	// would show.
	time.Sleep(100 * time.Millisecond)
	f.send(conn, resolution(map[asap.PoolHandle]pool{"echo": {pes: threePEs}}, m.Handle))
	for range callers {
		r := <-results
		if r.err != nil || len(r.res.PEs) != 3 {
			t.Errorf("Resolve: %+v, %v; want the three PEs", r.res, r.err)
		}
	}
	if n := f.count(asap.TypeHandleResolution); n != 1 {
		t.Errorf("%d concurrent resolutions made %d requests, want 1", callers, n)
	}
}

func TestResolveSharedRequestWaiterContext(t *testing.T) {
	f := newFake(t, nil) // the test answers
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, CacheLifetime: -1})
	first := make(chan error, 1)
	go func() {
		_, err := ep.Resolve(ctxTimeout(t, waitLong), "echo")
		first <- err
	}()
	m, conn := nextOf[*asap.HandleResolution](f)

	// A second caller waits for the request under way, but no longer than
	// its own context allows.
	start := time.Now()
	_, err := ep.Resolve(ctxTimeout(t, 100*time.Millisecond), "echo")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting caller: %v, want context.DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("waiting caller returned after %v with a 100ms deadline", el)
	}
	f.send(conn, resolution(map[asap.PoolHandle]pool{"echo": {pes: threePEs}}, m.Handle))
	if err := <-first; err != nil {
		t.Errorf("first caller: %v", err)
	}
}

func TestResolveSharedRequestFirstCallerGivesUp(t *testing.T) {
	answer := map[asap.PoolHandle]pool{"echo": {pes: threePEs}}
	f := newFake(t, nil) // the test answers
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, CacheLifetime: -1})
	ctx1, cancel1 := context.WithCancel(context.Background())
	defer cancel1()
	first := make(chan error, 1)
	go func() {
		_, err := ep.Resolve(ctx1, "echo")
		first <- err
	}()
	m, conn := nextOf[*asap.HandleResolution](f)

	second := make(chan error, 1)
	joined := make(chan struct{})
	go func() {
		close(joined)
		_, err := ep.Resolve(ctxTimeout(t, waitLong), "echo")
		second <- err
	}()
	<-joined
	time.Sleep(50 * time.Millisecond) // let the second caller wait for the first one's request

	// The first caller gives up; the second one, whose context is fine,
	// must still get an answer.
	cancel1()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("first caller: %v, want context.Canceled", err)
	}
	f.send(conn, resolution(answer, m.Handle))
	deadline := time.Now().Add(waitLong)
	for {
		select {
		case err := <-second:
			if err != nil {
				t.Fatalf("second caller: %v, want the resolution although the first caller gave up", err)
			}
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("second caller did not return")
		}
		// Answer a request the second caller makes of its own.
		if x, ok := f.nextWithin(10 * time.Millisecond); ok {
			if hr, ok := x.m.(*asap.HandleResolution); ok {
				f.send(x.conn, resolution(answer, hr.Handle))
			}
		}
	}
}

func TestResolveRoundRobin(t *testing.T) {
	lu := &policy.Policy{Type: policy.LeastUsed}
	rr := &policy.Policy{Type: policy.RoundRobin}
	wrr := &policy.Policy{Type: policy.WeightedRoundRobin}
	f := newFake(t, answering(map[asap.PoolHandle]pool{
		"rr":      {policy: rr, pes: threePEs},
		"wrr":     {policy: wrr, pes: threePEs},
		"default": {pes: threePEs}, // no policy parameter: round robin
		"lu":      {policy: lu, pes: threePEs},
	}))
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, CacheLifetime: time.Minute})
	ctx := ctxTimeout(t, waitLong)
	rotating := [][]asap.PEID{{1, 2, 3}, {2, 3, 1}, {3, 1, 2}, {1, 2, 3}}
	fixed := [][]asap.PEID{{1, 2, 3}, {1, 2, 3}, {1, 2, 3}, {1, 2, 3}}
	for _, tc := range []struct {
		h    asap.PoolHandle
		want [][]asap.PEID
	}{{"rr", rotating}, {"wrr", rotating}, {"default", rotating}, {"lu", fixed}} {
		for i, want := range tc.want {
			res, err := ep.Resolve(ctx, tc.h)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(res.PEs); !slices.Equal(got, want) {
				t.Errorf("pool %s, call %d: order %v, want %v", tc.h, i, got, want)
			}
		}
	}
	if res, _ := ep.Resolve(ctx, "default"); res.Policy.Type != policy.RoundRobin {
		t.Errorf("policy of a pool answered without one: %v, want round robin", res.Policy.Type)
	}
}

func TestResolveRandomPolicy(t *testing.T) {
	rnd := &policy.Policy{Type: policy.Random}
	f := newFake(t, answering(map[asap.PoolHandle]pool{"echo": {policy: rnd, pes: threePEs}}))
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, CacheLifetime: time.Minute})
	ctx := ctxTimeout(t, waitLong)
	firsts := map[asap.PEID]bool{}
	for range 200 {
		res, err := ep.Resolve(ctx, "echo")
		if err != nil {
			t.Fatal(err)
		}
		got := ids(res.PEs)
		if !slices.Equal(slices.Sorted(slices.Values(got)), []asap.PEID{1, 2, 3}) {
			t.Fatalf("order %v, want a permutation of 1 2 3", got)
		}
		firsts[got[0]] = true
	}
	if len(firsts) != 3 {
		t.Errorf("random policy started only with %v in 200 calls", firsts)
	}
}

func TestReportUnreachable(t *testing.T) {
	f := newFake(t, answering(map[asap.PoolHandle]pool{"echo": {policy: &policy.Policy{Type: policy.LeastUsed}, pes: threePEs}}))
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, CacheLifetime: time.Minute})
	ctx := ctxTimeout(t, waitLong)
	if _, err := ep.Resolve(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	nextOf[*asap.HandleResolution](f)

	start := time.Now()
	if err := ep.ReportUnreachable(ctx, "echo", 2); err != nil {
		t.Fatal(err)
	}
	m, _ := nextOf[*asap.EndpointUnreachable](f)
	if m.Handle != "echo" || m.ID != 2 {
		t.Errorf("report %+v, want echo/2", m)
	}
	// The reported element is gone from the cache.
	res, err := ep.Resolve(ctx, "echo")
	if err != nil || !res.Cached || !slices.Equal(ids(res.PEs), []asap.PEID{1, 3}) {
		t.Errorf("Resolve after the report: %+v, %v; want 1 3 from the cache", res, err)
	}

	// A second report of the same element within a second is not sent;
	// one of another element is.
	if err := ep.ReportUnreachable(ctx, "echo", 2); err != nil {
		t.Fatal(err)
	}
	if err := ep.ReportUnreachable(ctx, "echo", 3); err != nil {
		t.Fatal(err)
	}
	m, _ = nextOf[*asap.EndpointUnreachable](f)
	if m.ID != 3 {
		t.Errorf("report %+v, want echo/3: element 2 was reported less than a second ago", m)
	}

	// After a second, element 2 may be reported again, once.
	for f.count(asap.TypeEndpointUnreachable) < 3 {
		if time.Since(start) > waitLong {
			t.Fatal("element 2 could not be reported again")
		}
		if err := ep.ReportUnreachable(ctx, "echo", 2); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	reports := f.messages(asap.TypeEndpointUnreachable)
	if len(reports) != 3 {
		t.Fatalf("%d reports, want 3", len(reports))
	}
	if m := reports[2].m.(*asap.EndpointUnreachable); m.ID != 2 {
		t.Errorf("third report %+v, want echo/2", m)
	}
	if gap := reports[2].at.Sub(start); gap < time.Second {
		t.Errorf("element 2 reported again after %v, want at least a second", gap)
	}

	// With its last element reported, the entry goes: the next resolution
	// asks the registrar.
	if err := ep.ReportUnreachable(ctx, "echo", 1); err != nil {
		t.Fatal(err)
	}
	if res, err := ep.Resolve(ctx, "echo"); err != nil || res.Cached || len(res.PEs) != 3 {
		t.Errorf("Resolve with every cached element reported: %+v, %v; want a fresh answer", res, err)
	}
	if n := f.count(asap.TypeHandleResolution); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}
