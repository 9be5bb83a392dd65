package registrar

import "github.com/rsp-go/rsp/asap"

// The pool elements registered here over a live connection: an index by
// pool handle and identifier, and a list per connection linked through
// the elements' states, for the connection's end. An index per pool keeps
// 16 bytes per element where one map by handle and identifier kept 32,
// and the lists replace a map per connection: at 10^6 elements the two
// maps were a quarter of the registrar's memory.

// ownedIndex maps pool handles to their owned elements by identifier.
type ownedIndex map[asap.PoolHandle]map[asap.PEID]*peState

// ownedLocked returns the state of an owned element, or nil. r.mu is
// held.
func (r *Registrar) ownedLocked(key peKey) *peState { return r.owned[key.handle][key.id] }

// ownLocked records st as owned, registered over st.conn; st.key names
// no owned element. r.mu is held.
func (r *Registrar) ownLocked(st *peState) {
	m := r.owned[st.key.handle]
	if m == nil {
		m = make(map[asap.PEID]*peState)
		r.owned[st.key.handle] = m
	}
	m[st.key.id] = st
	st.owned = true
	r.nOwned++
	pc := st.conn
	st.connPrev, st.connNext = nil, pc.pes
	if pc.pes != nil {
		pc.pes.connPrev = st
	}
	pc.pes = st
}

// disownLocked stops watching an owned element: off the schedule, out of
// the index and its connection's list. r.mu is held.
func (r *Registrar) disownLocked(st *peState) {
	r.unscheduleLocked(st)
	m := r.owned[st.key.handle]
	if m[st.key.id] != st {
		return
	}
	delete(m, st.key.id)
	st.owned = false
	if len(m) == 0 {
		delete(r.owned, st.key.handle)
	}
	r.nOwned--
	if st.connPrev != nil {
		st.connPrev.connNext = st.connNext
	} else {
		st.conn.pes = st.connNext
	}
	if st.connNext != nil {
		st.connNext.connPrev = st.connPrev
	}
	st.connPrev, st.connNext = nil, nil
}
