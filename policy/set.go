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

	typ  Type
	root *Member[T]
	seq  uint64
	rnd  *rand.Rand
	n    int
}

// Member is an element of a Set.
type Member[T any] struct {
	Value  T
	policy Policy

	degradation uint64 // accumulated load degradation since (re-)registration
	credits     uint32 // weighted round robin selections left this round

	key, seq    uint64
	weight, sum uint64
	prio        uint32
	left, right *Member[T]
}

// Policy returns the member's policy values.
func (m *Member[T]) Policy() Policy { return m.policy }

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
	return &Set[T]{typ: t, rnd: rnd}
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
		return s.typ.effectiveLoad(&m.policy, m.degradation)
	}
	return 0
}

// drawWeight is the member's weight for random policies.
func (s *Set[T]) drawWeight(m *Member[T]) uint64 {
	p := &m.policy
	switch s.typ {
	case Random:
		return 1
	case WeightedRandom:
		return uint64(p.Weight)
	case WeightedRandomDPF:
		if p.Weight == 0 {
			return 0
		}
		penalty := math.Round(float64(p.Weight) * float64(p.Distance) * float64(p.WeightDPF) / maxLoad)
		w := float64(p.Weight) - penalty
		return uint64(max(w, 1))
	case RandomizedLeastUsed, RandomizedPriorityLeastUsed, RandomizedLeastUsedDegradation,
		RandomizedPriorityLeastUsedDegradation:
		return max(maxLoad-clampLoad(s.typ.effectiveLoad(p, m.degradation)), 1)
	}
	return 1
}

func (s *Set[T]) nextSeq() uint64 {
	s.seq++
	return s.seq
}

// Add inserts a member with value v and policy values p.
func (s *Set[T]) Add(v T, p Policy) *Member[T] {
	m := &Member[T]{Value: v, policy: p, prio: s.rnd.Uint32()}
	m.credits = max(p.Weight, 1)
	s.place(m, s.nextSeq())
	s.n++
	return m
}

// place computes m's key and weight and inserts it.
func (s *Set[T]) place(m *Member[T], seq uint64) {
	m.seq = seq
	m.key = s.sortKey(m)
	m.weight = s.drawWeight(m)
	m.left, m.right = nil, nil
	m.sum = m.weight
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
func (s *Set[T]) Update(m *Member[T], p Policy) {
	s.root = s.remove(s.root, m)
	m.policy = p
	m.degradation = 0
	m.credits = max(p.Weight, 1)
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
	if s.typ.Random() {
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
				if s.typ != WeightedRoundRobin || m.credits == max(m.policy.Weight, 1) {
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
		m.credits--
		if m.credits == 0 {
			m.credits = max(m.policy.Weight, 1)
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

// draw picks a member with probability proportional to its weight.
func (s *Set[T]) draw() *Member[T] {
	if s.root == nil || s.root.sum == 0 {
		return nil
	}
	r := s.rnd.Uint64N(s.root.sum)
	m := s.root
	for m != nil {
		if ls := sumOf(m.left); r < ls {
			m = m.left
			continue
		} else {
			r -= ls
		}
		if r < m.weight {
			return m
		}
		r -= m.weight
		m = m.right
	}
	return nil
}

func sumOf[T any](m *Member[T]) uint64 {
	if m == nil {
		return 0
	}
	return m.sum
}

func (m *Member[T]) fix() { m.sum = sumOf(m.left) + m.weight + sumOf(m.right) }

// less orders members by key, then sequence number (unique in a set).
func less[T any](a, b *Member[T]) bool {
	return a.key < b.key || a.key == b.key && a.seq < b.seq
}

func (s *Set[T]) insert(t, m *Member[T]) *Member[T] {
	if t == nil {
		return m
	}
	if m.prio > t.prio {
		m.left, m.right = split(t, m)
		m.fix()
		return m
	}
	if less(m, t) {
		t.left = s.insert(t.left, m)
	} else {
		t.right = s.insert(t.right, m)
	}
	t.fix()
	return t
}

// split divides t into the members before pivot and those after it.
func split[T any](t, pivot *Member[T]) (l, r *Member[T]) {
	if t == nil {
		return nil, nil
	}
	if less(t, pivot) {
		t.right, r = split(t.right, pivot)
		t.fix()
		return t, r
	}
	l, t.left = split(t.left, pivot)
	t.fix()
	return l, t
}

func merge[T any](a, b *Member[T]) *Member[T] {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case a.prio > b.prio:
		a.right = merge(a.right, b)
		a.fix()
		return a
	default:
		b.left = merge(a, b.left)
		b.fix()
		return b
	}
}

func (s *Set[T]) remove(t, m *Member[T]) *Member[T] {
	if t == nil {
		return nil
	}
	if t == m {
		return merge(t.left, t.right)
	}
	if less(m, t) {
		t.left = s.remove(t.left, m)
	} else {
		t.right = s.remove(t.right, m)
	}
	t.fix()
	return t
}
