package registrar

import (
	"container/heap"
	"sync"
	"testing"
	"time"
)

// BenchmarkKeepAliveSchedule compares the two ways of timing keep-alives:
// a time.AfterFunc per pool element (impl=afterfunc, the registrar's way
// before the schedule) and one heap driven by one goroutine (impl=heap,
// the schedule's structure and loop). Each op is one element coming due,
// with the same work in both: the registrar's lock taken and the element
// rescheduled (as after a keep-alive is sent). All b.N elements come due
// at once, as after a takeover or a burst of registrations, so ns/op is
// the cost per keep-alive of the timing alone; encoding and sending the
// keep-alives cost the same either way and are not included.
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
	b.Run("impl=heap", func(b *testing.B) {
		var mu sync.Mutex
		var s schedule
		sts := make([]peState, b.N)
		done := make(chan struct{})
		b.ResetTimer()
		mu.Lock()
		epoch := time.Now()
		due := epoch.Add(time.Millisecond)
		for i := range sts {
			sts[i].idx = -1
			sts[i].due = due
			heap.Push(&s, schedEntry{schedAt(due, epoch), &sts[i]})
		}
		mu.Unlock()
		go func() {
			defer close(done)
			fired := 0
			t := time.NewTimer(time.Until(due))
			<-t.C
			for fired < len(sts) {
				mu.Lock()
				now := time.Now()
				at := schedAt(now, epoch)
				for n := 0; len(s) > 0 && s[0].at <= at && n < maxDuePerLock; n++ {
					st := heap.Pop(&s).(schedEntry).st
					st.due = now.Add(time.Hour)
					heap.Push(&s, schedEntry{schedAt(st.due, epoch), st})
					fired++
				}
				mu.Unlock()
			}
		}()
		<-done
		b.StopTimer()
	})
}

// The schedule's heap keeps every element's index and pops them in due
// order.
func TestScheduleOrder(t *testing.T) {
	var s schedule
	base := time.Unix(1000, 0)
	sts := make([]*peState, 50)
	for i := range sts {
		sts[i] = &peState{idx: -1, due: base.Add(time.Duration((i*37)%50) * time.Second)}
		heap.Push(&s, schedEntry{schedAt(sts[i].due, base), sts[i]})
	}
	// Move some and remove some, as keep-alives and removals do.
	sts[3].due = base.Add(-time.Second)
	s[sts[3].idx].at = schedAt(sts[3].due, base)
	heap.Fix(&s, int(sts[3].idx))
	heap.Remove(&s, int(sts[7].idx))
	if sts[7].idx != -1 {
		t.Fatalf("removed element has index %d", sts[7].idx)
	}
	for i, e := range s {
		if int(e.st.idx) != i {
			t.Fatalf("element at %d has index %d", i, e.st.idx)
		}
		if e.at != schedAt(e.st.due, base) {
			t.Fatalf("element at %d is due at %d on the schedule, its due time says %d", i, e.at, schedAt(e.st.due, base))
		}
	}
	var last time.Time
	for n := 0; len(s) > 0; n++ {
		st := heap.Pop(&s).(schedEntry).st
		if n == 0 && st != sts[3] {
			t.Fatal("the element moved earliest is not first")
		}
		if st.due.Before(last) {
			t.Fatalf("popped %v after %v", st.due, last)
		}
		if st.idx != -1 {
			t.Fatalf("popped element keeps index %d", st.idx)
		}
		last = st.due
	}
}
