package registrar

import (
	"time"
)

// The keep-alive schedule: the owned pool elements by the time their next
// keep-alive is due (or the answer to the last one overdue), driven by one
// timer in one goroutine, instead of a timer per element.
//
// It is a hashed timing wheel: wheelSlots lists of elements, one per tick
// of wheelTick, linked through the elements themselves, an element in the
// slot of the tick it is due in (modulo the wheel's length). Scheduling and
// unscheduling an element cost the same at any number of elements, and
// touch the element and its list neighbours only: a heap of 10^6 elements
// took about 40 comparisons and swaps, each a cache miss, per keep-alive,
// a fifth of the registrar's CPU time. An element due more than a
// revolution ahead (a long keep-alive interval) waits in its slot while
// the wheel passes it by. Elements come due no earlier than due, at the
// end of the tick they are due in, so that the elements due in one tick go
// out together, up to wheelTick late; a slot that holds a few elements
// only comes due at the first of them exactly. A slot is looked through
// only when its tick has ended, or when it holds a few: looking through
// the current tick's few hundred elements at every run, for the ones due
// already, cost more than sending their keep-alives.

const (
	wheelTick  = int64(2 * time.Millisecond)
	wheelSlots = 4096 // a power of two; 8.2 s of ticks, beyond the default keep-alive interval and timeout
	wheelMask  = wheelSlots - 1
	// wheelExact is how many elements a slot may hold for its timer to
	// be set to the first of them exactly rather than to its tick's end.
	wheelExact = 8
)

// schedule is the timing wheel. Guarded by r.mu.
type schedule struct {
	slots [wheelSlots]*peState
	count [wheelSlots]int32 // elements in each slot
	// cur is the tick the wheel runs next: every element due before it
	// has come due, and an element scheduled for an earlier time goes
	// into cur's slot.
	cur int64
	n   int
	// running is set while run runs at runNow; again, when an element
	// due by then went into the slot it runs.
	running, again bool
	runNow         int64
}

// add puts st on the wheel, due at (nanoseconds on the schedule's clock).
// st is not on it.
func (s *schedule) add(st *peState, at int64) {
	st.at = at
	t := max(at/wheelTick, s.cur)
	i := int32(t & wheelMask)
	st.slot = i
	st.prev, st.next = nil, s.slots[i]
	if st.next != nil {
		st.next.prev = st
	}
	s.slots[i] = st
	s.count[i]++
	s.n++
	if s.running && t == s.cur && at <= s.runNow {
		s.again = true
	}
}

// remove takes st off the wheel, if it is on it.
func (s *schedule) remove(st *peState) {
	if st.slot < 0 {
		return
	}
	if st.prev != nil {
		st.prev.next = st.next
	} else {
		s.slots[st.slot] = st.next
	}
	if st.next != nil {
		st.next.prev = st.prev
	}
	s.count[st.slot]--
	st.prev, st.next, st.slot = nil, nil, -1
	s.n--
}

// Len returns the number of elements on the wheel.
func (s *schedule) Len() int { return s.n }

// run takes the elements due by now off the wheel and calls fn for each,
// at most limit of them, and reports whether more are due. fn may schedule
// the element it is given again; it must leave the others alone.
func (s *schedule) run(now int64, limit int, fn func(*peState)) (more bool) {
	nowTick := now / wheelTick
	// A revolution visits every slot: ticks further back need no visit.
	s.cur = max(s.cur, nowTick-wheelSlots+1)
	s.running, s.runNow = true, now
	defer func() { s.running = false }()
	done := 0
	for s.cur <= nowTick {
		i := s.cur & wheelMask
		if s.cur == nowTick && s.count[i] > wheelExact {
			break // its tick is not over
		}
		for {
			// Elements fn puts back into this slot go to its head,
			// before st: this pass does not meet them again, and
			// stops when the limit is reached with nothing to put
			// back.
			s.again = false
			for st := s.slots[i]; st != nil; {
				next := st.next
				if st.at <= now {
					if done == limit {
						return true
					}
					s.remove(st)
					done++
					fn(st)
				}
				st = next
			}
			if !s.again {
				break
			}
			// fn scheduled elements due by now into this slot.
		}
		if s.cur == nowTick {
			break // later in this tick, more may come due
		}
		s.cur++
	}
	return false
}

// due reports whether an element on the wheel is due by now: in a slot
// whose tick is over, or in the current tick's slot holding a few.
func (s *schedule) due(now int64) bool {
	nowTick := now / wheelTick
	for t := max(s.cur, nowTick-wheelSlots+1); t <= nowTick; t++ {
		if t == nowTick && s.count[t&wheelMask] > wheelExact {
			break
		}
		for st := s.slots[t&wheelMask]; st != nil; st = st.next {
			if st.at <= now {
				return true
			}
		}
	}
	return false
}

// next returns when the schedule should run again (on its clock), and
// false when the wheel is empty: the end of the first tick from cur whose
// slot holds elements, or the first of them when they are few.
func (s *schedule) next() (int64, bool) {
	if s.n == 0 {
		return 0, false
	}
	for t := s.cur; t < s.cur+wheelSlots; t++ {
		head := s.slots[t&wheelMask]
		if head == nil {
			continue
		}
		end := (t + 1) * wheelTick
		if s.count[t&wheelMask] > wheelExact {
			return end, true
		}
		first := end
		for st := head; st != nil; st = st.next {
			first = min(first, st.at)
		}
		return first, true
	}
	return s.cur * wheelTick, true // not reached: n > 0
}

// schedNow is t on the schedule's clock: nanoseconds since the
// registrar's epoch, a monotonic clock.
func (r *Registrar) schedNow(t time.Time) int64 { return int64(t.Sub(r.epoch)) }

// dueTime is when st is due, as a time.
func (r *Registrar) dueTime(st *peState) time.Time { return r.epoch.Add(time.Duration(st.at)) }

// never is a delay that never ends: a keep-alive interval that is off.
const never = time.Duration(1<<63 - 1)

// scheduleLocked makes st due d after now (on the schedule's clock),
// whether it was scheduled or not; a delay of never takes it off the
// schedule. r.mu is held.
func (r *Registrar) scheduleLocked(st *peState, d time.Duration, now int64) {
	st.waiting = false
	r.sched.remove(st)
	if d >= never-time.Duration(max(now, 0)) {
		st.at = 1<<63 - 1
		return
	}
	at := now + int64(d)
	r.sched.add(st, at)
	if at < r.wakeAt {
		r.wakeAt = at
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// unscheduleLocked takes st off the schedule. r.mu is held.
func (r *Registrar) unscheduleLocked(st *peState) {
	st.waiting = false
	r.sched.remove(st)
}

// maxDuePerLock bounds the elements the schedule handles per hold of r.mu,
// so that readers are not kept waiting when many are due at once.
const maxDuePerLock = 1024

// scheduleLoop runs the keep-alive schedule until Close.
func (r *Registrar) scheduleLoop() {
	defer r.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		wait := time.Hour
		for {
			r.mu.Lock()
			nowT := time.Now()
			now := r.schedNow(nowT)
			r.wakeAt = -1 << 63 // no wake-ups while it runs
			r.holdKicks = true
			more := r.sched.run(now, maxDuePerLock, func(st *peState) { r.keepAliveDueLocked(st, nowT) })
			r.holdKicks = false
			r.kickAllLocked()
			r.wakeAt = 1<<63 - 1
			if next, ok := r.sched.next(); ok && !more {
				wait = time.Duration(max(next-now, 0))
				r.wakeAt = next
			}
			r.mu.Unlock()
			if !more {
				break
			}
		}
		t.Reset(wait)
		select {
		case <-t.C:
		case <-r.wake:
		case <-r.done:
			return
		}
	}
}
