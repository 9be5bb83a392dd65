package peer

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/enrp"
	"github.com/rsp-go/rsp/handlespace"
	"github.com/rsp-go/rsp/policy"
)

// world is a set of registrar cores that exchange messages through a
// simulated network on fake time. Every message is encoded and decoded, as
// on a real link. cut links drop messages both ways.
type world struct {
	t     testing.TB
	now   time.Time
	nodes map[asap.ServerID]*node
	cut   map[[2]asap.ServerID]bool
	sent  map[enrp.MessageType]int
	// drop, when set, drops the messages it returns true for.
	drop func(from, to asap.ServerID, t enrp.MessageType) bool
}

// node is one registrar: its core, its handlespace and the elements
// registered over its live ASAP connections.
type node struct {
	id       asap.ServerID
	core     *Core
	hs       *handlespace.Handlespace
	live     map[Key]bool
	tookOver map[asap.ServerID][]Key
	disowned []Key
	down     bool
}

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newWorld(t testing.TB) *world {
	return &world{t: t, now: epoch, nodes: make(map[asap.ServerID]*node), cut: make(map[[2]asap.ServerID]bool), sent: make(map[enrp.MessageType]int)}
}

// add starts a registrar with cfg (its ID set).
func (w *world) add(cfg Config) *node {
	n := &node{id: cfg.ID, hs: handlespace.New(handlespace.Config{}), live: make(map[Key]bool), tookOver: make(map[asap.ServerID][]Key)}
	cfg.Live = func(h asap.PoolHandle, id asap.PEID) bool { return n.live[Key{h, id}] }
	cfg.Disown = func(h asap.PoolHandle, id asap.PEID) {
		delete(n.live, Key{h, id})
		n.disowned = append(n.disowned, Key{h, id})
	}
	cfg.TookOver = func(target asap.ServerID, pes []Key) {
		n.tookOver[target] = pes
		for _, k := range pes {
			n.live[k] = false
		}
	}
	if cfg.Info == nil {
		cfg.Info = &asap.ServerInformation{Server: cfg.ID, Transport: asap.Transport{Kind: asap.ParamSCTPTransport, Port: 9901, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}}
	}
	n.core = New(cfg, n.hs)
	n.core.Start(w.now)
	w.nodes[cfg.ID] = n
	return n
}

func (w *world) ids() []asap.ServerID {
	var ids []asap.ServerID
	for id := range w.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// partition cuts every link between a node of a and one of b; heal undoes
// all cuts.
func (w *world) partition(a, b []asap.ServerID) {
	for _, x := range a {
		for _, y := range b {
			w.cut[[2]asap.ServerID{x, y}] = true
			w.cut[[2]asap.ServerID{y, x}] = true
		}
	}
}

func (w *world) heal() { clear(w.cut) }

type envelope struct {
	from, to asap.ServerID
	b        []byte
}

// deliver sends what the cores have to send until the network is quiet.
func (w *world) deliver() {
	var q []envelope
	collect := func(n *node) {
		for _, o := range n.core.TakeOut() {
			b, err := o.Msg.AppendBinary(nil)
			if err != nil {
				w.t.Fatalf("%08x: encoding %v: %v", n.id, o.Msg.Type(), err)
			}
			w.sent[o.Msg.Type()]++
			if o.To != 0 {
				q = append(q, envelope{n.id, o.To, b})
				continue
			}
			for _, id := range w.ids() {
				if id != n.id {
					q = append(q, envelope{n.id, id, b})
				}
			}
		}
	}
	for _, id := range w.ids() {
		collect(w.nodes[id])
	}
	for i := 0; len(q) > 0; i++ {
		if i > 1e7 {
			w.t.Fatal("the network does not quieten")
		}
		e := q[0]
		q = q[1:]
		dst := w.nodes[e.to]
		src := w.nodes[e.from]
		if dst == nil || dst.down || src.down || w.cut[[2]asap.ServerID{e.from, e.to}] ||
			w.drop != nil && w.drop(e.from, e.to, enrp.MessageType(e.b[0])) {
			continue
		}
		dst.core.Receive(w.now, e.b)
		collect(dst)
	}
}

// run advances the clock by d in steps of step, running every timer that
// is due and delivering.
func (w *world) run(d, step time.Duration) {
	end := w.now.Add(d)
	for !w.now.After(end) {
		for _, id := range w.ids() {
			n := w.nodes[id]
			if !n.down && !n.core.Deadline().After(w.now) {
				n.core.Tick(w.now)
			}
		}
		w.deliver()
		w.now = w.now.Add(step)
	}
}

// register registers a pool element at n over a live connection, as the
// registrar does.
func (w *world) register(n *node, handle asap.PoolHandle, id asap.PEID) {
	pe := testPE(id, n.id)
	if _, err := n.hs.Register(handle, pe, w.now); err != nil {
		w.t.Fatal(err)
	}
	n.live[Key{handle, id}] = true
	n.core.Registered(handle, &pe)
}

func (w *world) deregister(n *node, handle asap.PoolHandle, id asap.PEID) {
	pe, ok := n.hs.Lookup(handle, id)
	if !ok {
		w.t.Fatalf("%08x has no %s/%d", n.id, handle, id)
	}
	p := *pe
	n.hs.Deregister(handle, id)
	delete(n.live, Key{handle, id})
	n.core.Removed(handle, &p)
}

func testPE(id asap.PEID, home asap.ServerID) asap.PoolElement {
	return asap.PoolElement{
		ID:   id,
		Home: home,
		Life: time.Hour,
		UserTransport: asap.Transport{
			Kind: asap.ParamTCPTransport, Port: 7, Use: asap.DataOnly,
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{127, 0, byte(id >> 8), byte(id)})},
		},
		Policy: policy.Policy{Type: policy.RoundRobin},
	}
}

// view is a handlespace as a comparable map: element to home.
func view(hs *handlespace.Handlespace) map[Key]asap.ServerID {
	m := make(map[Key]asap.ServerID)
	for handle := range hs.Pools() {
		for pe := range hs.Elements(handle) {
			m[Key{handle, pe.ID}] = pe.Home
		}
	}
	return m
}

// converged fails the test unless every running node holds the same
// handlespace and the same checksums, and returns that handlespace.
func (w *world) converged() map[Key]asap.ServerID {
	w.t.Helper()
	var first map[Key]asap.ServerID
	var firstID asap.ServerID
	for _, id := range w.ids() {
		n := w.nodes[id]
		if n.down {
			continue
		}
		v := view(n.hs)
		if first == nil {
			first, firstID = v, id
			continue
		}
		if d := cmp.Diff(first, v); d != "" {
			w.t.Fatalf("handlespaces of %08x and %08x differ (-first +second):\n%s", firstID, id, d)
		}
		for _, o := range w.ids() {
			if a, b := w.nodes[firstID].hs.Checksum(o), n.hs.Checksum(o); a != b {
				w.t.Fatalf("checksum of %08x: %04x at %08x, %04x at %08x", o, a, firstID, b, id)
			}
		}
	}
	return first
}

func keyName(k Key) string { return fmt.Sprintf("%s/%d", k.Handle, k.ID) }
