package peer

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/enrp"
	"github.com/rsp-go/rsp/handlespace"
)

const ms = time.Millisecond

// fast are the timers of these tests.
func fast(id asap.ServerID) Config {
	return Config{
		ID:                id,
		HeartbeatInterval: 100 * ms,
		MaxTimeLastHeard:  250 * ms,
		MaxTimeNoResponse: 150 * ms,
		TakeoverExpiry:    300 * ms,
	}
}

func three(t *testing.T) (*world, *node, *node, *node) {
	w := newWorld(t)
	a, b, c := w.add(fast(1)), w.add(fast(2)), w.add(fast(3))
	w.run(200*ms, 10*ms)
	for _, n := range []*node{a, b, c} {
		if got := len(n.core.Peers()); got != 2 {
			t.Fatalf("%08x knows %d peers, want 2", n.id, got)
		}
	}
	return w, a, b, c
}

func TestHandleUpdatesReplicate(t *testing.T) {
	w, a, b, c := three(t)
	w.register(a, "echo", 10)
	w.register(b, "echo", 20)
	w.register(c, "calc", 30)
	w.deliver()
	want := map[Key]asap.ServerID{{"echo", 10}: 1, {"echo", 20}: 2, {"calc", 30}: 3}
	if d := cmp.Diff(want, w.converged()); d != "" {
		t.Fatalf("after registrations (-want +got):\n%s", d)
	}
	w.deregister(b, "echo", 20)
	w.deliver()
	delete(want, Key{"echo", 20})
	if d := cmp.Diff(want, w.converged()); d != "" {
		t.Fatalf("after deregistration (-want +got):\n%s", d)
	}
	// Heartbeats go on without audits: the checksums agree.
	w.run(2*time.Second, 10*ms)
	w.converged()
	for _, n := range []*node{a, b, c} {
		if s := n.core.Stats(); s.Takeovers != 0 || s.Syncs != 2 {
			t.Errorf("%08x: %+v, want no takeovers and the two start-up syncs only", n.id, s)
		}
	}
}

func TestNewRegistrarGetsTheHandlespaceInChunks(t *testing.T) {
	w, a, b, _ := three(t)
	const perNode = 1000
	for i := range perNode {
		w.register(a, "big", asap.PEID(1+i))
		w.register(b, "other", asap.PEID(1+i))
	}
	w.deliver()
	before := w.sent[enrp.TypeHandleTableResponse]
	d := w.add(fast(4))
	w.run(100*ms, 10*ms)
	got := view(d.hs)
	if len(got) != 2*perNode {
		t.Fatalf("new registrar holds %d elements, want %d", len(got), 2*perNode)
	}
	w.converged()
	// The mentor sent everything in chunks of at most 128; the others
	// their own elements.
	if n := w.sent[enrp.TypeHandleTableResponse] - before; n < 2*perNode/DefaultMaxElementsPerResponse {
		t.Errorf("%d handle table responses, want at least %d chunks", n, 2*perNode/DefaultMaxElementsPerResponse)
	}
	if !d.core.Synced() {
		t.Error("new registrar not synced with its mentor")
	}
}

func TestDeadPeerIsTakenOverByTheLowerID(t *testing.T) {
	w, a, b, c := three(t)
	for i := range 10 {
		w.register(c, "echo", asap.PEID(100+i))
	}
	w.register(a, "echo", 1)
	w.deliver()
	died := w.now
	c.down = true
	var took time.Time
	for w.now.Sub(died) < 3*time.Second && took.IsZero() {
		w.run(10*ms, 10*ms)
		if len(a.tookOver)+len(b.tookOver) > 0 {
			took = w.now
		}
	}
	if took.IsZero() {
		t.Fatal("nobody took the dead registrar over")
	}
	// Silence up to the last heartbeat + last-heard + no-response + a tick.
	if d := took.Sub(died); d > 100*ms+250*ms+150*ms+50*ms {
		t.Errorf("takeover %v after death, want within %v", d, 550*ms)
	}
	// Both noticed at the same time; the lower identifier wins.
	if len(a.tookOver[3]) != 10 || len(b.tookOver) != 0 {
		t.Fatalf("a took over %d, b %v; want a (lower id) all 10", len(a.tookOver[3]), b.tookOver)
	}
	w.run(500*ms, 10*ms)
	got := w.converged()
	for k, home := range got {
		if k.ID >= 100 && home != 1 {
			t.Errorf("%s: home %08x, want 00000001", keyName(k), home)
		}
	}
	if len(got) != 11 {
		t.Errorf("%d elements, want 11", len(got))
	}
	if p := b.core.Peers(); len(p) != 1 || p[0] != 1 {
		t.Errorf("b's peers %v, want [1]", p)
	}
	// The taken-over element re-registers at b, its new home.
	w.register(b, "echo", 105)
	w.deliver()
	if got := w.converged()[Key{"echo", 105}]; got != 2 {
		t.Errorf("re-registered element's home %08x, want 2", got)
	}
}

func TestTakeoverTieRule(t *testing.T) {
	hs := handlespace.New(handlespace.Config{})
	cfg := fast(5)
	c := New(cfg, hs)
	c.Start(epoch)
	now := epoch
	for _, id := range []asap.ServerID{3, 7, 9} {
		if err := c.Handle(now, c2(id, 0)); err != nil {
			t.Fatal(err)
		}
	}
	c.TakeOut()
	hs.Register("p", testPE(1, 9), now)
	// 9 falls silent; 5 probes it and starts a takeover.
	for now = epoch; now.Sub(epoch) < time.Second; now = now.Add(10 * ms) {
		c.Handle(now, c2(3, 0))
		c.Handle(now, c2(7, 0))
		c.Tick(now)
		if c.peers[9].takeover != nil {
			break
		}
	}
	if c.peers[9].takeover == nil {
		t.Fatal("no takeover of the silent peer")
	}
	c.TakeOut()
	// 7 (higher id) also takes 9 over: 5 ignores it.
	c.Handle(now, &enrp.InitTakeover{Header: enrp.Header{Sender: 7}, Target: 9})
	if out := c.TakeOut(); len(out) != 0 || c.peers[9].takeover == nil {
		t.Fatalf("after a higher id's init takeover: out %v, takeover %v; want ignored", out, c.peers[9].takeover)
	}
	// 3 (lower id) does too: 5 aborts and acknowledges.
	c.Handle(now, &enrp.InitTakeover{Header: enrp.Header{Sender: 3}, Target: 9})
	out := c.TakeOut()
	want := []Out{{To: 3, Reply: true, Msg: &enrp.InitTakeoverAck{Header: enrp.Header{Sender: 5, Receiver: 3}, Target: 9}}}
	if d := cmp.Diff(want, out); d != "" {
		t.Fatalf("answer to a lower id's init takeover (-want +got):\n%s", d)
	}
	if c.peers[9].takeover != nil {
		t.Fatal("own takeover not aborted")
	}
	// 3 completes: 9's elements move to 3.
	c.Handle(now, &enrp.TakeoverServer{Header: enrp.Header{Sender: 3}, Target: 9})
	if got, _ := hs.Lookup("p", 1); got.Home != 3 {
		t.Fatalf("home after takeover server %08x, want 3", got.Home)
	}
	if _, ok := c.peers[9]; ok {
		t.Fatal("taken-over peer still in the table")
	}
}

// c2 is a presence of id with the checksum of its (here: no) elements.
func c2(id asap.ServerID, to asap.ServerID) *enrp.Presence {
	return &enrp.Presence{Header: enrp.Header{Sender: id, Receiver: to}, Checksum: 0xffff}
}

func TestTakeoverCancelledByTheTarget(t *testing.T) {
	hs := handlespace.New(handlespace.Config{})
	c := New(fast(1), hs)
	c.Start(epoch)
	c.Handle(epoch, c2(2, 0))
	c.Handle(epoch, &enrp.HandleTableResponse{Header: enrp.Header{Sender: 2, Receiver: 1}})
	now := epoch
	for ; c.peers[2] != nil && now.Sub(epoch) < time.Second; now = now.Add(10 * ms) {
		c.Tick(now)
	}
	// A dead peer without elements is only forgotten.
	if s := c.Stats(); s.Takeovers != 0 || c.peers[2] != nil {
		t.Fatalf("stats %+v, peers %v; want the peer gone without a takeover", s, c.Peers())
	}
	c.TakeOut()

	// With an element and no other peer to ask, the takeover completes
	// at once.
	c.Handle(now, c2(2, 0))
	c.Handle(now, &enrp.HandleTableResponse{Header: enrp.Header{Sender: 2, Receiver: 1}})
	hs.Register("p", testPE(1, 2), now)
	for start := now; c.peers[2] != nil && now.Sub(start) < time.Second; now = now.Add(10 * ms) {
		c.Tick(now)
	}
	if s := c.Stats(); s.Takeovers != 1 {
		t.Fatalf("stats %+v, want one takeover", s)
	}
	if pe, _ := hs.Lookup("p", 1); pe.Home != 1 {
		t.Fatalf("element's home after the takeover %08x, want 1", pe.Home)
	}
	c.TakeOut()

	// Now with a third peer that does not acknowledge, the target's
	// presence cancels the takeover.
	hs = handlespace.New(handlespace.Config{})
	hs.Register("p", testPE(1, 2), now)
	c = New(fast(1), hs)
	c.Start(epoch)
	c.Handle(epoch, c2(2, 0))
	c.Handle(epoch, &enrp.HandleTableResponse{Header: enrp.Header{Sender: 2, Receiver: 1}})
	for now = epoch; c.peers[2].takeover == nil && now.Sub(epoch) < time.Second; now = now.Add(10 * ms) {
		c.Handle(now, c2(3, 0))
		c.Handle(now, &enrp.HandleTableResponse{Header: enrp.Header{Sender: 3, Receiver: 1}})
		c.Tick(now)
	}
	if c.peers[2].takeover == nil {
		t.Fatal("no takeover of the silent peer")
	}
	c.Handle(now, c2(2, 0))
	if c.peers[2].takeover != nil || c.Stats().Takeovers != 0 {
		t.Fatal("takeover not cancelled by the target's presence")
	}

	// A registrar that is the target answers with a presence to all.
	c.TakeOut()
	c.Handle(now, &enrp.InitTakeover{Header: enrp.Header{Sender: 3}, Target: 1})
	out := c.TakeOut()
	if len(out) != 1 || out[0].To != 0 || out[0].Msg.Type() != enrp.TypePresence {
		t.Fatalf("target's answer %v, want a group-cast presence", out)
	}
}

func TestAuditRepairsADivergedHandlespace(t *testing.T) {
	w, a, b, _ := three(t)
	for i := range 5 {
		w.register(a, "echo", asap.PEID(1+i))
	}
	w.deliver()
	// b loses one of a's elements and holds one a never had.
	b.hs.Deregister("echo", 3)
	bogus := testPE(99, 1)
	b.hs.Register("echo", bogus, w.now)
	syncs := b.core.Stats().Syncs
	w.run(500*ms, 10*ms)
	got := w.converged()
	if _, ok := got[Key{"echo", 3}]; !ok {
		t.Error("lost element not restored")
	}
	if _, ok := got[Key{"echo", 99}]; ok {
		t.Error("element a does not own not removed")
	}
	if b.core.Stats().Syncs == syncs {
		t.Error("b did not resynchronise")
	}
}

func TestPartitionHealConverges(t *testing.T) {
	w, a, b, c := three(t)
	for i := range 20 {
		w.register(a, "echo", asap.PEID(100+i))
		w.register(b, "echo", asap.PEID(200+i))
		w.register(c, "calc", asap.PEID(300+i))
	}
	w.deliver()
	want := w.converged()
	w.partition([]asap.ServerID{1}, []asap.ServerID{2, 3})
	w.run(2*time.Second, 10*ms)
	if len(a.tookOver) != 2 || len(b.tookOver) != 1 {
		t.Fatalf("during the partition a took over %d peers, b %d; want 2 and 1", len(a.tookOver), len(b.tookOver))
	}
	// Registrations go on on both sides.
	w.register(a, "echo", 150)
	w.register(c, "calc", 350)
	want[Key{"echo", 150}], want[Key{"calc", 350}] = 1, 3
	w.deliver()
	w.heal()
	w.run(3*time.Second, 10*ms)
	if d := cmp.Diff(want, w.converged()); d != "" {
		t.Fatalf("after the heal (-want +got):\n%s", d)
	}
	for _, n := range []*node{a, b, c} {
		if got := len(n.core.Peers()); got != 2 {
			t.Errorf("%08x knows %d peers after the heal, want 2", n.id, got)
		}
	}
}

func TestUpdateMovesALiveElement(t *testing.T) {
	w, a, b, _ := three(t)
	w.register(a, "echo", 1)
	w.deliver()
	// The element's connection to a broke; it registered at b.
	w.register(b, "echo", 1)
	w.deliver()
	if d := cmp.Diff([]Key{{"echo", 1}}, a.disowned); d != "" {
		t.Fatalf("a disowned (-want +got):\n%s", d)
	}
	// a notices the broken connection later and removes it: only its own.
	if got := w.converged()[Key{"echo", 1}]; got != 2 {
		t.Fatalf("home %08x, want 2", got)
	}
}

func TestBadPeers(t *testing.T) {
	hs := handlespace.New(handlespace.Config{})
	cfg := fast(1)
	cfg.MaxPeers = 2
	cfg.MaxMessageRate = 10
	c := New(cfg, hs)
	c.Start(epoch)
	now := epoch
	c.Handle(now, c2(2, 0))
	c.TakeOut()

	t.Run("garbage", func(t *testing.T) {
		err := c.Receive(now, []byte{1, 2, 3})
		if !errors.Is(err, ErrBadMessage) || len(c.TakeOut()) != 0 {
			t.Fatalf("err %v; want ErrBadMessage and no answer to a nameless message", err)
		}
		// A presence without its checksum, from 2.
		b := []byte{1, 0, 0, 12, 0, 0, 0, 2, 0, 0, 0, 0}
		err = c.Receive(now, b)
		out := c.TakeOut()
		if !errors.Is(err, ErrBadMessage) || len(out) != 1 || out[0].Msg.Type() != enrp.TypeError || out[0].To != 2 {
			t.Fatalf("err %v out %v; want ErrBadMessage and an ENRP_ERROR to 2", err, out)
		}
	})
	t.Run("claim", func(t *testing.T) {
		pe := testPE(5, 3) // says its home is 3
		err := c.Handle(now, &enrp.HandleUpdate{Header: enrp.Header{Sender: 2}, Action: enrp.AddPE, Handle: "x", PE: pe})
		out := c.TakeOut()
		if !errors.Is(err, ErrClaim) || hs.Len() != 0 || len(out) != 1 || out[0].Msg.Type() != enrp.TypeError {
			t.Fatalf("err %v, %d elements, out %v; want ErrClaim, none, an ENRP_ERROR", err, hs.Len(), out)
		}
		// Nor may 2 remove another server's element.
		hs.Register("x", testPE(6, 1), now)
		c.Handle(now, &enrp.HandleUpdate{Header: enrp.Header{Sender: 2}, Action: enrp.DelPE, Handle: "x", PE: testPE(6, 2)})
		if _, ok := hs.Lookup("x", 6); !ok {
			t.Fatal("a peer removed an element it does not own")
		}
		// Nor make this registrar home of anything.
		c.Handle(now, &enrp.HandleUpdate{Header: enrp.Header{Sender: 2}, Action: enrp.AddPE, Handle: "x", PE: testPE(7, 1)})
		if _, ok := hs.Lookup("x", 7); ok {
			t.Fatal("a peer added an element homed here")
		}
	})
	t.Run("too many peers", func(t *testing.T) {
		c.Handle(now, c2(3, 0))
		if err := c.Handle(now, c2(4, 0)); !errors.Is(err, ErrTooManyPeers) {
			t.Fatalf("third peer: %v, want ErrTooManyPeers", err)
		}
		c.TakeOut()
	})
	t.Run("flood", func(t *testing.T) {
		later := now.Add(time.Hour) // a full bucket
		var floods int
		for range 100 {
			if errors.Is(c.Handle(later, c2(2, 0)), ErrFlood) {
				floods++
			}
		}
		if floods != 90 {
			t.Fatalf("%d of 100 messages in an instant refused, want 90 (rate 10)", floods)
		}
		if err := c.Handle(later.Add(time.Second), c2(2, 0)); err != nil {
			t.Fatalf("a second later: %v", err)
		}
	})
	if s := c.Stats(); s.Claims != 2 || s.Refused != 1 || s.Floods != 90 {
		t.Errorf("stats %+v", s)
	}
}

func TestDeadlineAndTickAgree(t *testing.T) {
	hs := handlespace.New(handlespace.Config{})
	c := New(fast(1), hs)
	c.Start(epoch)
	if d := c.Deadline(); !d.Equal(epoch) {
		t.Fatalf("first deadline %v, want now", d)
	}
	c.Tick(epoch)
	if d := c.Deadline(); !d.Equal(epoch.Add(100 * ms)) {
		t.Fatalf("deadline %v, want the next heartbeat", d.Sub(epoch))
	}
	c.Handle(epoch.Add(10*ms), c2(2, 0))
	c.Handle(epoch.Add(10*ms), &enrp.HandleTableResponse{Header: enrp.Header{Sender: 2, Receiver: 1}})
	c.Tick(epoch.Add(100 * ms))
	// 2 heard at 10 ms: probe due at 260 ms; heartbeat at 200 ms.
	if d := c.Deadline(); !d.Equal(epoch.Add(200 * ms)) {
		t.Fatalf("deadline %v, want 200ms", d.Sub(epoch))
	}
	c.Tick(epoch.Add(200 * ms))
	if d := c.Deadline(); !d.Equal(epoch.Add(260 * ms)) {
		t.Fatalf("deadline %v, want the probe at 260ms", d.Sub(epoch))
	}
}
