package peer

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/enrp"
	"github.com/rsp-go/rsp/handlespace"
)

// bigCore is a core over a handlespace of n elements in pools of at most
// 10^4, half of them its own.
func bigCore(tb testing.TB, n int) *Core {
	hs := handlespace.New(handlespace.Config{MaxPEsPerPool: 1 << 20, MaxPools: 1 << 20})
	for i := range n {
		home := asap.ServerID(1 + i%2)
		if _, err := hs.Register(asap.PoolHandle(fmt.Sprintf("pool%d", i/10000)), testPE(asap.PEID(i+1), home), epoch); err != nil {
			tb.Fatal(err)
		}
	}
	c := New(fast(1), hs)
	c.Start(epoch)
	return c
}

// allocated returns the bytes fn allocates.
func allocated(fn func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// TestHandleTableChunksDoNotCopyTheHandlespace: the first chunk of a
// handle table answer costs what the chunk and the pool it starts in cost,
// not a copy of the whole handlespace: the registrar holds its lock while
// it answers, and its keep-alives wait. The chunks still carry every
// element once, and with the W flag only the registrar's own.
func TestHandleTableChunksDoNotCopyTheHandlespace(t *testing.T) {
	const n = 100000
	for _, own := range []bool{false, true} {
		t.Run(fmt.Sprintf("own=%v", own), func(t *testing.T) {
			c := bigCore(t, n)
			req := &enrp.HandleTableRequest{Header: enrp.Header{Sender: 2, Receiver: 1}, OwnChildrenOnly: own}
			if err := c.Handle(epoch, &enrp.Presence{Header: enrp.Header{Sender: 2}}); err != nil {
				t.Fatal(err)
			}
			c.TakeOut()
			var first *enrp.HandleTableResponse
			bytes := allocated(func() {
				if err := c.Handle(epoch, req); err != nil {
					t.Fatal(err)
				}
				first = c.TakeOut()[0].Msg.(*enrp.HandleTableResponse)
			})
			// A pool's identifiers are 4 bytes each; a copy of every
			// element is over 100.
			if limit := uint64(20 * 10000); bytes > limit {
				t.Errorf("the first chunk allocated %d bytes for %d elements, want at most %d", bytes, n, limit)
			}
			seen := make(map[Key]bool)
			for m := first; ; {
				for _, p := range m.Pools {
					for _, pe := range p.PEs {
						k := Key{p.Handle, pe.ID}
						if seen[k] {
							t.Fatalf("%s sent twice", keyName(k))
						}
						if own && pe.Home != 1 {
							t.Fatalf("%s of %08x in an own-children answer", keyName(k), pe.Home)
						}
						seen[k] = true
					}
				}
				if !m.More {
					break
				}
				if err := c.Handle(epoch, req); err != nil {
					t.Fatal(err)
				}
				m = c.TakeOut()[0].Msg.(*enrp.HandleTableResponse)
			}
			want := n
			if own {
				want = n / 2
			}
			if len(seen) != want {
				t.Errorf("the chunks carried %d elements, want %d", len(seen), want)
			}
		})
	}
}

// BenchmarkHandleTableFirstChunk is the time the registrar's lock is held
// for the first chunk of a handle table answer over 10^5 elements.
func BenchmarkHandleTableFirstChunk(b *testing.B) {
	c := bigCore(b, 100000)
	if err := c.Handle(epoch, &enrp.Presence{Header: enrp.Header{Sender: 2}}); err != nil {
		b.Fatal(err)
	}
	c.TakeOut()
	req := &enrp.HandleTableRequest{Header: enrp.Header{Sender: 2, Receiver: 1}}
	b.ReportAllocs()
	for b.Loop() {
		delete(c.sessions, 2)
		if err := c.Handle(epoch, req); err != nil {
			b.Fatal(err)
		}
		c.TakeOut()
	}
}
