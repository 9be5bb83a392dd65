package registrar

import (
	"testing"
	"time"
	"unsafe"

	"github.com/rsp-go/rsp/asap"
)

// TestOwnedElementsShareHandle checks that the pool elements a registrar
// owns keep the handlespace's one copy of their pool handle, not each a
// copy decoded from its registration, in the owned map, their state and
// their connection's set.
func TestOwnedElementsShareHandle(t *testing.T) {
	r, addr := startRegistrar(t, Config{KeepAliveInterval: -1, KeepAliveTimeout: time.Minute})
	pe := dialClient(t, addr)
	for id := asap.PEID(1); id <= 3; id++ {
		pe.register("interned", loopbackPE(id, 7, rr))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	want, ok := r.hs.Handle("interned")
	if !ok {
		t.Fatal("pool not in the handlespace")
	}
	data := unsafe.StringData(string(want))
	n := 0
	for k, st := range r.owned {
		if unsafe.StringData(string(k.handle)) != data || unsafe.StringData(string(st.key.handle)) != data {
			t.Errorf("element %d keeps its own copy of the pool handle", k.id)
		}
		for ck := range st.conn.pes {
			if ck == k && unsafe.StringData(string(ck.handle)) != data {
				t.Errorf("element %d keeps its own copy of the pool handle in its connection's set", k.id)
			}
		}
		n++
	}
	if n != 3 {
		t.Fatalf("%d elements owned, want 3", n)
	}
}
