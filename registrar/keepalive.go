package registrar

import (
	"math/rand/v2"
	"time"

	"github.com/rsp-go/rsp/asap"
)

// keepAliveDelay is the time to the next periodic keep-alive: the interval
// jittered by ±25 % so that keep-alives spread over time.
func (r *Registrar) keepAliveDelay() time.Duration {
	iv := r.cfg.KeepAliveInterval
	if iv < 0 {
		return never
	}
	return iv*3/4 + rand.N(iv/2+1)
}

// keepAliveDueLocked runs when a pool element comes due on the schedule,
// at now: either its next keep-alive is due, or the answer to the last one
// is overdue. When the schedule itself runs more than maxScheduleLag late,
// the registrar is behind, and the answer may be waiting unread: the
// element gets another KeepAliveTimeout instead of being removed for the
// registrar's slowness. An element removed has its ENRP update queued on
// the links added to held, for the caller to write with flushHeld once
// r.mu is released. r.mu is held.
func (r *Registrar) keepAliveDueLocked(st *peState, now time.Time, held *[]*link) {
	// st came off the schedule, and every path that stops owning an
	// element takes it off the schedule first (unscheduleLocked): st is
	// owned, without a look-up in r.owned per keep-alive.
	key := st.key
	if r.closed {
		return
	}
	at := r.schedNow(now)
	if lag := time.Duration(at - st.at); st.awaiting && lag > maxScheduleLag {
		if r.behindLog.allow() {
			r.cfg.Logger.Warn("keep-alive schedule behind; giving elements more time to answer", "lag", lag)
		}
		r.kaExtended.Add(1)
		st.extended = true
		r.scheduleLocked(st, r.cfg.KeepAliveTimeout, at)
		return
	}
	if st.awaiting && st.conn.behindLocked(st, at) {
		if r.slowLog.allow() {
			r.cfg.Logger.Warn("peer answers keep-alives late; giving its elements more time to answer", "peer", st.conn.c.RemoteAddr(), "late", time.Duration(st.conn.ackLate), "extended", r.kaExtended.Load()+1)
		}
		r.kaExtended.Add(1)
		st.extended = true
		r.scheduleLocked(st, r.cfg.KeepAliveTimeout, at)
		return
	}
	if st.awaiting {
		r.cfg.Logger.Info("pool element did not answer keep-alive; removed", "pool", key.handle, "pe", key.id)
		r.removeLocked(key, st, held)
		return
	}
	r.sendKeepAliveLocked(key, st, at)
}

// maxScheduleLag is how late the keep-alive schedule may run before the
// registrar counts as behind (see keepAliveDueLocked).
const maxScheduleLag = time.Second

// sendKeepAliveLocked sends ASAP_ENDPOINT_KEEP_ALIVE to the element and
// starts the wait for its answer. When the element's connection has
// SendQueue messages waiting to be written, the keep-alive waits instead,
// off the schedule, on the connection's kaWait, until the writer has made
// room (resumeKeepAlivesLocked): a connection whose writer is behind (the
// registrar busy, or many of its elements due at once) so loses neither
// itself nor its elements, and a waiting element costs nothing until
// then. A peer that does not read at all is still dropped: the writer's
// WriteTimeout closes its connection.
func (r *Registrar) sendKeepAliveLocked(key peKey, st *peState, now int64) {
	pc := st.conn
	queued := false
	if r.holdKicks {
		// While the schedule runs, the keep-alive joins the run's
		// others for its connection, encoded and counted together
		// once the run is over (kickAllLocked).
		if queued = pc.pending.Load()+int64(len(pc.kaRun)) < int64(r.cfg.SendQueue); queued {
			pc.kaRun = append(pc.kaRun, st)
		}
	} else {
		queued = pc.queueKeepAlive(asap.EndpointKeepAlive{Server: r.id, Handle: key.handle, ID: key.id})
	}
	if queued {
		st.awaiting = true
		pc.kaSent = append(pc.kaSent, st)
		r.kickLocked(pc)
		r.scheduleLocked(st, r.cfg.KeepAliveTimeout, now)
		return
	}
	if st.waiting {
		return
	}
	r.kaDeferred.Add(1)
	if r.deferLog.allow() {
		r.cfg.Logger.Warn("send queue full; keep-alives wait", "peer", st.conn.c.RemoteAddr(), "deferred", r.kaDeferred.Load())
	}
	r.unscheduleLocked(st)
	st.waiting = true
	st.conn.kaWait = append(st.conn.kaWait, st)
	st.conn.kaWaiting.Store(true)
}

// kickLocked tells pc's writer that keep-alives wait: at once, or, while
// the schedule runs, once it is done (kickAllLocked), so that the writer
// of a connection with many elements due in one run wakes once for all of
// them and writes them together, rather than waking for the first and
// contending with the schedule for the rest. r.mu is held.
func (r *Registrar) kickLocked(pc *peerConn) {
	if !r.holdKicks {
		pc.kickWriter()
		return
	}
	if !pc.kicked {
		pc.kicked = true
		r.kicks = append(r.kicks, pc)
	}
}

// kickAllLocked queues the keep-alives of the run for each connection
// and kicks the writers kickLocked held back. r.mu is held.
func (r *Registrar) kickAllLocked() {
	for _, pc := range r.kicks {
		pc.kicked = false
		if len(pc.kaRun) > 0 {
			pc.queueKeepAlives(pc.kaRun)
			clear(pc.kaRun)
			pc.kaRun = pc.kaRun[:0]
		}
		pc.kickWriter()
	}
	clear(r.kicks)
	r.kicks = r.kicks[:0]
}

// resumeKeepAlivesLocked sends the keep-alives waiting on pc's kaWait, in
// order, as long as the send queue has room; those of elements gone or
// scheduled again meanwhile are dropped from it. The connection's writer
// calls it after each write. r.mu is held.
func (r *Registrar) resumeKeepAlivesLocked(pc *peerConn) {
	i := 0
	now := r.schedNow(time.Now())
	for ; i < len(pc.kaWait) && !pc.queueFull(); i++ {
		st := pc.kaWait[i]
		if !st.waiting || r.closed || !st.owned || st.conn != pc {
			st.waiting = false
			continue
		}
		st.waiting = false
		r.sendKeepAliveLocked(st.key, st, now)
	}
	if i == 0 {
		return
	}
	// sendKeepAliveLocked may have put elements back at the end.
	n := copy(pc.kaWait, pc.kaWait[i:])
	clear(pc.kaWait[n:])
	pc.kaWait = pc.kaWait[:n]
	pc.kaWaiting.Store(n > 0)
}

// KeepAlivesDeferred returns how many times a keep-alive waited because
// its connection's send queue was full: the registrar stretching its
// keep-alive schedule rather than dropping a connection it is slow to
// write to.
func (r *Registrar) KeepAlivesDeferred() uint64 { return r.kaDeferred.Load() }

// keepAliveAck handles ASAP_ENDPOINT_KEEP_ALIVE_ACK. Within a batch it
// is only noted, and handled with the batch's others (flushAcks), so that
// a reader takes r.mu once per batch of acknowledgements rather than once
// each: at 10^5 elements and more, the readers and the schedule otherwise
// queue on that lock.
func (pc *peerConn) keepAliveAck(key peKey) {
	if pc.batching {
		pc.acks = append(pc.acks, key)
		return
	}
	pc.r.mu.Lock()
	pc.ackLocked(key, pc.r.schedNow(time.Now()))
	pc.r.mu.Unlock()
}

// flushAcks handles the acknowledgements noted during a batch. Reader
// only.
func (pc *peerConn) flushAcks() {
	if len(pc.acks) == 0 {
		return
	}
	pc.r.mu.Lock()
	now := pc.r.schedNow(time.Now()) // one clock read for the batch
	for _, key := range pc.acks {
		pc.ackLocked(key, now)
	}
	pc.r.mu.Unlock()
	clear(pc.acks)
	pc.acks = pc.acks[:0]
}

// ackLocked ends the wait for the answer of the element's keep-alive, if
// it registered over pc, and schedules the next one. r.mu is held.
func (pc *peerConn) ackLocked(key peKey, now int64) {
	r := pc.r
	st := pc.sentLocked(key)
	if st == nil || st.conn != pc || !st.awaiting {
		return
	}
	st.awaiting = false
	pc.lastAckAt = now
	if pc.skipped == st {
		pc.skipped = nil // answered after all
	}
	if !st.extended {
		// While it waited, st.at was when the answer would be
		// overdue. (Once extended, when it was sent is not known.)
		pc.ackLate = now - (st.at - int64(r.cfg.KeepAliveTimeout))
	}
	st.extended = false
	r.scheduleLocked(st, r.keepAliveDelay(), now)
}

// behindLocked reports whether st's keep-alive, overdue at now, may still
// be waiting to be read by a peer that answers late: the peer answered a
// keep-alive within the last KeepAliveTimeout, more than a quarter of it
// after it was sent, and has not passed st's over. A peer answers its
// keep-alives in the order they came, so that its answer to st's is then
// still to come: the keep-alive waits, with the ones after it, in the
// send queue, the sockets' buffers or the peer's own backlog. An element
// whose peer answered a later keep-alive while st's was the first
// outstanding (skipped, see sentLocked), or that answered none for
// KeepAliveTimeout, has no such excuse. r.mu is held.
func (pc *peerConn) behindLocked(st *peState, now int64) bool {
	timeout := int64(pc.r.cfg.KeepAliveTimeout)
	return st != pc.skipped && pc.lastAckAt > now-timeout && pc.ackLate > timeout/4
}

// sentLocked returns the owned element named key, or nil. The
// acknowledgements of a connection come in the order of its keep-alives,
// so that key mostly names the first element of kaSent still waiting for
// one: that element is taken from there, without a look-up in r.owned.
// An acknowledgement out of that order is looked for a little further on
// (up to maxSkipScan entries), where its entry is cleared, and the first
// element, which the peer then passed over, becomes pc.skipped; farther
// on, it costs a look-up in r.owned. An element on kaSent that no longer
// waits (answered, removed, moved to another connection) is dropped when
// it comes first. r.mu is held.
func (pc *peerConn) sentLocked(key peKey) *peState {
	fresh := func(st *peState) bool { return st != nil && st.awaiting && st.owned && st.conn == pc }
	for pc.kaHead < len(pc.kaSent) {
		st := pc.kaSent[pc.kaHead]
		if !fresh(st) {
			pc.kaSent[pc.kaHead] = nil
			pc.kaHead++
			continue
		}
		if st.key == key {
			pc.kaSent[pc.kaHead] = nil
			pc.kaHead++
			pc.trimSentLocked()
			return st
		}
		// Answered out of order.
		end := min(len(pc.kaSent), pc.kaHead+1+maxSkipScan)
		for i := pc.kaHead + 1; i < end; i++ {
			if e := pc.kaSent[i]; e != nil && e.key == key {
				pc.kaSent[i] = nil
				if fresh(e) {
					pc.skipped = st
					return e
				}
				break
			}
		}
		break
	}
	pc.trimSentLocked()
	return pc.r.ownedLocked(key)
}

// maxSkipScan is how far past the first entry of kaSent sentLocked looks
// for an acknowledgement out of order.
const maxSkipScan = 256

// trimSentLocked reuses kaSent's room once its head has moved past half
// of it. r.mu is held.
func (pc *peerConn) trimSentLocked() {
	switch {
	case pc.kaHead == len(pc.kaSent):
		pc.kaSent, pc.kaHead = pc.kaSent[:0], 0
		if cap(pc.kaSent) > maxSentKept {
			pc.kaSent = nil // keep no large slice
		}
	case pc.kaHead >= 1024 && 2*pc.kaHead >= len(pc.kaSent):
		n := copy(pc.kaSent, pc.kaSent[pc.kaHead:])
		clear(pc.kaSent[n:])
		pc.kaSent, pc.kaHead = pc.kaSent[:n], 0
	}
}

// maxSentKept is the most room an empty kaSent keeps.
const maxSentKept = 16 << 10

// removeLocked takes an owned pool element out of the handlespace and stops
// watching it; its ENRP update is queued on the links added to held (see
// dropHeldLocked).
func (r *Registrar) removeLocked(key peKey, st *peState, held *[]*link) {
	r.disownLocked(st)
	r.dropHeldLocked(key, held)
}

// expireLoop removes pool elements whose registration life ran out and tells
// those still connected with an unsolicited ASAP_DEREGISTRATION_RESPONSE.
func (r *Registrar) expireLoop() {
	defer r.wg.Done()
	t := time.NewTicker(expiryCheckInterval)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			r.clock.Store(now.UnixNano())
			r.expire(now)
		case <-r.done:
			return
		}
	}
}

// expiryCheckInterval is the granularity of registration life expiry, and
// clockGranularity that of the registrar's coarse clock.
const (
	expiryCheckInterval = 100 * time.Millisecond
	clockGranularity    = expiryCheckInterval
)

// coarseNow returns the time of the last expiry check: a clock that is at
// most clockGranularity behind, for write deadlines and the start of
// registration lives, which need no better and come with every message.
func (r *Registrar) coarseNow() time.Time { return time.Unix(0, r.clock.Load()) }

// expire removes the elements whose life ran out by now. As for a
// deregistration, the peers' updates are written first, from this
// goroutine once r.mu is released, and then the elements still connected
// are told.
func (r *Registrar) expire(now time.Time) {
	type told struct {
		pc *peerConn
		m  asap.DeregistrationResponse
	}
	var held []*link
	var tell []told
	r.mu.Lock()
	r.hs.Expire(now, func(h asap.PoolHandle, pe *asap.PoolElement) {
		key := peKey{h, pe.ID}
		r.cfg.Logger.Info("registration life expired", "pool", h, "pe", pe.ID)
		r.expiredLocked(h, pe, &held)
		if st := r.ownedLocked(key); st != nil {
			r.disownLocked(st)
			tell = append(tell, told{st.conn, asap.DeregistrationResponse{Handle: h, ID: pe.ID}})
		}
	})
	r.mu.Unlock()
	flushHeld(&held)
	for i := range tell {
		tell[i].pc.send(&tell[i].m)
	}
}

// KeepAliveTimeoutsExtended returns how many times an overdue keep-alive
// got another KeepAliveTimeout instead of its element being removed:
// because the registrar's schedule ran behind, or because the element's
// peer, answering late, had not yet answered any keep-alive sent after it.
func (r *Registrar) KeepAliveTimeoutsExtended() uint64 { return r.kaExtended.Load() }
