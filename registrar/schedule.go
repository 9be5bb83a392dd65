package registrar

import (
	"container/heap"
	"time"
)

// The keep-alive schedule: one heap of the owned pool elements by the time
// their next keep-alive is due (or the answer to the last one overdue),
// driven by one timer in one goroutine, instead of a timer per element.

// schedule is a min-heap of pool elements by due time. Each entry holds
// its element's due time itself, so that ordering the heap reads the heap
// alone: with 10^6 elements, following a pointer to each element compared
// is a cache miss, and comparisons were a third of the registrar's CPU
// time. Guarded by r.mu.
type schedule []schedEntry

// schedEntry is an element on the schedule: at is its due time (st.due)
// as nanoseconds since the registrar's epoch, a monotonic clock.
type schedEntry struct {
	at int64
	st *peState
}

func (s schedule) Len() int           { return len(s) }
func (s schedule) Less(i, j int) bool { return s[i].at < s[j].at }
func (s schedule) Swap(i, j int) {
	s[i], s[j] = s[j], s[i]
	s[i].st.idx, s[j].st.idx = int32(i), int32(j)
}
func (s *schedule) Push(x any) {
	e := x.(schedEntry)
	e.st.idx = int32(len(*s))
	*s = append(*s, e)
}
func (s *schedule) Pop() any {
	old := *s
	e := old[len(old)-1]
	old[len(old)-1] = schedEntry{}
	*s = old[:len(old)-1]
	e.st.idx = -1
	return e
}

// schedAt is t on the schedule's clock: nanoseconds since epoch.
func schedAt(t, epoch time.Time) int64 { return int64(t.Sub(epoch)) }

// scheduleLocked makes st due after d, whether it was scheduled or not.
// r.mu is held.
func (r *Registrar) scheduleLocked(st *peState, d time.Duration) {
	st.waiting = false
	st.due = time.Now().Add(d)
	at := schedAt(st.due, r.epoch)
	if st.idx >= 0 {
		r.sched[st.idx].at = at
		heap.Fix(&r.sched, int(st.idx))
	} else {
		heap.Push(&r.sched, schedEntry{at, st})
	}
	if st.idx == 0 {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// unscheduleLocked takes st off the schedule. r.mu is held.
func (r *Registrar) unscheduleLocked(st *peState) {
	st.waiting = false
	if st.idx >= 0 {
		heap.Remove(&r.sched, int(st.idx))
	}
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
			now := time.Now()
			at := schedAt(now, r.epoch)
			n := 0
			for len(r.sched) > 0 && r.sched[0].at <= at && n < maxDuePerLock {
				st := heap.Pop(&r.sched).(schedEntry).st
				r.keepAliveDueLocked(st, now)
				n++
			}
			more := len(r.sched) > 0 && r.sched[0].at <= at
			if len(r.sched) > 0 && !more {
				wait = time.Duration(r.sched[0].at - at)
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
