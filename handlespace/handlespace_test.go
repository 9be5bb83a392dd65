package handlespace

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/policy"
)

var t0 = time.Unix(1_000_000, 0)

func elem(id asap.PEID, home asap.ServerID, pol policy.Type) asap.PoolElement {
	return asap.PoolElement{
		ID: id, Home: home, Life: time.Minute,
		UserTransport: asap.Transport{Kind: asap.ParamTCPTransport, Port: 80,
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(id >> 8), byte(id)})}},
		Policy: policy.Policy{Type: pol},
	}
}

func newHS() *Handlespace { return New(Config{Rand: rand.New(rand.NewPCG(1, 1))}) }

func TestChecksumVectors(t *testing.T) {
	h := newHS()
	if c := h.Checksum(1); c != 0xffff {
		t.Fatalf("empty checksum %#04x, want 0xffff", c)
	}
	h.Register("EchoPool", elem(0x12345678, 1, policy.RoundRobin), t0)
	if c := h.Checksum(1); c != 0x29a5 {
		t.Fatalf("checksum %#04x, want 0x29a5", c)
	}
	h.Register("CalcAppPool", elem(0x0badf00d, 1, policy.RoundRobin), t0)
	if c := h.Checksum(1); c != 0xf0f4 {
		t.Fatalf("checksum of both %#04x, want 0xf0f4", c)
	}
	h.Deregister("EchoPool", 0x12345678)
	if c := h.Checksum(1); c != 0xc74f {
		t.Fatalf("checksum after removal %#04x, want 0xc74f", c)
	}
	// Moving ownership moves the checksum.
	h.TakeOver(1, 2)
	if c1, c2 := h.Checksum(1), h.Checksum(2); c1 != 0xffff || c2 != 0xc74f {
		t.Fatalf("after takeover %#04x %#04x, want 0xffff 0xc74f", c1, c2)
	}
}

func TestPoolConsistency(t *testing.T) {
	h := newHS()
	if _, err := h.Register("p", elem(1, 1, policy.RoundRobin), t0); err != nil {
		t.Fatal(err)
	}
	_, err := h.Register("p", elem(2, 1, policy.LeastUsed), t0)
	var re *RegistrationError
	if !errors.As(err, &re) || re.Cause.Code != asap.CauseInconsistentPolicy {
		t.Fatalf("policy mismatch: %v", err)
	}
	if pol, err := policy.ParsePolicy(re.Cause.Info[4:]); err != nil || pol.Type != policy.RoundRobin {
		t.Fatalf("cause carries %x, want the pool's RR policy", re.Cause.Info)
	}
	udp := elem(3, 1, policy.RoundRobin)
	udp.UserTransport.Kind = asap.ParamUDPTransport
	if _, err := h.Register("p", udp, t0); !errors.As(err, &re) || re.Cause.Code != asap.CauseInconsistentTransport {
		t.Fatalf("transport mismatch: %v", err)
	}
	if tr, err := asap.ParseTransport(re.Cause.Info); err != nil || tr.Kind != asap.ParamTCPTransport {
		t.Fatalf("cause carries %x, want the pool's TCP transport", re.Cause.Info)
	}
	ctl := elem(4, 1, policy.RoundRobin)
	ctl.UserTransport.Use = asap.DataPlusControl
	if _, err := h.Register("p", ctl, t0); !errors.As(err, &re) || re.Cause.Code != asap.CauseInconsistentDataControl {
		t.Fatalf("data/control mismatch: %v", err)
	}
	if h.Len() != 1 {
		t.Fatalf("%d elements after refusals, want 1", h.Len())
	}
}

func TestReregistrationReplaces(t *testing.T) {
	h := newHS()
	e := elem(1, 1, policy.LeastUsed)
	h.Register("p", e, t0)
	h.ReportUnreachable("p", 1, reporterA)
	h.ReportUnreachable("p", 1, reporterB)
	e.Policy.Load = 77
	e.Home = 9
	updated, err := h.Register("p", e, t0)
	if err != nil || !updated {
		t.Fatalf("re-registration: %v %v", updated, err)
	}
	got, _ := h.Lookup("p", 1)
	if got.Policy.Load != 77 || got.Home != 9 || h.Len() != 1 {
		t.Fatalf("after re-registration %+v", got)
	}
	if n := h.ReportUnreachable("p", 1, reporterA); n != 1 {
		t.Fatalf("reports after re-registration %d, want a fresh count of 1", n)
	}
	if h.Checksum(1) != 0xffff || h.Checksum(9) == 0xffff {
		t.Fatal("ownership did not move with the re-registration")
	}
}

func TestExpiry(t *testing.T) {
	h := newHS()
	for i, life := range []time.Duration{3 * time.Second, time.Second, 2 * time.Second, asap.LifeInfinite} {
		e := elem(asap.PEID(i+1), 1, policy.RoundRobin)
		e.Life = life
		h.Register("p", e, t0)
	}
	var order []asap.PEID
	h.Expire(t0.Add(2500*time.Millisecond), func(_ asap.PoolHandle, pe *asap.PoolElement) { order = append(order, pe.ID) })
	if fmt.Sprint(order) != "[2 3]" {
		t.Fatalf("expired %v, want [2 3]", order)
	}
	if n := h.Expire(t0.Add(time.Hour), nil); n != 1 || h.Len() != 1 {
		t.Fatalf("expired %d, left %d; want 1 and the infinite one", n, h.Len())
	}
	// A re-registration extends the life.
	e := elem(9, 1, policy.RoundRobin)
	h.Register("q", e, t0)
	h.Register("q", e, t0.Add(50*time.Second))
	if n := h.Expire(t0.Add(70*time.Second), nil); n != 0 {
		t.Fatal("re-registered element expired on its old life")
	}
}

func TestSelectAndUnknownPool(t *testing.T) {
	h := newHS()
	for id := asap.PEID(1); id <= 4; id++ {
		h.Register("p", elem(id, 1, policy.RoundRobin), t0)
	}
	got, pol, err := h.Select("p", 3, nil)
	if err != nil || len(got) != 3 || pol.Type != policy.RoundRobin {
		t.Fatalf("select: %d %v %v", len(got), pol, err)
	}
	if got[0].ID != 1 || got[1].ID != 2 || got[2].ID != 3 {
		t.Fatalf("first round robin selection %d %d %d", got[0].ID, got[1].ID, got[2].ID)
	}
	if _, _, err := h.Select("nope", 3, nil); !errors.Is(err, ErrUnknownPool) {
		t.Fatalf("unknown pool: %v", err)
	}
	h.Deregister("p", 1)
	h.Deregister("p", 2)
	h.Deregister("p", 3)
	h.Deregister("p", 4)
	if h.PoolCount() != 0 {
		t.Fatal("empty pool kept")
	}
}

func TestLimits(t *testing.T) {
	h := New(Config{MaxPools: 1, MaxPEsPerPool: 2})
	h.Register("a", elem(1, 1, policy.RoundRobin), t0)
	h.Register("a", elem(2, 1, policy.RoundRobin), t0)
	var re *RegistrationError
	if _, err := h.Register("a", elem(3, 1, policy.RoundRobin), t0); !errors.As(err, &re) || re.Cause.Code != asap.CauseLackOfResources {
		t.Fatalf("third element: %v", err)
	}
	if _, err := h.Register("b", elem(4, 1, policy.RoundRobin), t0); !errors.As(err, &re) || re.Cause.Code != asap.CauseLackOfResources {
		t.Fatalf("second pool: %v", err)
	}
	if _, err := h.Register("a", elem(2, 1, policy.RoundRobin), t0); err != nil {
		t.Fatalf("re-registration at the limit refused: %v", err)
	}
}

func TestOwnedBy(t *testing.T) {
	h := newHS()
	h.Register("a", elem(1, 1, policy.RoundRobin), t0)
	h.Register("a", elem(2, 2, policy.RoundRobin), t0)
	h.Register("b", elem(3, 1, policy.RoundRobin), t0)
	n := 0
	for _, pe := range h.OwnedBy(1) {
		if pe.Home != 1 {
			t.Fatalf("element %d of owner %d", pe.ID, pe.Home)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("owner 1 has %d elements, want 2", n)
	}
}

// TestMemoryPerElement checks the goal of under 1 KiB per pool element at a
// million elements.
func TestMemoryPerElement(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates a million elements")
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	h := New(Config{})
	const n = 1_000_000
	for i := range n {
		if _, err := h.Register(asap.PoolHandle(fmt.Sprintf("pool-%d", i%1000)), elem(asap.PEID(i+1), 1, policy.LeastUsed), t0); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.0f bytes per pool element at %d elements", per, n)
	if per > 1024 {
		t.Fatalf("%.0f bytes per element, want under 1 KiB", per)
	}
	runtime.KeepAlive(h)
}

// populate registers n elements in pool "bench" by policy pol; weighted
// policies get weights 1 to 10, so that a weighted random draw finds them.
func populate(b *testing.B, n int, pol policy.Type) *Handlespace {
	h := New(Config{})
	for i := range n {
		e := elem(asap.PEID(i+1), 1, pol)
		if pol == policy.WeightedRandom || pol == policy.WeightedRoundRobin {
			e.Policy.Weight = uint32(1 + i%10)
		}
		if _, err := h.Register("bench", e, t0); err != nil {
			b.Fatal(err)
		}
	}
	return h
}

var sizes = []int{1_000, 100_000, 1_000_000}
var benchPolicies = []policy.Type{policy.RoundRobin, policy.LeastUsed, policy.WeightedRandom}

func BenchmarkSelect3(b *testing.B) {
	for _, pol := range benchPolicies {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%v/n=%d", pol, n), func(b *testing.B) {
				h := populate(b, n, pol)
				dst := make([]*asap.PoolElement, 0, 3)
				b.ResetTimer()
				for b.Loop() {
					dst, _, _ = h.Select("bench", 3, dst[:0])
				}
			})
		}
	}
}

func BenchmarkRegisterNew(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			h := populate(b, n, policy.LeastUsed)
			id := asap.PEID(n + 1)
			b.ResetTimer()
			for b.Loop() {
				h.Register("bench", elem(id, 1, policy.LeastUsed), t0)
				id++
			}
		})
	}
}

func BenchmarkReregister(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			h := populate(b, n, policy.LeastUsed)
			e := elem(asap.PEID(n/2+1), 1, policy.LeastUsed)
			b.ResetTimer()
			for b.Loop() {
				e.Policy.Load++
				h.Register("bench", e, t0)
			}
		})
	}
}

func BenchmarkDeregister(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			h := populate(b, n, policy.LeastUsed)
			id := asap.PEID(1)
			b.ResetTimer()
			for b.Loop() {
				if !h.Deregister("bench", id) {
					b.StopTimer()
					h = populate(b, n, policy.LeastUsed)
					id = 0
					b.StartTimer()
				}
				id++
			}
		})
	}
}

var (
	reporterA = netip.MustParseAddr("192.0.2.1")
	reporterB = netip.MustParseAddr("192.0.2.2")
)

func TestUnreachableReportsCountPerReporter(t *testing.T) {
	h := newHS()
	h.Register("p", elem(1, 1, policy.RoundRobin), t0)
	for i := range 10 {
		if n := h.ReportUnreachable("p", 1, reporterA); n != 1 {
			t.Fatalf("report %d of one reporter: count %d, want 1", i+1, n)
		}
	}
	if n := h.ReportUnreachable("p", 1, reporterB); n != 2 {
		t.Fatalf("second reporter: count %d, want 2", n)
	}
	for i := range 40 {
		a := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		if n := h.ReportUnreachable("p", 1, a); n > maxReporters {
			t.Fatalf("count %d over the bound %d", n, maxReporters)
		}
	}
	if n := h.ReportUnreachable("p", 2, reporterA); n != 0 {
		t.Fatalf("unknown element: count %d", n)
	}
}

// TestHandleShared checks that Handle gives the pool's own copy of its
// handle, the one registered first, for an equal handle from elsewhere.
func TestHandleShared(t *testing.T) {
	h := New(Config{})
	first := asap.PoolHandle([]byte("shared"))
	if _, err := h.Register(first, elem(1, 1, policy.RoundRobin), t0); err != nil {
		t.Fatal(err)
	}
	other := asap.PoolHandle([]byte("shared"))
	got, ok := h.Handle(other)
	if !ok || got != first {
		t.Fatalf("Handle(%q) = %q, %v; want %q, true", other, got, ok, first)
	}
	if unsafe.StringData(string(got)) != unsafe.StringData(string(first)) {
		t.Fatal("Handle returned a copy, not the pool's handle")
	}
	if got, ok := h.Handle("none"); ok || got != "none" {
		t.Fatalf(`Handle("none") = %q, %v; want "none", false`, got, ok)
	}
}

// TestReportersForgotten checks that the unreachable reports of an element
// are forgotten when it re-registers, deregisters or expires, so that they
// neither count again nor stay behind.
func TestReportersForgotten(t *testing.T) {
	h := New(Config{})
	a := netip.MustParseAddr("127.0.0.1")
	for id := asap.PEID(1); id <= 3; id++ {
		if _, err := h.Register("p", elem(id, 1, policy.RoundRobin), t0); err != nil {
			t.Fatal(err)
		}
		if n := h.ReportUnreachable("p", id, a); n != 1 {
			t.Fatalf("element %d: %d reporters, want 1", id, n)
		}
	}
	if _, err := h.Register("p", elem(1, 1, policy.RoundRobin), t0); err != nil {
		t.Fatal(err)
	}
	if n := h.ReportUnreachable("p", 1, a); n != 1 {
		t.Fatalf("re-registered element: %d reporters, want 1 (the earlier report forgotten)", n)
	}
	h.Deregister("p", 1)
	h.Deregister("p", 2)
	h.Expire(t0.Add(time.Hour*24*365*100), nil)
	if h.Len() != 0 || len(h.reporters) != 0 {
		t.Fatalf("%d elements, reports of %d elements kept; want none", h.Len(), len(h.reporters))
	}
}

// BenchmarkMemoryPerElement registers 10^6 pool elements in 16 pools of
// 62,500, as the registrar's scale run does, and reports the live heap
// they take per element (B/element, after a collection): the handlespace's
// structures and each element's own address slice, as a parsed
// registration carries it. Run it with -benchtime=1x: one iteration takes
// a few seconds.
func BenchmarkMemoryPerElement(b *testing.B) {
	const pools, perPool = 16, 62_500
	handles := make([]asap.PoolHandle, pools)
	for i := range handles {
		handles[i] = asap.PoolHandle(fmt.Sprintf("pool-%02d", i))
	}
	var total float64
	iters := 0
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		h := New(Config{})
		for i := range pools * perPool {
			if _, err := h.Register(handles[i%pools], elem(asap.PEID(i+1), 1, policy.RoundRobin), t0); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		total += float64(after.HeapAlloc-before.HeapAlloc) / (pools * perPool)
		iters++
		runtime.KeepAlive(h)
	}
	b.ReportMetric(total/float64(iters), "B/element")
}

// TestEntrySize checks that an element fits Go's 144-byte size class and
// its policy set member the 64-byte one.
func TestEntrySize(t *testing.T) {
	if n := unsafe.Sizeof(entry{}); n > 144 {
		t.Errorf("entry is %d bytes, want at most 144", n)
	}
	if n := unsafe.Sizeof(member{}); n > 64 {
		t.Errorf("member is %d bytes, want at most 64", n)
	}
}
