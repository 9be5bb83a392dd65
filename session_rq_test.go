package rsp

import "testing"

// TestReceiveQueueReusesItsArray: messages queued and read one by one, as
// a bulk stream does, allocate nothing once the queue's array holds them:
// the queue starts again at its array's beginning whenever it is empty
// (consumed from the front, it used to allocate a new array for every
// message once it reached the end of the old one).
func TestReceiveQueueReusesItsArray(t *testing.T) {
	s := &Session{}
	allocs := testing.AllocsPerRun(1, func() {
		for i := range 1000 {
			s.pushRQ(inMsg{seq: uint64(i + 1)})
			if i%3 == 0 {
				s.pushRQ(inMsg{seq: uint64(i + 1)})
				s.consumedLocked(s.rq[0])
			}
			s.consumedLocked(s.rq[0])
			s.consumed = s.consumed[:0]
		}
	})
	if allocs > 3 {
		t.Errorf("%v allocations for 1000 messages queued and read, want a few (the array's)", allocs)
	}
	if len(s.rq) != 0 {
		t.Fatalf("%d messages left in the queue", len(s.rq))
	}
}
