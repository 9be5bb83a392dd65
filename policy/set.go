package policy

import (
	"math"
	"math/rand/v2"
)

// Set holds the members of one pool and selects among them by the pool's
// policy in O(log n) per member touched. It is a treap ordered by the
// policy's sort key and a per-set sequence number, whose subtrees carry
// their members' selection weights for weighted random draws.
//
// Ordered policies (round robin, priority, the least-used family) return
// the first members in order; each member handed out gets a new sequence
// number, which moves it behind the members of equal key: this is the
// rotation among equals that rsplib does. Random policies draw distinct
// members with probability proportional to their weight.
//
// A Set is not safe for concurrent use.
type Set[T any] struct {
	// MaxIncrement is how many of the members a selection returns are
	// counted as handed out (moved behind their equals, degraded), as
	// rsplib's registrar option of that name; zero means 1, which makes a
	// round robin head advance by one per selection.
	MaxIncrement int

	typ    Type
	random bool // typ.Random()
	root   *Member[T]
	seq    uint64
	rnd    *rand.Rand
	n      int
}

// Member is an element of a Set. With a pointer-sized T it is 64 bytes
// on 64-bit machines, one cache line of its own; it refers to its policy
// values instead of holding a copy, so that a caller that keeps them in its
// own element keeps them once (Insert).
type Member[T any] struct {
	Value T

	// policy is the member's policy values: the caller's (Insert) or
	// allocated with the member (Add).
	policy *Policy

	degradation uint64 // accumulated load degradation since (re-)registration

	// keySum is, in a set of an ordered policy, the member's sort key;
	// in a set of a random policy, whose members are in sequence order
	// alone, the sum of its subtree's draw weights. Each kind of set
	// uses one of the two.
	keySum uint64
	seq    uint64
	// weightCredits is, in a set of a random policy, the member's draw
	// weight (at most 2^32-1); in a weighted round robin set, the
	// selections it has left this round.
	weightCredits uint32
	prio          uint32
	left, right   *Member[T]
}

// Policy returns the member's policy values (none for a member never
// added to a set).
func (m *Member[T]) Policy() Policy {
	if m.policy == nil {
		return Policy{}
	}
	return *m.policy
}

// Degradation returns the load the member has accumulated from being handed
// out since it (re-)registered: the counter of the degradation policies.
func (m *Member[T]) Degradation() uint64 { return m.degradation }

// NewSet returns an empty set selecting by policy type t. rnd is the source
// of randomness for random policies and the treap; nil means a randomly
// seeded one.
func NewSet[T any](t Type, rnd *rand.Rand) *Set[T] {
	if rnd == nil {
		rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return &Set[T]{typ: t, random: t.Random(), rnd: rnd}
}

// Type returns the set's policy type.
func (s *Set[T]) Type() Type { return s.typ }

// Len returns the number of members.
func (s *Set[T]) Len() int { return s.n }

// Random reports whether the policy draws at random rather than in order.
func (t Type) Random() bool {
	switch t {
	case Random, WeightedRandom, RandomizedLeastUsed, RandomizedPriorityLeastUsed,
		RandomizedLeastUsedDegradation, RandomizedPriorityLeastUsedDegradation, WeightedRandomDPF:
		return true
	}
	return false
}

const maxLoad = math.MaxUint32

func clampLoad(v uint64) uint64 { return min(v, maxLoad) }

// effectiveLoad is the load a least-used variant sorts by, or turns into a
// weight: the reported load plus what the policy adds.
func (t Type) effectiveLoad(p *Policy, degradation uint64) uint64 {
	load := uint64(p.Load)
	switch t {
	case LeastUsedDegradation, RandomizedLeastUsedDegradation:
		return load + degradation
	case PriorityLeastUsed, RandomizedPriorityLeastUsed:
		return load + uint64(p.LoadDegradation)
	case PriorityLeastUsedDegradation, RandomizedPriorityLeastUsedDegradation:
		return load + uint64(p.LoadDegradation) + degradation
	case LeastUsedDPF:
		return clampLoad(load + uint64(p.Distance)*uint64(p.LoadDPF))
	case LeastUsedDegradationDPF:
		return clampLoad(load + degradation + uint64(p.Distance)*uint64(p.LoadDPF))
	}
	return load
}

// sortKey is the member's position key for ordered policies.
func (s *Set[T]) sortKey(m *Member[T]) uint64 {
	switch s.typ {
	case Priority:
		return maxLoad - uint64(m.policy.Priority)
	case LeastUsed, LeastUsedDegradation, PriorityLeastUsed, PriorityLeastUsedDegradation,
		LeastUsedDPF, LeastUsedDegradationDPF:
		return s.typ.effectiveLoad(m.policy, m.degradation)
	}
	return 0
}

// drawWeight is the member's weight for random policies: at most
// maxLoad.
func (s *Set[T]) drawWeight(m *Member[T]) uint32 {
	p := m.policy
	switch s.typ {
	case Random:
		return 1
	case WeightedRandom:
		return p.Weight
	case WeightedRandomDPF:
		if p.Weight == 0 {
			return 0
		}
		penalty := math.Round(float64(p.Weight) * float64(p.Distance) * float64(p.WeightDPF) / maxLoad)
		w := float64(p.Weight) - penalty
		return uint32(max(w, 1))
	case RandomizedLeastUsed, RandomizedPriorityLeastUsed, RandomizedLeastUsedDegradation,
		RandomizedPriorityLeastUsedDegradation:
		return uint32(max(maxLoad-clampLoad(s.typ.effectiveLoad(p, m.degradation)), 1))
	}
	return 1
}

func (s *Set[T]) nextSeq() uint64 {
	s.seq++
	return s.seq
}

// Add inserts a member with value v and policy values p.
func (s *Set[T]) Add(v T, p Policy) *Member[T] {
	o := &memberWithPolicy[T]{policy: p}
	s.Insert(&o.member, v, &o.policy)
	return &o.member
}

// memberWithPolicy is what Add allocates: a member and its policy values.
type memberWithPolicy[T any] struct {
	member Member[T]
	policy Policy
}

// Insert adds m, which the caller allocated (as a field of its own
// element, for example), with value v and the policy values at p, and
// returns m. The set reads the policy values at p whenever it needs them:
// the caller changes them only through Update while m is in the set. m
// must not be in a set; Insert overwrites all of it.
func (s *Set[T]) Insert(m *Member[T], v T, p *Policy) *Member[T] {
	*m = Member[T]{Value: v, policy: p, prio: s.rnd.Uint32()}
	m.weightCredits = max(p.Weight, 1)
	s.place(m, s.nextSeq())
	s.n++
	return m
}

// place computes m's key or weight and inserts it.
func (s *Set[T]) place(m *Member[T], seq uint64) {
	m.seq = seq
	if s.random {
		m.weightCredits = s.drawWeight(m)
		m.keySum = uint64(m.weightCredits)
	} else {
		m.keySum = s.sortKey(m)
	}
	m.left, m.right = nil, nil
	s.root = s.insert(s.root, m)
}

// Remove takes m out of the set.
func (s *Set[T]) Remove(m *Member[T]) {
	s.root = s.remove(s.root, m)
	m.left, m.right = nil, nil
	s.n--
}

// Update gives m new policy values, as a re-registration does: its
// degradation starts again from zero and it keeps its place among equals.
// The values are stored where m's policy is (for a member added by
// Insert, at the pointer it was given).
func (s *Set[T]) Update(m *Member[T], p Policy) {
	s.root = s.remove(s.root, m)
	*m.policy = p
	m.degradation = 0
	m.weightCredits = max(p.Weight, 1)
	s.place(m, m.seq)
}

// Select appends up to n members chosen by the policy to dst and returns
// it, updating the members' selection state (sequence numbers, degradation,
// round robin credits).
func (s *Set[T]) Select(n int, dst []T) []T {
	n = min(n, s.n)
	if n <= 0 {
		return dst
	}
	var picked [16]*Member[T]
	chosen := picked[:0]
	if s.random {
		for range n {
			m := s.draw()
			if m == nil {
				break // only members of weight 0 left
			}
			s.root = s.remove(s.root, m)
			chosen = append(chosen, m)
		}
		for i, m := range chosen {
			if i < s.maxIncrement() {
				s.handedOut(m)
			}
			s.place(m, m.seq)
		}
	} else {
		chosen = s.first(n, chosen)
		for _, m := range chosen {
			s.root = s.remove(s.root, m)
		}
		for i, m := range chosen {
			seq := m.seq
			if i < s.maxIncrement() {
				s.handedOut(m)
				if s.typ != WeightedRoundRobin || m.weightCredits == max(m.policy.Weight, 1) {
					seq = s.nextSeq()
				}
			}
			s.place(m, seq)
		}
	}
	for _, m := range chosen {
		dst = append(dst, m.Value)
	}
	return dst
}

func (s *Set[T]) maxIncrement() int { return max(s.MaxIncrement, 1) }

// handedOut updates a member's counters after a selection.
func (s *Set[T]) handedOut(m *Member[T]) {
	m.degradation += uint64(m.policy.LoadDegradation)
	if s.typ == WeightedRoundRobin {
		m.weightCredits--
		if m.weightCredits == 0 {
			m.weightCredits = max(m.policy.Weight, 1)
		}
	}
}

// All calls yield for every member in the set's order until it returns
// false.
func (s *Set[T]) All(yield func(*Member[T]) bool) {
	var walk func(*Member[T]) bool
	walk = func(m *Member[T]) bool {
		return m == nil || walk(m.left) && yield(m) && walk(m.right)
	}
	walk(s.root)
}

// first appends the first n members in order to dst.
func (s *Set[T]) first(n int, dst []*Member[T]) []*Member[T] {
	var stack [64]*Member[T]
	st := stack[:0]
	m := s.root
	for (m != nil || len(st) > 0) && n > 0 {
		for m != nil {
			st = append(st, m)
			m = m.left
		}
		m = st[len(st)-1]
		st = st[:len(st)-1]
		dst = append(dst, m)
		n--
		m = m.right
	}
	return dst
}

// draw picks a member with probability proportional to its weight. Only
// sets of random policies draw.
func (s *Set[T]) draw() *Member[T] {
	if s.root == nil || s.root.keySum == 0 {
		return nil
	}
	r := s.rnd.Uint64N(s.root.keySum)
	m := s.root
	for m != nil {
		if ls := sumOf(m.left); r < ls {
			m = m.left
			continue
		} else {
			r -= ls
		}
		if w := uint64(m.weightCredits); r < w {
			return m
		} else {
			r -= w
		}
		m = m.right
	}
	return nil
}

// sumOf is the sum of the draw weights in subtree m of a random policy's
// set.
func sumOf[T any](m *Member[T]) uint64 {
	if m == nil {
		return 0
	}
	return m.keySum
}

// fix recomputes m's subtree sum after its children changed, in a set of a
// random policy; ordered policies keep no sums.
func (s *Set[T]) fix(m *Member[T]) {
	if s.random {
		m.keySum = sumOf(m.left) + uint64(m.weightCredits) + sumOf(m.right)
	}
}

// less orders members by key, then sequence number (unique in a set); the
// members of a random policy's set have no key.
func (s *Set[T]) less(a, b *Member[T]) bool {
	if s.random {
		return a.seq < b.seq
	}
	return a.keySum < b.keySum || a.keySum == b.keySum && a.seq < b.seq
}

func (s *Set[T]) insert(t, m *Member[T]) *Member[T] {
	if t == nil {
		return m
	}
	if m.prio > t.prio {
		m.left, m.right = s.split(t, m)
		s.fix(m)
		return m
	}
	if s.less(m, t) {
		t.left = s.insert(t.left, m)
	} else {
		t.right = s.insert(t.right, m)
	}
	s.fix(t)
	return t
}

// split divides t into the members before pivot and those after it.
func (s *Set[T]) split(t, pivot *Member[T]) (l, r *Member[T]) {
	if t == nil {
		return nil, nil
	}
	if s.less(t, pivot) {
		t.right, r = s.split(t.right, pivot)
		s.fix(t)
		return t, r
	}
	l, t.left = s.split(t.left, pivot)
	s.fix(t)
	return l, t
}

func (s *Set[T]) merge(a, b *Member[T]) *Member[T] {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case a.prio > b.prio:
		a.right = s.merge(a.right, b)
		s.fix(a)
		return a
	default:
		b.left = s.merge(a, b.left)
		s.fix(b)
		return b
	}
}

func (s *Set[T]) remove(t, m *Member[T]) *Member[T] {
	if t == nil {
		return nil
	}
	if t == m {
		return s.merge(t.left, t.right)
	}
	if s.less(m, t) {
		t.left = s.remove(t.left, m)
	} else {
		t.right = s.remove(t.right, m)
	}
	s.fix(t)
	return t
}
