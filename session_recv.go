package rsp

// receiver is a session's receive side for one connection: duplicate
// suppression by sequence number (everything up to rbase received, and a
// set of those received above it) and what the application processed (up
// to pbase, and a set above it), which is what the acknowledgements say.
// Within one connection messages come in order and the sets stay empty;
// they hold what a failover's resynchronisation messages, numbered after
// the replay, put ahead of it.
type receiver struct {
	rbase, pbase   uint64
	rabove, pabove map[uint64]bool
}

// receive records seq and reports whether it is new (to deliver) and
// whether it lies within window of what was received.
func (r *receiver) receive(seq uint64, window int) (fresh, inWindow bool) {
	if seq <= r.rbase || r.rabove[seq] {
		return false, true
	}
	if window > 0 && seq > r.rbase+uint64(window) {
		return false, false
	}
	if seq == r.rbase+1 {
		r.rbase++
		for r.rabove[r.rbase+1] {
			delete(r.rabove, r.rbase+1)
			r.rbase++
		}
		return true, true
	}
	if r.rabove == nil {
		r.rabove = make(map[uint64]bool)
	}
	r.rabove[seq] = true
	return true, true
}

// start makes a receiver whose every message up to base counts as
// received and processed.
func (r *receiver) start(base uint64) { r.rbase, r.pbase = base, base }

// processed records that the application processed seq.
func (r *receiver) processed(seq uint64) {
	if seq <= r.pbase {
		return
	}
	if seq == r.pbase+1 {
		r.pbase++
		for r.pabove[r.pbase+1] {
			delete(r.pabove, r.pbase+1)
			r.pbase++
		}
		return
	}
	if r.pabove == nil {
		r.pabove = make(map[uint64]bool)
	}
	r.pabove[seq] = true
}

// processedUpTo records that the application processed everything up to
// seq that was received (the message API's cumulative Ack).
func (r *receiver) processedUpTo(seq uint64) {
	seq = min(seq, r.rbase)
	if seq <= r.pbase {
		return
	}
	r.pbase = seq
	for s := range r.pabove {
		if s <= seq {
			delete(r.pabove, s)
		}
	}
	for r.pabove[r.pbase+1] {
		delete(r.pabove, r.pbase+1)
		r.pbase++
	}
}
