package registrar

import (
	"time"
)

// The keep-alive schedule: the owned pool elements by the time their next
// keep-alive is due (or the answer to the last one overdue), driven by one
// timer in one goroutine, instead of a timer per element.
//
// It is a hashed timing wheel: wheelSlots arrays of elements, one per tick
// of wheelTick, an element in the slot of the tick it is due in (modulo
// the wheel's length), knowing its index there. Scheduling and
// unscheduling an element cost the same at any number of elements: an
// append, or moving the slot's last element into the hole. A heap of 10^6
// elements took about 40 comparisons and swaps, each a cache miss, per
// keep-alive, a fifth of the registrar's CPU time; slots linked through
// the elements themselves made running a slot a chain of dependent cache
// misses, one per element, where an array lets the processor fetch many
// at once. An element due more than a revolution ahead (a long keep-alive
// interval) waits in its slot while the wheel passes it by. Elements come
// due no earlier than due, at the end of the tick they are due in, so that
// the elements due in one tick go out together, up to wheelTick late: the
// keep-alives of one connection that come due in a tick are written with
// one system call, and at 10^6 elements a write of a tick's keep-alives
// cost more than the keep-alives' other work. A slot that holds a few
// elements only comes due at the first of them exactly. A slot is looked
// through only when its tick has ended, or when it holds a few: looking
// through the current tick's elements at every run, for the ones due
// already, cost more than sending their keep-alives.

const (
	wheelTick  = int64(8 * time.Millisecond)
	wheelSlots = 4096 // a power of two; 32.8 s of ticks, beyond the default keep-alive interval and timeout
	wheelMask  = wheelSlots - 1
	// wheelExact is how many elements a slot may hold for its timer to
	// be set to the first of them exactly rather than to its tick's end.
	wheelExact = 8
	// maxFreeSlots is how many arrays of slots left empty the wheel
	// keeps for slots filling up. As the wheel turns, about one slot
	// empties and one fills per tick; every slot keeping its own
	// array kept room for a tick's elements in each of them, 100 MB at
	// 10^6 elements, where about a sixth of them hold elements at a
	// time (at the default keep-alive interval).
	maxFreeSlots = 64
)

// schedule is the timing wheel. Guarded by r.mu.
type schedule struct {
	slots [wheelSlots][]*peState
	// cur is the tick the wheel runs next: every element due before it
	// has come due, and an element scheduled for an earlier time goes
	// into cur's slot.
	cur int64
	n   int
	// running is set while run runs slot runSlot at runNow; again, when
	// an element due by then went into that slot.
	running, again bool
	runSlot        int32
	runNow         int64
	dueBuf         []*peState // run's elements taken off a slot
	// free holds the arrays of slots left empty, for slots to fill;
	// peak, the most elements each slot held since it was last empty.
	free [][]*peState
	peak [wheelSlots]int32
}

// add puts st on the wheel, due at (nanoseconds on the schedule's clock).
// st is not on it.
func (s *schedule) add(st *peState, at int64) {
	st.at = at
	t := max(at/wheelTick, s.cur)
	i := int32(t & wheelMask)
	a := s.slots[i]
	if a == nil && len(s.free) > 0 {
		a = s.free[len(s.free)-1]
		s.free[len(s.free)-1] = nil
		s.free = s.free[:len(s.free)-1]
	}
	st.slot, st.idx = i, int32(len(a))
	s.slots[i] = append(a, st)
	s.peak[i] = max(s.peak[i], st.idx+1)
	s.n++
	if s.running && i == s.runSlot && at <= s.runNow {
		s.again = true
	}
}

// remove takes st off the wheel, if it is on it.
func (s *schedule) remove(st *peState) {
	switch st.slot {
	case -1:
	case slotRunning:
		st.slot = -1 // taken off by run, and now not due after all
	default:
		s.take(st)
	}
}

// take takes st, on the wheel, off it: the slot's last element fills its
// place.
func (s *schedule) take(st *peState) {
	i := st.slot
	a := s.slots[i]
	last := len(a) - 1
	if int(st.idx) != last {
		m := a[last]
		a[st.idx], m.idx = m, st.idx
	}
	a[last] = nil
	s.slots[i] = s.emptied(i, a[:last])
	st.slot, st.idx = -1, 0
	s.n--
}

// emptied returns a, slot i's array, to keep in the slot: a itself, or
// nil once it is empty, its room kept in free for another slot unless it
// has more than twice what the slot held at its peak: so the arrays'
// room follows what the slots hold, and shrinks when they hold less than
// before (after a burst of registrations, say).
func (s *schedule) emptied(i int32, a []*peState) []*peState {
	if len(a) > 0 || cap(a) == 0 {
		return a
	}
	if len(s.free) < maxFreeSlots && cap(a) <= 2*int(s.peak[i])+minSlotRoom {
		s.free = append(s.free, a)
	}
	s.peak[i] = 0
	return nil
}

// minSlotRoom is room a slot's array may have beyond twice its peak and
// still be kept.
const minSlotRoom = 16

// Len returns the number of elements on the wheel.
func (s *schedule) Len() int { return s.n }

// run takes the elements due by now off the wheel and calls fn for each,
// at most limit of them, and reports whether more are due. fn may schedule
// the element it is given again, and schedule or unschedule others: an
// element of the same run that fn unschedules or schedules anew before
// its turn is not given to fn.
func (s *schedule) run(now int64, limit int, fn func(*peState)) (more bool) {
	nowTick := now / wheelTick
	// A revolution visits every slot: ticks further back need no visit.
	s.cur = max(s.cur, nowTick-wheelSlots+1)
	s.running, s.runNow = true, now
	defer func() { s.running = false }()
	done := 0
	for s.cur <= nowTick {
		i := int32(s.cur & wheelMask)
		if s.cur == nowTick && len(s.slots[i]) > wheelExact {
			break // its tick is not over
		}
		s.runSlot = i
		for {
			// First the slot's due elements come off it, in a loop
			// short enough for the processor to fetch many of them
			// at once, then fn sees them, with the slot left alone:
			// elements fn adds to it that are due by now set again,
			// and are met by another pass.
			s.again = false
			due := s.takeDue(i, now, limit-done)
			for _, st := range due {
				if st.slot == slotRunning {
					st.slot = -1
					done++
					fn(st)
				}
			}
			clear(due)
			if done == limit {
				return s.due(now)
			}
			if !s.again {
				break
			}
		}
		if s.cur == nowTick {
			break // later in this tick, more may come due
		}
		s.cur++
	}
	return false
}

// slotRunning is the slot of an element run has taken off the wheel and
// not yet given to fn.
const slotRunning = -2

// takeDue takes up to limit elements due by now off slot i and returns
// them, in s.dueBuf, each with slot slotRunning; the slot keeps the rest.
func (s *schedule) takeDue(i int32, now int64, limit int) []*peState {
	a, due := s.slots[i], s.dueBuf[:0]
	k := 0
	for _, st := range a {
		if st.at <= now && len(due) < limit {
			st.slot = slotRunning
			due = append(due, st)
			continue
		}
		st.idx = int32(k)
		a[k] = st
		k++
	}
	clear(a[k:])
	s.slots[i] = s.emptied(i, a[:k])
	s.n -= len(due)
	s.dueBuf = due
	return due
}

// due reports whether an element on the wheel is due by now: in a slot
// whose tick is over, or in the current tick's slot holding a few.
func (s *schedule) due(now int64) bool {
	nowTick := now / wheelTick
	for t := max(s.cur, nowTick-wheelSlots+1); t <= nowTick; t++ {
		a := s.slots[t&wheelMask]
		if t == nowTick && len(a) > wheelExact {
			break
		}
		for _, st := range a {
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
		a := s.slots[t&wheelMask]
		if len(a) == 0 {
			continue
		}
		end := (t + 1) * wheelTick
		if len(a) > wheelExact {
			return end, true
		}
		first := end
		for _, st := range a {
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
	// held collects the links with ENRP updates of the elements a run
	// removed, written once r.mu is released, from this goroutine.
	var held []*link
	for {
		wait := time.Hour
		for {
			r.mu.Lock()
			nowT := time.Now()
			now := r.schedNow(nowT)
			r.wakeAt = -1 << 63 // no wake-ups while it runs
			r.holdKicks = true
			more := r.sched.run(now, maxDuePerLock, func(st *peState) { r.keepAliveDueLocked(st, nowT, &held) })
			r.holdKicks = false
			r.kickAllLocked()
			r.wakeAt = 1<<63 - 1
			if next, ok := r.sched.next(); ok && !more {
				wait = time.Duration(max(next-now, 0))
				r.wakeAt = next
			}
			r.mu.Unlock()
			flushHeld(&held)
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
