package registrar

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// BenchmarkKeepAliveSchedule compares the two ways of timing keep-alives:
// a time.AfterFunc per pool element (impl=afterfunc, the registrar's way
// before the schedule) and one schedule driven by one goroutine
// (impl=wheel, the schedule's structure and loop). Each op is one element
// coming due, with the same work in both: the registrar's lock taken and
// the element rescheduled (as after a keep-alive is sent). All b.N
// elements come due at once, as after a takeover or a burst of
// registrations, so ns/op is the cost per keep-alive of the timing alone;
// encoding and sending the keep-alives cost the same either way and are
// not included.
func BenchmarkKeepAliveSchedule(b *testing.B) {
	b.Run("impl=afterfunc", func(b *testing.B) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		timers := make([]*time.Timer, b.N)
		wg.Add(b.N)
		b.ResetTimer()
		mu.Lock()
		for i := range timers {
			timers[i] = time.AfterFunc(time.Millisecond, func() {
				mu.Lock()
				timers[i].Reset(time.Hour)
				mu.Unlock()
				wg.Done()
			})
		}
		mu.Unlock()
		wg.Wait()
		b.StopTimer()
		for _, t := range timers {
			t.Stop()
		}
	})
	b.Run("impl=wheel", func(b *testing.B) {
		var mu sync.Mutex
		var s schedule
		sts := make([]peState, b.N)
		done := make(chan struct{})
		b.ResetTimer()
		mu.Lock()
		epoch := time.Now()
		due := int64(time.Millisecond)
		for i := range sts {
			sts[i].slot = -1
			s.add(&sts[i], due)
		}
		mu.Unlock()
		go func() {
			defer close(done)
			fired := 0
			t := time.NewTimer(time.Until(epoch.Add(time.Duration(due))))
			<-t.C
			for fired < len(sts) {
				mu.Lock()
				now := int64(time.Since(epoch))
				s.run(now, maxDuePerLock, func(st *peState) {
					s.add(st, now+int64(time.Hour))
					fired++
				})
				mu.Unlock()
			}
		}()
		<-done
		b.StopTimer()
	})
}

// BenchmarkScheduleSteady measures the schedule in the steady state of a
// registrar holding n elements at the default keep-alive interval: each
// op is the earliest element coming due and rescheduled 3.75-6.25 s
// later, as every keep-alive is, on the timing wheel (impl=wheel) and on
// the binary heap the registrar had before (impl=heap, by due time, each
// element keeping its index). With 10^6 elements the heap's sift-downs
// are cache misses.
func BenchmarkScheduleSteady(b *testing.B) {
	for _, n := range []int{1000, 1000000} {
		b.Run(fmt.Sprintf("impl=heap/elements=%d", n), func(b *testing.B) {
			rnd := rand.New(rand.NewPCG(1, 2))
			h := make(refHeap, 0, n)
			sts := make([]peState, n)
			for i := range sts {
				heap.Push(&h, refEntry{rnd.Int64N(int64(5 * time.Second)), &sts[i]})
			}
			b.ResetTimer()
			for range b.N {
				e := heap.Pop(&h).(refEntry)
				e.at += int64(3750*time.Millisecond) + rnd.Int64N(int64(2500*time.Millisecond))
				heap.Push(&h, e)
			}
		})
		b.Run(fmt.Sprintf("impl=wheel/elements=%d", n), func(b *testing.B) {
			rnd := rand.New(rand.NewPCG(1, 2))
			var s schedule
			sts := make([]peState, n)
			for i := range sts {
				sts[i].slot = -1
				s.add(&sts[i], rnd.Int64N(int64(5*time.Second)))
			}
			b.ResetTimer()
			now := int64(0)
			for i := 0; i < b.N; {
				now += wheelTick / 8
				s.run(now, b.N-i, func(st *peState) {
					s.add(st, now+int64(3750*time.Millisecond)+rnd.Int64N(int64(2500*time.Millisecond)))
					i++
				})
			}
		})
	}
}

// refHeap is the schedule as it was: a binary heap by due time whose
// entries hold the due time, each element its index (in slot).
type refHeap []refEntry

type refEntry struct {
	at int64
	st *peState
}

func (s refHeap) Len() int           { return len(s) }
func (s refHeap) Less(i, j int) bool { return s[i].at < s[j].at }
func (s refHeap) Swap(i, j int) {
	s[i], s[j] = s[j], s[i]
	s[i].st.slot, s[j].st.slot = int32(i), int32(j)
}
func (s *refHeap) Push(x any) {
	e := x.(refEntry)
	e.st.slot = int32(len(*s))
	*s = append(*s, e)
}
func (s *refHeap) Pop() any {
	old := *s
	e := old[len(old)-1]
	*s = old[:len(old)-1]
	e.st.slot = -1
	return e
}

// The schedule runs every element once it is due, no earlier, and no
// later than the end of the tick it is due in; elements moved or removed
// come due at their new time or not at all; elements due more than a
// revolution ahead, or scheduled for a time already past, come due on
// time too; a run does no more than its limit and says when more are due.
func TestScheduleOrder(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	var s schedule
	const n = 5000
	sts := make([]*peState, n)
	want := make(map[*peState]int64)
	horizon := int64(3 * wheelSlots * wheelTick) // three revolutions
	for i := range sts {
		sts[i] = &peState{slot: -1}
		at := rnd.Int64N(horizon)
		s.add(sts[i], at)
		want[sts[i]] = at
	}
	// Move some, remove some.
	for i := 0; i < n; i += 7 {
		s.remove(sts[i])
		if sts[i].slot != -1 {
			t.Fatalf("removed element keeps slot %d", sts[i].slot)
		}
		delete(want, sts[i])
		if i%2 == 0 {
			at := rnd.Int64N(horizon)
			s.add(sts[i], at)
			want[sts[i]] = at
		}
	}
	if s.Len() != len(want) {
		t.Fatalf("Len = %d, want %d", s.Len(), len(want))
	}
	fired := make(map[*peState]int64)
	check := func(now int64) {
		t.Helper()
		for {
			nFired := len(fired)
			more := s.run(now, 100, func(st *peState) {
				if _, dup := fired[st]; dup {
					t.Fatalf("element fired twice")
				}
				fired[st] = now
				if st.slot != -1 || st.at > now {
					t.Fatalf("element due at %d fired at %d (slot %d)", st.at, now, st.slot)
				}
			})
			if len(fired)-nFired > 100 {
				t.Fatalf("run fired %d, over its limit of 100", len(fired)-nFired)
			}
			if !more {
				break
			}
			if len(fired) == nFired {
				t.Fatal("run reports more due but fired none")
			}
		}
		if s.due(now) {
			t.Fatalf("elements still due at %d after the runs", now)
		}
	}
	now := int64(0)
	for iter := 0; now < horizon+2*wheelTick; iter++ {
		if iter > 10*n {
			t.Fatalf("the schedule does not advance: at %d after %d runs", now, iter)
		}
		// Wake where the schedule asks to, or sooner.
		next, ok := s.next()
		if !ok {
			break
		}
		if next < now && !s.due(now) {
			t.Fatalf("next = %d, before the last run at %d, with nothing due", next, now)
		}
		now = max(now, min(next, now+rnd.Int64N(3*wheelTick)+1))
		check(now)
		if iter%50 == 0 {
			// An element scheduled in the past comes due at the next run.
			st := &peState{slot: -1}
			s.add(st, now-int64(time.Second))
			want[st] = now - int64(time.Second)
		}
	}
	check(now + 1)
	if s.Len() != 0 {
		t.Fatalf("%d elements left on the schedule", s.Len())
	}
	for st, at := range want {
		got, ok := fired[st]
		switch {
		case !ok:
			t.Fatalf("element due at %d never fired", at)
		case got < at:
			t.Fatalf("element due at %d fired early, at %d", at, got)
		}
	}
	if len(fired) != len(want) {
		t.Fatalf("%d fired, %d scheduled", len(fired), len(want))
	}
}

// The schedule asks to run again at the first element's time exactly when
// its slot holds a few, and no later than the end of the tick otherwise.
func TestScheduleNext(t *testing.T) {
	var s schedule
	if _, ok := s.next(); ok {
		t.Fatal("empty schedule has a next time")
	}
	a, b := &peState{slot: -1}, &peState{slot: -1}
	s.add(a, 5*wheelTick+7)
	s.add(b, 5*wheelTick+3)
	if next, _ := s.next(); next != 5*wheelTick+3 {
		t.Fatalf("next = %d, want %d", next, 5*wheelTick+3)
	}
	s.remove(b)
	if next, _ := s.next(); next != 5*wheelTick+7 {
		t.Fatalf("next = %d, want %d", next, 5*wheelTick+7)
	}
	s.remove(a)
	for i := range wheelExact + 1 {
		s.add(&peState{slot: -1}, 9*wheelTick+int64(i))
	}
	if next, _ := s.next(); next != 10*wheelTick {
		t.Fatalf("next = %d with a full slot, want its tick's end %d", next, 10*wheelTick)
	}
	// A full slot is not looked through before its tick ends, then all
	// of it comes due.
	fired := 0
	s.run(9*wheelTick+wheelExact, 100, func(*peState) { fired++ })
	if fired != 0 {
		t.Fatalf("%d of a full slot fired before its tick ended", fired)
	}
	s.run(10*wheelTick, 100, func(*peState) { fired++ })
	if fired != wheelExact+1 || s.Len() != 0 {
		t.Fatalf("%d of a full slot of %d fired at its tick's end, %d left", fired, wheelExact+1, s.Len())
	}
	// Due a revolution and more ahead: the wheel passes the slot by.
	var far schedule
	c := &peState{slot: -1}
	far.add(c, 2*wheelSlots*wheelTick+wheelTick/2)
	farFired := false
	for now := int64(0); now <= 2*wheelSlots*wheelTick+wheelTick; now += wheelTick / 2 {
		far.run(now, 10, func(st *peState) {
			if now < st.at {
				t.Fatalf("fired at %d, due at %d", now, st.at)
			}
			farFired = true
		})
	}
	if !farFired {
		t.Fatal("element due two revolutions ahead never fired")
	}
}

// BenchmarkScheduleKeepAliveCycle measures the schedule's part of a
// keep-alive at 10^6 elements as the registrar goes through it: the
// element comes due and is scheduled again for the answer's timeout
// (KeepAliveTimeout later), and when its answer comes, ackDepth
// keep-alives later in the order they were sent, it is taken off and
// scheduled for its next keep-alive 3.75-6.25 s on. The elements are
// allocated one by one and in random order, as registrations come, so
// that a run looks at elements scattered over the heap.
func BenchmarkScheduleKeepAliveCycle(b *testing.B) {
	const n, ackDepth = 1000000, 4096
	timeout := int64(5 * time.Second)
	rnd := rand.New(rand.NewPCG(1, 2))
	var s schedule
	sts := make([]*peState, n)
	for i := range sts {
		sts[i] = &peState{slot: -1}
	}
	rnd.Shuffle(n, func(i, j int) { sts[i], sts[j] = sts[j], sts[i] })
	for _, st := range sts {
		s.add(st, rnd.Int64N(int64(5*time.Second)))
	}
	sent := make([]*peState, 0, 2*ackDepth)
	b.ResetTimer()
	now := int64(0)
	for i := 0; i < b.N; {
		now += wheelTick
		s.run(now, b.N-i, func(st *peState) {
			s.add(st, now+timeout) // awaiting its answer
			sent = append(sent, st)
			i++
		})
		for len(sent) > ackDepth {
			st := sent[0]
			s.remove(st)
			s.add(st, now+int64(3750*time.Millisecond)+rnd.Int64N(int64(2500*time.Millisecond)))
			sent = sent[1:]
		}
		if cap(sent)-len(sent) < ackDepth {
			sent = append(make([]*peState, 0, 2*ackDepth+len(sent)), sent...)
		}
	}
}

// An element that fn unschedules, or schedules anew, before its turn in
// the same run is not given to fn then: it comes due at its new time or
// not at all. The schedule's count stays right throughout.
func TestScheduleRunLetsFnChangeOthers(t *testing.T) {
	var s schedule
	sts := []*peState{{slot: -1}, {slot: -1}, {slot: -1}, {slot: -1}}
	addAll := func() {
		for _, st := range sts {
			s.add(st, 5*wheelTick)
		}
	}
	// other returns an element of sts fn has not been given yet, other
	// than st.
	other := func(st *peState, fired map[*peState]int) *peState {
		for _, o := range sts {
			if o != st && fired[o] == 0 {
				return o
			}
		}
		return nil
	}

	// runChanging runs all four, due at once, the first element given
	// changing another one, not yet given, with change; it returns how
	// often each was given, and the one changed.
	runChanging := func(change func(*peState)) (map[*peState]int, *peState) {
		addAll()
		fired := map[*peState]int{}
		var changed *peState
		s.run(6*wheelTick, 100, func(st *peState) {
			fired[st]++
			if changed == nil {
				changed = other(st, fired)
				change(changed)
			}
		})
		return fired, changed
	}

	// The first element given takes another one off.
	fired, removed := runChanging(s.remove)
	if fired[removed] != 0 || len(fired) != 3 || s.Len() != 0 {
		t.Fatalf("run gave %v with one removed in the run, %d left on the wheel", fired, s.Len())
	}

	// The first element given moves another one later.
	later := 20 * wheelTick
	fired, moved := runChanging(func(o *peState) {
		s.remove(o)
		s.add(o, later)
	})
	if fired[moved] != 0 || len(fired) != 3 || s.Len() != 1 {
		t.Fatalf("run gave %v with one moved to later, %d left on the wheel", fired, s.Len())
	}
	s.run(later+wheelTick, 100, func(st *peState) { fired[st]++ })
	if fired[moved] != 1 || s.Len() != 0 {
		t.Fatalf("moved element fired %d times at its new time, %d left on the wheel", fired[moved], s.Len())
	}
}

// The wheel keeps room for about the elements it holds, not for a tick's
// worth in every slot: over revolutions of keep-alives, each element
// moving from slot to slot, the arrays of slots left empty are reused.
func TestScheduleRoomFollowsElements(t *testing.T) {
	const n = 50000
	rnd := rand.New(rand.NewPCG(5, 6))
	var s schedule
	interval := func() int64 { return int64(3750*time.Millisecond) + rnd.Int64N(int64(2500*time.Millisecond)) }
	for range n {
		s.add(&peState{slot: -1}, interval())
	}
	for now := int64(0); now < 3*wheelSlots*wheelTick; now += wheelTick {
		s.run(now, n, func(st *peState) { s.add(st, now+interval()) })
	}
	room := 0
	for _, a := range s.slots {
		room += cap(a)
	}
	for _, a := range s.free {
		room += cap(a)
	}
	if s.Len() != n || room > 3*n {
		t.Fatalf("%d elements on the wheel keep room for %d", s.Len(), room)
	}
	t.Logf("%d elements, room for %d", n, room)
}
