// Package handlespace holds RSerPool pools and their pool elements: the
// state a registrar keeps and a pool user caches. Pools are keyed by pool
// handle, elements by identifier; every element has an owner (its home
// registrar), a registration life, and a place in its pool's selection
// policy. The RFC 5353 PE checksum of each owner is kept up to date on every
// change.
//
// A Handlespace is not safe for concurrent use; its user serialises access.
package handlespace

import (
	"container/heap"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/policy"
)

// ErrUnknownPool is returned for a pool handle the handlespace does not
// hold.
var ErrUnknownPool = errors.New("handlespace: unknown pool handle")

// RegistrationError is a refused registration, with the error cause a
// registrar sends back.
type RegistrationError struct {
	Cause asap.Cause
}

func (e *RegistrationError) Error() string { return "handlespace: " + e.Cause.Code.String() }

// Defaults of Config.
const (
	DefaultMaxPools      = 1 << 20
	DefaultMaxPEsPerPool = 1 << 20
)

// Config sets the handlespace's limits. Zero values mean the defaults.
type Config struct {
	MaxPools      int
	MaxPEsPerPool int
	// Rand is the randomness of random policies; nil means a random seed.
	Rand *rand.Rand
}

// Handlespace is a set of pools.
type Handlespace struct {
	cfg    Config
	pools  map[asap.PoolHandle]*pool
	expiry expiryHeap
	owners map[asap.ServerID]uint64 // unfolded checksum sum per owner
	// reporters are the distinct peers that reported an element
	// unreachable since it (re-)registered, up to maxReporters: kept
	// here, for the few elements reported, rather than a slice in every
	// entry.
	reporters map[*entry][]netip.Addr
	n         int
}

type pool struct {
	handle  asap.PoolHandle
	policy  policy.Type
	kind    asap.ParamType
	use     asap.TransportUse
	members map[asap.PEID]*member
	set     *policy.Set[*entry]
}

// member is an element's place in its pool's policy set; its Value is the
// element. It is allocated on its own, a 64-byte object that is one cache
// line, so that the set's members lie densely in memory for the random
// policies' draws through the tree, and reads its policy values from the
// element's, so that they are kept once. The pool's members map leads to
// it, and through it to the element, so that the element needs no pointer
// to it.
type member = policy.Member[*entry]

// entry is one pool element: 144 bytes, with its member (64) 208 per
// element.
type entry struct {
	pe      asap.PoolElement
	pool    *pool
	expires int64 // Unix nanoseconds; only while on the expiry heap
	heapIdx int32 // on the expiry heap; -1 when the life is infinite
}

// maxReporters bounds the reporters remembered per element: more than any
// sensible MAX-BAD-PE-REPORT.
const maxReporters = 16

// New returns an empty handlespace.
func New(cfg Config) *Handlespace {
	if cfg.MaxPools <= 0 {
		cfg.MaxPools = DefaultMaxPools
	}
	if cfg.MaxPEsPerPool <= 0 {
		cfg.MaxPEsPerPool = DefaultMaxPEsPerPool
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return &Handlespace{cfg: cfg, pools: make(map[asap.PoolHandle]*pool), owners: make(map[asap.ServerID]uint64), reporters: make(map[*entry][]netip.Addr)}
}

// Len returns the number of pool elements.
func (h *Handlespace) Len() int { return h.n }

// PoolCount returns the number of pools.
func (h *Handlespace) PoolCount() int { return len(h.pools) }

// Register adds pool element pe to pool handle, or updates it when an
// element with its identifier is there (a re-registration, which resets its
// unreachable reports and degradation). The pool's policy type, transport
// kind and transport use are those of its first element; a mismatch is
// refused with the RFC's cause, carrying the pool's value. now starts the
// registration life (a negative life never expires). updated reports a
// re-registration.
func (h *Handlespace) Register(handle asap.PoolHandle, pe asap.PoolElement, now time.Time) (updated bool, err error) {
	if len(handle) == 0 || pe.ID == 0 || !pe.Policy.Type.Valid() {
		return false, &RegistrationError{asap.Cause{Code: asap.CauseInvalidValues}}
	}
	p := h.pools[handle]
	if p == nil {
		if len(h.pools) >= h.cfg.MaxPools {
			return false, &RegistrationError{asap.Cause{Code: asap.CauseLackOfResources}}
		}
		p = &pool{
			handle:  handle,
			policy:  pe.Policy.Type,
			kind:    pe.UserTransport.Kind,
			use:     pe.UserTransport.Use,
			members: make(map[asap.PEID]*member),
			set:     policy.NewSet[*entry](pe.Policy.Type, h.cfg.Rand),
		}
		defer func() {
			if err != nil && len(p.members) == 0 {
				delete(h.pools, handle)
			}
		}()
		h.pools[handle] = p
	}
	switch {
	case pe.Policy.Type != p.policy:
		pol := policy.Policy{Type: p.policy}
		return false, &RegistrationError{asap.PolicyCause(&pol)}
	case pe.UserTransport.Kind != p.kind:
		if e := p.any(); e != nil {
			return false, &RegistrationError{asap.TransportCause(&e.pe.UserTransport)}
		}
		return false, &RegistrationError{asap.Cause{Code: asap.CauseInconsistentTransport}}
	case pe.UserTransport.Use != p.use:
		return false, &RegistrationError{asap.Cause{Code: asap.CauseInconsistentDataControl}}
	}
	if m := p.members[pe.ID]; m != nil {
		e := m.Value
		h.setOwner(e, pe.Home)
		p.set.Update(m, pe.Policy) // stores pe.Policy in e.pe
		e.pe = pe
		delete(h.reporters, e)
		h.setExpiry(e, pe.Life, now)
		return true, nil
	}
	if len(p.members) >= h.cfg.MaxPEsPerPool {
		return false, &RegistrationError{asap.Cause{Code: asap.CauseLackOfResources}}
	}
	e := &entry{pe: pe, pool: p, heapIdx: -1}
	p.members[pe.ID] = p.set.Insert(new(member), e, &e.pe.Policy)
	h.owners[pe.Home] += blockSum(handle, pe.ID)
	h.setExpiry(e, pe.Life, now)
	h.n++
	return false, nil
}

// any returns some element of the pool, or nil.
func (p *pool) any() *entry {
	for _, m := range p.members {
		return m.Value
	}
	return nil
}

func (h *Handlespace) setOwner(e *entry, owner asap.ServerID) {
	if e.pe.Home == owner {
		return
	}
	b := blockSum(e.pool.handle, e.pe.ID)
	h.subOwner(e.pe.Home, b)
	h.owners[owner] += b
	e.pe.Home = owner
}

func (h *Handlespace) subOwner(owner asap.ServerID, b uint64) {
	if v := h.owners[owner] - b; v == 0 {
		delete(h.owners, owner)
	} else {
		h.owners[owner] = v
	}
}

func (h *Handlespace) setExpiry(e *entry, life time.Duration, now time.Time) {
	if life < 0 {
		if e.heapIdx >= 0 {
			heap.Remove(&h.expiry, int(e.heapIdx))
		}
		e.expires = 0
		return
	}
	e.expires = now.Add(life).UnixNano()
	if e.heapIdx >= 0 {
		heap.Fix(&h.expiry, int(e.heapIdx))
	} else {
		heap.Push(&h.expiry, e)
	}
}

// Deregister removes a pool element, and its pool when it was the last. It
// reports whether the element was there.
func (h *Handlespace) Deregister(handle asap.PoolHandle, id asap.PEID) bool {
	p := h.pools[handle]
	if p == nil {
		return false
	}
	m := p.members[id]
	if m == nil {
		return false
	}
	h.remove(m)
	return true
}

// remove takes out the element of member m.
func (h *Handlespace) remove(m *member) {
	e := m.Value
	p := e.pool
	p.set.Remove(m)
	delete(p.members, e.pe.ID)
	delete(h.reporters, e)
	if e.heapIdx >= 0 {
		heap.Remove(&h.expiry, int(e.heapIdx))
	}
	h.subOwner(e.pe.Home, blockSum(p.handle, e.pe.ID))
	h.n--
	if len(p.members) == 0 {
		delete(h.pools, p.handle)
	}
}

// Lookup returns a pool element. The pointer stays valid until the element
// is changed or removed; callers must not modify it.
func (h *Handlespace) Lookup(handle asap.PoolHandle, id asap.PEID) (*asap.PoolElement, bool) {
	if p := h.pools[handle]; p != nil {
		if m := p.members[id]; m != nil {
			return &m.Value.pe, true
		}
	}
	return nil, false
}

// Handle returns the pool handle the handlespace stores for pool handle,
// equal to it, and whether the pool exists: a caller that keeps the
// handle per pool element shares that one string instead of keeping a
// copy per element.
func (h *Handlespace) Handle(handle asap.PoolHandle) (asap.PoolHandle, bool) {
	p := h.pools[handle]
	if p == nil {
		return handle, false
	}
	return p.handle, true
}

// Policy returns a pool's policy type.
func (h *Handlespace) Policy(handle asap.PoolHandle) (policy.Type, bool) {
	p := h.pools[handle]
	if p == nil {
		return 0, false
	}
	return p.policy, true
}

// Select appends up to n pool elements of pool handle, chosen by the pool's
// policy, to dst, and returns them with the pool's policy. The pointers stay
// valid until the elements change; callers must not modify them.
func (h *Handlespace) Select(handle asap.PoolHandle, n int, dst []*asap.PoolElement) ([]*asap.PoolElement, policy.Policy, error) {
	p := h.pools[handle]
	if p == nil {
		return dst, policy.Policy{}, fmt.Errorf("%w %q", ErrUnknownPool, handle)
	}
	var buf [16]*entry
	sel := p.set.Select(n, buf[:0])
	for _, e := range sel {
		dst = append(dst, &e.pe)
	}
	return dst, policy.Policy{Type: p.policy}, nil
}

// ReportUnreachable counts an unreachable report by reporter against a pool
// element and returns how many distinct reporters reported it since it
// (re-)registered (at most 16), or 0 for an unknown element. Reports of one
// reporter count once, so that no single peer can reach a threshold alone.
func (h *Handlespace) ReportUnreachable(handle asap.PoolHandle, id asap.PEID, reporter netip.Addr) int {
	p := h.pools[handle]
	if p == nil {
		return 0
	}
	m := p.members[id]
	if m == nil {
		return 0
	}
	e := m.Value
	r := h.reporters[e]
	if !slices.Contains(r, reporter) && len(r) < maxReporters {
		r = append(r, reporter)
		h.reporters[e] = r
	}
	return len(r)
}

// Expire removes the pool elements whose registration life ended by now,
// calling fn (if not nil) for each before it goes.
func (h *Handlespace) Expire(now time.Time, fn func(asap.PoolHandle, *asap.PoolElement)) int {
	n := 0
	at := now.UnixNano()
	for len(h.expiry) > 0 && h.expiry[0].expires <= at {
		e := h.expiry[0]
		if fn != nil {
			fn(e.pool.handle, &e.pe)
		}
		h.remove(e.pool.members[e.pe.ID])
		n++
	}
	return n
}

// NextExpiry returns when the next registration life ends, if any does.
func (h *Handlespace) NextExpiry() (time.Time, bool) {
	if len(h.expiry) == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, h.expiry[0].expires), true
}

// Checksum returns the RFC 5353 PE checksum over the pool elements owner
// owns: the Internet checksum of each element's pool handle (zero-padded to
// a multiple of four) and identifier.
func (h *Handlespace) Checksum(owner asap.ServerID) uint16 {
	s := h.owners[owner]
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// blockSum is one element's contribution to its owner's checksum: the sum
// of the 16-bit words of its handle, zero-padded, and its identifier.
func blockSum(handle asap.PoolHandle, id asap.PEID) uint64 {
	var s uint64
	for i := 0; i < len(handle); i += 2 {
		w := uint64(handle[i]) << 8
		if i+1 < len(handle) {
			w |= uint64(handle[i+1])
		}
		s += w
	}
	return s + uint64(id>>16) + uint64(id&0xffff)
}

// TakeOver makes to the owner of every pool element from owns, as a
// registrar does when it takes over a dead peer, and returns how many
// moved.
func (h *Handlespace) TakeOver(from, to asap.ServerID) int {
	n := 0
	for _, p := range h.pools {
		for _, m := range p.members {
			if e := m.Value; e.pe.Home == from {
				h.setOwner(e, to)
				n++
			}
		}
	}
	return n
}

// Pools yields every pool's handle and policy.
func (h *Handlespace) Pools() iter.Seq2[asap.PoolHandle, policy.Policy] {
	return func(yield func(asap.PoolHandle, policy.Policy) bool) {
		for handle, p := range h.pools {
			if !yield(handle, policy.Policy{Type: p.policy}) {
				return
			}
		}
	}
}

// Elements yields the pool elements of pool handle in its policy's order.
func (h *Handlespace) Elements(handle asap.PoolHandle) iter.Seq[*asap.PoolElement] {
	return func(yield func(*asap.PoolElement) bool) {
		p := h.pools[handle]
		if p == nil {
			return
		}
		p.set.All(func(m *member) bool { return yield(&m.Value.pe) })
	}
}

// OwnedBy yields every pool element owner owns, with its pool handle.
func (h *Handlespace) OwnedBy(owner asap.ServerID) iter.Seq2[asap.PoolHandle, *asap.PoolElement] {
	return func(yield func(asap.PoolHandle, *asap.PoolElement) bool) {
		for handle, p := range h.pools {
			for _, m := range p.members {
				if e := m.Value; e.pe.Home == owner && !yield(handle, &e.pe) {
					return
				}
			}
		}
	}
}

// expiryHeap orders entries by expiry time.
type expiryHeap []*entry

func (x expiryHeap) Len() int           { return len(x) }
func (x expiryHeap) Less(i, j int) bool { return x[i].expires < x[j].expires }
func (x expiryHeap) Swap(i, j int) {
	x[i], x[j] = x[j], x[i]
	x[i].heapIdx, x[j].heapIdx = int32(i), int32(j)
}
func (x *expiryHeap) Push(v any) {
	e := v.(*entry)
	e.heapIdx = int32(len(*x))
	*x = append(*x, e)
}
func (x *expiryHeap) Pop() any {
	old := *x
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*x = old[:len(old)-1]
	e.heapIdx = -1
	return e
}
