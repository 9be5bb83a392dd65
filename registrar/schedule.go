package registrar

import (
	"container/heap"
	"time"
)

// The keep-alive schedule: one heap of the owned pool elements by the time
// their next keep-alive is due (or the answer to the last one overdue),
// driven by one timer in one goroutine, instead of a timer per element.

// schedule is a min-heap of pool elements by due time. Guarded by r.mu.
type schedule []*peState

func (s schedule) Len() int           { return len(s) }
func (s schedule) Less(i, j int) bool { return s[i].due.Before(s[j].due) }
func (s schedule) Swap(i, j int) {
	s[i], s[j] = s[j], s[i]
	s[i].idx, s[j].idx = i, j
}
func (s *schedule) Push(x any) {
	st := x.(*peState)
	st.idx = len(*s)
	*s = append(*s, st)
}
func (s *schedule) Pop() any {
	old := *s
	st := old[len(old)-1]
	old[len(old)-1] = nil
	*s = old[:len(old)-1]
	st.idx = -1
	return st
}

// scheduleLocked makes st due after d, whether it was scheduled or not.
// r.mu is held.
func (r *Registrar) scheduleLocked(st *peState, d time.Duration) {
	st.due = time.Now().Add(d)
	if st.idx >= 0 {
		heap.Fix(&r.sched, st.idx)
	} else {
		heap.Push(&r.sched, st)
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
	if st.idx >= 0 {
		heap.Remove(&r.sched, st.idx)
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
			n := 0
			for len(r.sched) > 0 && !r.sched[0].due.After(now) && n < maxDuePerLock {
				st := heap.Pop(&r.sched).(*peState)
				r.keepAliveDueLocked(st, now)
				n++
			}
			more := len(r.sched) > 0 && !r.sched[0].due.After(now)
			if len(r.sched) > 0 && !more {
				wait = r.sched[0].due.Sub(now)
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
