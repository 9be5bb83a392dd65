package endpoint

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/policy"
)

// Resolution is the answer to a handle resolution: the pool's policy and
// pool elements in the order a pool user should try them.
type Resolution struct {
	Policy policy.Policy
	PEs    []asap.PoolElement
	// Cached reports that the answer came from the cache.
	Cached bool
}

type cacheEntry struct {
	policy  policy.Policy
	pes     []asap.PoolElement
	fetched time.Time
	next    int // round robin position of this pool user
}

type resolveCall struct {
	done chan struct{}
	res  Resolution
	err  error
	// abandoned: the caller that made the request gave up (its context
	// ended), which says nothing to the callers waiting for it.
	abandoned bool
}

// Resolve returns the pool elements of pool h. A fresh cache entry answers
// without asking the registrar; concurrent resolutions of one handle share
// one request. The order follows the pool's policy as RFC 5356 describes
// for pool users: round robin walks the list from a moving start, random
// policies pick at random, the others keep the registrar's order.
func (ep *Endpoint) Resolve(ctx context.Context, h asap.PoolHandle) (Resolution, error) {
	for {
		ep.mu.Lock()
		if e := ep.cache[h]; e != nil && time.Since(e.fetched) < ep.cfg.CacheLifetime {
			res := ep.ordered(e)
			ep.mu.Unlock()
			res.Cached = true
			return res, nil
		}
		call := ep.inflight[h]
		if call == nil {
			call = &resolveCall{done: make(chan struct{})}
			ep.inflight[h] = call
			ep.mu.Unlock()
			call.res, call.err = ep.resolve(ctx, h)
			ep.mu.Lock()
			call.abandoned = call.err != nil && ctx.Err() != nil
			delete(ep.inflight, h)
			close(call.done)
			ep.mu.Unlock()
			return call.res, call.err
		}
		ep.mu.Unlock()
		select {
		case <-call.done:
			if call.abandoned && ctx.Err() == nil {
				continue // ask again, with this caller's context
			}
			return call.res, call.err
		case <-ctx.Done():
			return Resolution{}, ctx.Err()
		}
	}
}

func (ep *Endpoint) resolve(ctx context.Context, h asap.PoolHandle) (Resolution, error) {
	resp, err := ep.request(ctx, &asap.HandleResolution{Handle: h, Items: ep.cfg.ResolveItems},
		pendKey{asap.TypeHandleResolutionResponse, h, 0})
	if err != nil {
		return Resolution{}, err
	}
	hr := resp.(*asap.HandleResolutionResponse)
	if len(hr.Causes) > 0 || len(hr.PEs) == 0 {
		ep.mu.Lock()
		delete(ep.cache, h)
		ep.mu.Unlock()
		if len(hr.Causes) > 0 && hr.Causes[0].Code != asap.CauseUnknownPoolHandle {
			return Resolution{}, fmt.Errorf("endpoint: resolving %q: %v", h, hr.Causes[0].Code)
		}
		return Resolution{}, fmt.Errorf("%w %q", ErrUnknownPool, h)
	}
	e := &cacheEntry{policy: policy.Policy{Type: policy.RoundRobin}, pes: hr.PEs, fetched: time.Now()}
	if hr.Policy != nil {
		e.policy = *hr.Policy
	}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.cfg.CacheLifetime > 0 {
		ep.cache[h] = e
	}
	return ep.ordered(e), nil
}

// ordered returns a copy of the entry's pool elements in the order to try
// them, advancing the round robin position.
func (ep *Endpoint) ordered(e *cacheEntry) Resolution {
	n := len(e.pes)
	pes := make([]asap.PoolElement, 0, n)
	start := 0
	switch {
	case e.policy.Type == policy.RoundRobin || e.policy.Type == policy.WeightedRoundRobin:
		start = e.next % max(n, 1)
		e.next++
	case e.policy.Type.Random():
		start = rand.IntN(max(n, 1))
	}
	for i := range n {
		pes = append(pes, e.pes[(start+i)%n])
	}
	return Resolution{Policy: e.policy, PEs: pes}
}

// Invalidate drops the cached resolution of pool h.
func (ep *Endpoint) Invalidate(h asap.PoolHandle) {
	ep.mu.Lock()
	delete(ep.cache, h)
	ep.mu.Unlock()
}

// ReportUnreachable tells the registrar that pool element id of pool h
// could not be reached (ASAP_ENDPOINT_UNREACHABLE) and drops it from the
// cache. Reports of one element are sent at most once a second.
func (ep *Endpoint) ReportUnreachable(ctx context.Context, h asap.PoolHandle, id asap.PEID) error {
	key := regKey{h, id}
	ep.mu.Lock()
	if e := ep.cache[h]; e != nil {
		for i := range e.pes {
			if e.pes[i].ID == id {
				e.pes = append(e.pes[:i:i], e.pes[i+1:]...)
				break
			}
		}
		if len(e.pes) == 0 {
			delete(ep.cache, h)
		}
	}
	now := time.Now()
	if last, ok := ep.reported[key]; ok && now.Sub(last) < time.Second {
		ep.mu.Unlock()
		return nil
	}
	for k, t := range ep.reported {
		if now.Sub(t) >= time.Second {
			delete(ep.reported, k)
		}
	}
	ep.reported[key] = now
	ep.mu.Unlock()
	return ep.send(ctx, &asap.EndpointUnreachable{Handle: h, ID: id})
}
