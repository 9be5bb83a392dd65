package policy

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// allTypes are the policy types this package knows, in a stable order.
func allTypes() []Type {
	var ts []Type
	for t := range layouts {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	return ts
}

// randomPolicy returns a policy of type t whose values (only those the type
// carries) are drawn from rnd in ranges that make the selection do real
// work: weights and priorities of a few steps, loads over the whole range.
func randomPolicy(t Type, rnd *rand.Rand) Policy {
	p := Policy{Type: t}
	f, _ := t.fields()
	for _, field := range f {
		v := p.value(field)
		switch field {
		case fieldWeight:
			*v = 1 + rnd.Uint32N(10)
		case fieldPriority:
			*v = rnd.Uint32N(10)
		case fieldLoad:
			*v = rnd.Uint32()
		case fieldDegradation:
			*v = rnd.Uint32N(maxLoad / 100)
		case fieldLoadDPF, fieldWeightDPF:
			*v = rnd.Uint32N(maxLoad / 1000)
		case fieldDistance:
			*v = rnd.Uint32N(100)
		}
	}
	return p
}

func benchSet(t Type, n int) (*Set[int], []*Member[int]) {
	rnd := seeded()
	s := NewSet[int](t, rnd)
	ms := make([]*Member[int], n)
	for i := range n {
		ms[i] = s.Add(i, randomPolicy(t, rnd))
	}
	return s, ms
}

// BenchmarkSelect3 selects three members, as a handle resolution does, by
// every policy type.
func BenchmarkSelect3(b *testing.B) {
	for _, t := range allTypes() {
		for _, n := range []int{1_000, 100_000} {
			b.Run(fmt.Sprintf("%v/n=%d", t, n), func(b *testing.B) {
				s, _ := benchSet(t, n)
				dst := make([]int, 0, 3)
				for b.Loop() {
					dst = s.Select(3, dst[:0])
				}
			})
		}
	}
}

// BenchmarkUpdate gives a member new policy values, as a re-registration
// with a new load does.
func BenchmarkUpdate(b *testing.B) {
	for _, t := range []Type{RoundRobin, LeastUsed, WeightedRandom, RandomizedLeastUsedDegradation} {
		b.Run(fmt.Sprintf("%v/n=100000", t), func(b *testing.B) {
			s, ms := benchSet(t, 100_000)
			rnd := rand.New(rand.NewPCG(3, 4))
			for b.Loop() {
				s.Update(ms[rnd.IntN(len(ms))], randomPolicy(t, rnd))
			}
		})
	}
}

// BenchmarkAddRemove adds a member to a set of 100000 and takes it out
// again, as a registration and a deregistration do.
func BenchmarkAddRemove(b *testing.B) {
	for _, t := range []Type{RoundRobin, LeastUsed, WeightedRandom} {
		b.Run(fmt.Sprintf("%v/n=100000", t), func(b *testing.B) {
			s, _ := benchSet(t, 100_000)
			p := randomPolicy(t, seeded())
			for b.Loop() {
				s.Remove(s.Add(-1, p))
			}
		})
	}
}
