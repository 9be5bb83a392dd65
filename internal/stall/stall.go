// Package stall measures how long a test's process was kept from running,
// for tests that assert wall-clock bounds on a loaded machine. It imports
// nothing of the project, so that every package's tests can use it.
package stall

import (
	"sync"
	"testing"
	"time"
)

// Stalls measures how long the test's process was kept from running while
// it should have: a goroutine sleeps a millisecond at a time and adds up
// by how much each sleep overran, counting only overruns beyond stallFloor
// (a timer's ordinary lateness). On an idle machine the total stays near
// zero; on a loaded one it is the time the process's goroutines, and so
// the code under test, were waiting for a CPU.
//
// A test that asserts a wall-clock bound derived from its configuration
// (three heartbeats) adds the stall of its measured interval to the
// bound: the code cannot act while it is not running, and a real delay of
// its own (a timer armed late) still fails the test on an idle machine.
// It does not suit a test that keeps the CPU busy itself (a flood): the
// meter would count that too, and a bound with it would hide code that
// burns the CPU.
type Stalls struct {
	mu    sync.Mutex
	total time.Duration
	max   time.Duration
	once  sync.Once
	stop  chan struct{}
	done  chan struct{}
}

// stallFloor is the overrun of a millisecond's sleep that counts as a
// stall: timers fire late by tens of microseconds, more under the race
// detector.
const stallFloor = 2 * time.Millisecond

// Measure starts measuring; Stop ends it, and so does the test's end.
func Measure(tb testing.TB) *Stalls {
	s := &Stalls{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		const tick = time.Millisecond
		for {
			start := time.Now()
			select {
			case <-s.stop:
				return
			case <-time.After(tick):
			}
			if late := time.Since(start) - tick; late > stallFloor {
				s.mu.Lock()
				s.total += late
				s.max = max(s.max, late)
				s.mu.Unlock()
			}
		}
	}()
	tb.Cleanup(s.Stop)
	return s
}

// Stop ends the measurement; later calls do nothing.
func (s *Stalls) Stop() {
	s.once.Do(func() { close(s.stop) })
	<-s.done
}

// Total returns the stalls' sum so far, and the longest.
func (s *Stalls) Total() (total, longest time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total, s.max
}
