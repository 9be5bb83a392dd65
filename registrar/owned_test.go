package registrar

import (
	"slices"
	"testing"

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
