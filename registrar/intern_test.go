package registrar

import (
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"

	"github.com/rsp-go/rsp/asap"
)

// TestOwnedElementsShareHandle checks that the pool elements a registrar
// owns keep the handlespace's one copy of their pool handle, not each a
// copy decoded from its registration, in the owned index, their state and
// their connection's list.
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
	for h, m := range r.owned {
		for id, st := range m {
			if unsafe.StringData(string(h)) != data || unsafe.StringData(string(st.key.handle)) != data {
				t.Errorf("element %d keeps its own copy of the pool handle", id)
			}
			n++
		}
	}
	for pc := range r.conns {
		for st := pc.pes; st != nil; st = st.connNext {
			if unsafe.StringData(string(st.key.handle)) != data {
				t.Errorf("element %d keeps its own copy of the pool handle in its connection's list", st.key.id)
			}
		}
	}
	if n != 3 {
		t.Fatalf("%d elements owned, want 3", n)
	}
}

// TestElementsShareAddresses checks that the pool elements one connection
// registers with the same user transport addresses share one copy of
// them, and that an element registering other addresses gets its own.
func TestElementsShareAddresses(t *testing.T) {
	r, addr := startRegistrar(t, Config{KeepAliveInterval: -1, KeepAliveTimeout: time.Minute})
	pe := dialClient(t, addr)
	for id := asap.PEID(1); id <= 3; id++ {
		pe.register("shared", loopbackPE(id, 7, rr))
	}
	other := loopbackPE(4, 7, rr)
	other.UserTransport.Addrs = []netip.Addr{netip.IPv4Unspecified()} // the connection's address, 127.0.0.1 too
	pe.register("shared", other)
	r.mu.Lock()
	defer r.mu.Unlock()
	first, _ := r.hs.Lookup("shared", 1)
	if d := cmp.Diff([]netip.Addr{netip.MustParseAddr("127.0.0.1")}, first.UserTransport.Addrs, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Fatalf("addresses (-want +got):\n%s", d)
	}
	for id := asap.PEID(2); id <= 4; id++ {
		p, ok := r.hs.Lookup("shared", id)
		if !ok {
			t.Fatalf("element %d not registered", id)
		}
		if unsafe.SliceData(p.UserTransport.Addrs) != unsafe.SliceData(first.UserTransport.Addrs) {
			t.Errorf("element %d keeps its own copy of the addresses %v", id, p.UserTransport.Addrs)
		}
	}
}
