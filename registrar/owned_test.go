package registrar

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rsp-go/rsp/asap"
)

// The owned index and the connections' lists stay consistent as elements
// are owned and disowned at the head, middle and end of a list, and a
// connection's list holds its elements only.
func TestOwnedIndexAndLists(t *testing.T) {
	r := New(Config{KeepAliveInterval: -1})
	defer r.Close()
	a, b := &peerConn{r: r}, &peerConn{r: r}
	sts := map[peKey]*peState{}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := asap.PEID(1); id <= 8; id++ {
		pc, h := a, asap.PoolHandle("p")
		if id > 5 {
			pc, h = b, "q"
		}
		st := newPeState(peKey{h, id}, pc)
		r.ownLocked(st)
		sts[st.key] = st
	}
	list := func(pc *peerConn) []asap.PEID {
		var ids []asap.PEID
		var prev *peState
		for st := pc.pes; st != nil; st = st.connNext {
			if st.connPrev != prev {
				t.Fatalf("element %d's previous link is wrong", st.key.id)
			}
			ids = append(ids, st.key.id)
			prev = st
		}
		slices.Sort(ids)
		return ids
	}
	for _, id := range []asap.PEID{5, 3, 1} { // head (last owned), middle, end
		r.disownLocked(sts[peKey{"p", id}])
		if r.ownedLocked(peKey{"p", id}) != nil {
			t.Fatalf("element %d still owned", id)
		}
	}
	r.disownLocked(sts[peKey{"p", 3}]) // twice: no effect
	if d := cmp.Diff([]asap.PEID{2, 4}, list(a)); d != "" {
		t.Errorf("connection a's list (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]asap.PEID{6, 7, 8}, list(b)); d != "" {
		t.Errorf("connection b's list (-want +got):\n%s", d)
	}
	if r.nOwned != 5 || r.ownedLocked(peKey{"q", 7}) != sts[peKey{"q", 7}] || r.ownedLocked(peKey{"p", 7}) != nil {
		t.Errorf("%d owned, q/7 %p, p/7 %p; want 5, %p, nil", r.nOwned, r.ownedLocked(peKey{"q", 7}), r.ownedLocked(peKey{"p", 7}), sts[peKey{"q", 7}])
	}
	for _, id := range []asap.PEID{6, 7, 8} {
		r.disownLocked(sts[peKey{"q", id}])
	}
	if _, ok := r.owned["q"]; ok || b.pes != nil {
		t.Error("pool q's index or connection b's list left behind after its last element")
	}
}

// Acknowledgements in the order of their keep-alives are matched to the
// first element of the connection's kaSent without a look-up in the
// owned index; one out of that order is looked up there, and elements
// that stopped waiting (answered out of order, removed, or of another
// connection) are dropped from kaSent, which so ends empty.
func TestSentMatchesAcks(t *testing.T) {
	r := New(Config{KeepAliveInterval: time.Hour, KeepAliveTimeout: time.Hour})
	defer r.Close()
	a := &peerConn{r: r, kaKick: make(chan struct{}, 1)}
	b := &peerConn{r: r, kaKick: make(chan struct{}, 1)}
	r.mu.Lock()
	defer r.mu.Unlock()
	sts := make([]*peState, 8)
	for i := range sts {
		pc := a
		if i == 6 {
			pc = b
		}
		sts[i] = newPeState(peKey{"p", asap.PEID(i)}, pc)
		r.ownLocked(sts[i])
		r.sendKeepAliveLocked(sts[i].key, sts[i], 0)
	}
	// Elements 0 and 1 leave the index (but stay owned): an ack that
	// still finds them took them from kaSent.
	delete(r.owned["p"], 0)
	delete(r.owned["p"], 1)
	ack := func(id asap.PEID) {
		t.Helper()
		a.ackLocked(peKey{"p", id}, 0)
	}
	awaiting := func() []asap.PEID {
		var ids []asap.PEID
		for _, st := range sts {
			if st.awaiting && st.owned {
				ids = append(ids, st.key.id)
			}
		}
		return ids
	}
	ack(0)
	ack(1)
	ack(4) // out of order: looked up
	r.removeLocked(sts[2].key, sts[2], nil)
	ack(3) // drops 2, which was removed
	ack(6) // b's element, acknowledged over a: ignored
	if d := cmp.Diff([]asap.PEID{5, 6, 7}, awaiting()); d != "" {
		t.Fatalf("elements still waiting (-want +got):\n%s", d)
	}
	ack(5) // drops 4, answered already
	ack(7)
	if d := cmp.Diff([]asap.PEID{6}, awaiting()); d != "" {
		t.Errorf("elements still waiting (-want +got):\n%s", d)
	}
	if n := len(a.kaSent) - a.kaHead; n != 0 {
		t.Errorf("%d elements left on kaSent, want none", n)
	}
	if len(b.kaSent) != 1 || b.kaSent[0] != sts[6] {
		t.Errorf("b's kaSent holds %d elements, want its element 6", len(b.kaSent))
	}
}
