package policy

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"
)

func seeded() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

func TestRoundRobinCycles(t *testing.T) {
	s := NewSet[int](RoundRobin, seeded())
	for i := range 5 {
		s.Add(i, Policy{Type: RoundRobin})
	}
	var firsts []int
	for range 10 {
		firsts = append(firsts, s.Select(1, nil)[0])
	}
	if want := []int{0, 1, 2, 3, 4, 0, 1, 2, 3, 4}; !slices.Equal(firsts, want) {
		t.Fatalf("round robin gave %v, want %v", firsts, want)
	}
	// Several at once: consecutive members from the head, which then
	// advances by one.
	if got := s.Select(3, nil); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("select 3 = %v", got)
	}
	if got := s.Select(3, nil); !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("next select 3 = %v", got)
	}
	// With MaxIncrement 3 every member returned moves behind the others.
	s.MaxIncrement = 3
	s.Select(3, nil) // 2 3 4
	if got := s.Select(3, nil); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("select 3 with MaxIncrement 3 = %v", got)
	}
}

func TestWeightedRoundRobinConvergesToWeights(t *testing.T) {
	s := NewSet[int](WeightedRoundRobin, seeded())
	weights := []uint32{1, 2, 5}
	for i, w := range weights {
		s.Add(i, Policy{Type: WeightedRoundRobin, Weight: w})
	}
	count := make([]int, 3)
	for range 800 {
		count[s.Select(1, nil)[0]]++
	}
	for i, w := range weights {
		if want := 800 * int(w) / 8; count[i] != want {
			t.Errorf("member %d (weight %d) chosen %d times of 800, want exactly %d", i, w, count[i], want)
		}
	}
}

func TestLeastUsedOrdersByLoadAndRotatesAmongEquals(t *testing.T) {
	s := NewSet[string](LeastUsed, seeded())
	s.Add("high", Policy{Type: LeastUsed, Load: 900})
	s.Add("low1", Policy{Type: LeastUsed, Load: 100})
	s.Add("mid", Policy{Type: LeastUsed, Load: 500})
	s.Add("low2", Policy{Type: LeastUsed, Load: 100})
	if got := s.Select(4, nil); !slices.Equal(got, []string{"low1", "low2", "mid", "high"}) {
		t.Fatalf("least used order %v", got)
	}
	var firsts []string
	for range 4 {
		firsts = append(firsts, s.Select(1, nil)[0])
	}
	// The selection of four handed out low1, which went behind low2.
	if !slices.Equal(firsts, []string{"low2", "low1", "low2", "low1"}) {
		t.Fatalf("equal loads did not rotate: %v", firsts)
	}
}

func TestLeastUsedDegradationCounters(t *testing.T) {
	s := NewSet[string](LeastUsedDegradation, seeded())
	a := s.Add("a", Policy{Type: LeastUsedDegradation, Load: 0, LoadDegradation: 100})
	s.Add("b", Policy{Type: LeastUsedDegradation, Load: 250, LoadDegradation: 100})
	// a: 0, 100, 200, 300 after each selection; b stays at 250.
	var got []string
	for range 4 {
		got = append(got, s.Select(1, nil)[0])
	}
	if want := []string{"a", "a", "a", "b"}; !slices.Equal(got, want) {
		t.Fatalf("selections %v, want %v", got, want)
	}
	if a.Degradation() != 300 {
		t.Fatalf("a's degradation %d, want 300", a.Degradation())
	}
	// A re-registration resets the counter.
	s.Update(a, Policy{Type: LeastUsedDegradation, Load: 0, LoadDegradation: 100})
	if a.Degradation() != 0 || s.Select(1, nil)[0] != "a" {
		t.Fatalf("after re-registration: degradation %d", a.Degradation())
	}
}

func TestPriorityLeastUsedAddsDegradation(t *testing.T) {
	s := NewSet[string](PriorityLeastUsed, seeded())
	s.Add("a", Policy{Type: PriorityLeastUsed, Load: 100, LoadDegradation: 500})
	s.Add("b", Policy{Type: PriorityLeastUsed, Load: 300, LoadDegradation: 100})
	if got := s.Select(2, nil); !slices.Equal(got, []string{"b", "a"}) {
		t.Fatalf("PLU order %v, want b (300+100) before a (100+500)", got)
	}
}

func TestPriorityHighestFirst(t *testing.T) {
	s := NewSet[string](Priority, seeded())
	s.Add("low", Policy{Type: Priority, Priority: 1})
	s.Add("top1", Policy{Type: Priority, Priority: 9})
	s.Add("top2", Policy{Type: Priority, Priority: 9})
	var firsts []string
	for range 4 {
		firsts = append(firsts, s.Select(1, nil)[0])
	}
	if !slices.Equal(firsts, []string{"top1", "top2", "top1", "top2"}) {
		t.Fatalf("priority picks %v", firsts)
	}
}

func TestWeightedRandomConverges(t *testing.T) {
	s := NewSet[int](WeightedRandom, seeded())
	weights := []uint32{1, 3, 6, 0}
	for i, w := range weights {
		s.Add(i, Policy{Type: WeightedRandom, Weight: w})
	}
	const draws = 100000
	count := make([]int, 4)
	for range draws {
		count[s.Select(1, nil)[0]]++
	}
	if count[3] != 0 {
		t.Fatalf("weight 0 member chosen %d times", count[3])
	}
	for i, w := range weights[:3] {
		want := float64(draws) * float64(w) / 10
		if math.Abs(float64(count[i])-want) > 4*math.Sqrt(want) {
			t.Errorf("member %d: %d draws, want about %.0f", i, count[i], want)
		}
	}
}

func TestRandomDrawsDistinct(t *testing.T) {
	s := NewSet[int](Random, seeded())
	for i := range 10 {
		s.Add(i, Policy{Type: Random})
	}
	for range 100 {
		got := s.Select(10, nil)
		slices.Sort(got)
		if !slices.Equal(got, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
			t.Fatalf("draw of 10 from 10: %v", got)
		}
	}
	if s.Len() != 10 {
		t.Fatalf("set has %d members after draws", s.Len())
	}
}

func TestRandomizedLeastUsedPrefersIdle(t *testing.T) {
	s := NewSet[string](RandomizedLeastUsed, seeded())
	s.Add("idle", Policy{Type: RandomizedLeastUsed, Load: 0})
	s.Add("busy", Policy{Type: RandomizedLeastUsed, Load: maxLoad / 4 * 3})
	idle := 0
	for range 10000 {
		if s.Select(1, nil)[0] == "idle" {
			idle++
		}
	}
	// Weights 1 and 1/4: idle wins 80 %.
	if idle < 7700 || idle > 8300 {
		t.Fatalf("idle chosen %d of 10000, want about 8000", idle)
	}
}

func TestDPFPolicies(t *testing.T) {
	s := NewSet[string](LeastUsedDPF, seeded())
	s.Add("far", Policy{Type: LeastUsedDPF, Load: 100, LoadDPF: 10, Distance: 50})
	s.Add("near", Policy{Type: LeastUsedDPF, Load: 300, LoadDPF: 10, Distance: 1})
	if got := s.Select(2, nil); !slices.Equal(got, []string{"near", "far"}) {
		t.Fatalf("LU-DPF order %v: near (300+10) before far (100+500)", got)
	}
	w := NewSet[string](WeightedRandomDPF, seeded())
	m := w.Add("x", Policy{Type: WeightedRandomDPF, Weight: 1000, WeightDPF: maxLoad / 100, Distance: 10})
	if m.weightCredits != 900 {
		t.Fatalf("WRAND-DPF weight %d, want 1000 - 1000*10*0.01 = 900", m.weightCredits)
	}
}

// TestSetMatchesModel runs random additions, removals and updates on a set
// of every policy type, with selections between them, and checks after
// each that the set holds the members it was given, in order, with their
// policy values and, for random policies, correct subtree sums.
func TestSetMatchesModel(t *testing.T) {
	for _, typ := range allTypes() {
		t.Run(typ.String(), func(t *testing.T) {
			rnd := seeded()
			s := NewSet[int](typ, rnd)
			members := map[int]*Member[int]{}
			policies := map[int]Policy{}
			next := 0
			for range 3000 {
				switch op := rnd.IntN(5); {
				case op < 2 || len(members) == 0:
					p := randomPolicy(typ, rnd)
					members[next] = s.Add(next, p)
					policies[next] = p
					next++
				case op == 2:
					for id, m := range members {
						s.Remove(m)
						delete(members, id)
						delete(policies, id)
						break
					}
				case op == 3:
					for id, m := range members {
						p := randomPolicy(typ, rnd)
						s.Update(m, p)
						policies[id] = p
						if m.Degradation() != 0 {
							t.Fatalf("degradation %d after Update, want 0", m.Degradation())
						}
						break
					}
				default:
					got := s.Select(1+rnd.IntN(4), nil)
					if len(got) > len(members) || len(got) == 0 && !typ.Random() {
						t.Fatalf("selected %d of %d members", len(got), len(members))
					}
				}
				checkSet(t, s, members, policies)
			}
		})
	}
}

func checkSet(t *testing.T, s *Set[int], members map[int]*Member[int], policies map[int]Policy) {
	t.Helper()
	if s.Len() != len(members) {
		t.Fatalf("Len %d, want %d", s.Len(), len(members))
	}
	var prev *Member[int]
	count := 0
	s.All(func(m *Member[int]) bool {
		if members[m.Value] != m {
			t.Fatalf("member %d walked, not in the set", m.Value)
		}
		if got, want := m.Policy(), policies[m.Value]; got != want {
			t.Fatalf("member %d has policy %v, want %v", m.Value, got, want)
		}
		if prev != nil && !s.less(prev, m) {
			t.Fatalf("out of order: %d/%d after %d/%d", m.keySum, m.seq, prev.keySum, prev.seq)
		}
		if s.random {
			if m.keySum != sumOf(m.left)+uint64(m.weightCredits)+sumOf(m.right) {
				t.Fatal("subtree sum wrong")
			}
			if m.weightCredits != s.drawWeight(m) {
				t.Fatalf("weight %d, want %d", m.weightCredits, s.drawWeight(m))
			}
		} else if m.keySum != s.sortKey(m) {
			t.Fatalf("key %d, want %d", m.keySum, s.sortKey(m))
		}
		prev = m
		count++
		return true
	})
	if count != len(members) {
		t.Fatalf("walked %d members, want %d", count, len(members))
	}
}

// TestMemberSize checks that a member fits Go's 64-byte size class, and
// one made by Add with its policy values the 96-byte one.
func TestMemberSize(t *testing.T) {
	if n := unsafe.Sizeof(Member[*int]{}); n > 64 {
		t.Errorf("Member is %d bytes, want at most 64", n)
	}
	if n := unsafe.Sizeof(memberWithPolicy[*int]{}); n > 96 {
		t.Errorf("Add allocates %d bytes, want at most 96", n)
	}
}

// TestInsertSharesPolicy checks that a member added by Insert reads and
// Update writes the caller's policy values, and that Policy returns them.
func TestInsertSharesPolicy(t *testing.T) {
	type elem struct {
		p Policy
		m Member[*elem]
	}
	var zero Member[*elem]
	if p := zero.Policy(); p != (Policy{}) {
		t.Fatalf("member never added has policy %v, want none", p)
	}
	s := NewSet[*elem](LeastUsed, seeded())
	a := &elem{p: Policy{Type: LeastUsed, Load: 5}}
	b := &elem{p: Policy{Type: LeastUsed, Load: 7}}
	s.Insert(&a.m, a, &a.p)
	s.Insert(&b.m, b, &b.p)
	if got := s.Select(2, nil); !slices.Equal(got, []*elem{a, b}) {
		t.Fatalf("order %v, want a (load 5) before b (load 7)", got)
	}
	s.Update(&a.m, Policy{Type: LeastUsed, Load: 9})
	if a.p.Load != 9 || a.m.Policy().Load != 9 {
		t.Fatalf("after Update the element's policy has load %d, Policy() %d; want 9", a.p.Load, a.m.Policy().Load)
	}
	if got := s.Select(2, nil); !slices.Equal(got, []*elem{b, a}) {
		t.Fatalf("order %v after Update, want b (load 7) before a (load 9)", got)
	}
}

func FuzzParsePolicy(f *testing.F) {
	for _, p := range []Policy{{Type: RoundRobin}, {Type: LeastUsed, Load: 7}, {Type: LeastUsedDegradationDPF, Load: 1, LoadDegradation: 2, LoadDPF: 3, Distance: 4}} {
		b, _ := p.AppendBinary(nil)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePolicy(b)
		if err != nil {
			return
		}
		out, err := p.AppendBinary(nil)
		if err != nil || string(out) != string(b) {
			t.Fatalf("re-encoded %x from %x (%v)", out, b, err)
		}
	})
}

// FuzzSet runs the additions, removals, updates and selections the input
// describes on a set of the policy type its first byte picks, and checks
// the set against a model after each.
func FuzzSet(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 3, 4, 1, 2, 4, 3})
	f.Add([]byte{3, 0, 0, 0, 0, 4, 4, 2, 3, 4, 1})
	f.Add([]byte{10, 0, 7, 0, 9, 0, 200, 4, 3, 1, 4})
	types := allTypes()
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 || len(b) > 4096 {
			return
		}
		typ := types[int(b[0])%len(types)]
		rnd := rand.New(rand.NewPCG(uint64(b[0]), uint64(len(b))))
		s := NewSet[int](typ, rnd)
		members := map[int]*Member[int]{}
		policies := map[int]Policy{}
		order := []int{} // ids in the set, for picking one by input
		pick := func(x byte) (int, bool) {
			if len(order) == 0 {
				return 0, false
			}
			return order[int(x)%len(order)], true
		}
		for i, op := range b[1:] {
			arg := byte(i) ^ op>>3
			switch op % 5 {
			case 0, 1:
				p := randomPolicy(typ, rnd)
				members[i] = s.Add(i, p)
				policies[i] = p
				order = append(order, i)
			case 2:
				if id, ok := pick(arg); ok {
					s.Remove(members[id])
					delete(members, id)
					delete(policies, id)
					order = slices.DeleteFunc(order, func(x int) bool { return x == id })
				}
			case 3:
				if id, ok := pick(arg); ok {
					p := randomPolicy(typ, rnd)
					s.Update(members[id], p)
					policies[id] = p
				}
			case 4:
				s.MaxIncrement = int(arg % 4)
				got := s.Select(1+int(arg%5), nil)
				seen := map[int]bool{}
				for _, v := range got {
					if members[v] == nil || seen[v] {
						t.Fatalf("selected %d: not in the set or twice (%v)", v, got)
					}
					seen[v] = true
				}
			}
			checkSet(t, s, members, policies)
		}
	})
}
