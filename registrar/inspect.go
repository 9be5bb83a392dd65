package registrar

import (
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/policy"
)

// Pool is a snapshot of one pool of the registrar's handlespace.
type Pool struct {
	Handle   asap.PoolHandle
	Policy   policy.Policy
	Elements []asap.PoolElement
}

// Pools returns a snapshot of the handlespace: every pool with its
// elements.
func (r *Registrar) Pools() []Pool {
	r.mu.Lock()
	defer r.mu.Unlock()
	var pools []Pool
	for h, pol := range r.hs.Pools() {
		p := Pool{Handle: h, Policy: pol}
		for pe := range r.hs.Elements(h) {
			p.Elements = append(p.Elements, *pe)
		}
		pools = append(pools, p)
	}
	return pools
}

// Pool returns a snapshot of one pool and whether it exists.
func (r *Registrar) Pool(h asap.PoolHandle) (Pool, bool) {
	for _, p := range r.Pools() {
		if p.Handle == h {
			return p, true
		}
	}
	return Pool{}, false
}

// Conns returns how many peer connections (and SCTP associations) the
// registrar serves now.
func (r *Registrar) Conns() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}
