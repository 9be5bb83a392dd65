package registrar

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
)

// ownedCount returns how many pool elements the registrar watches as their
// home.
func ownedCount(r *Registrar) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nOwned
}

func TestMaxMessageSize(t *testing.T) {
	const limit = 256
	r, addr := startRegistrar(t, Config{KeepAliveInterval: -1, MaxMessageSize: limit})
	c := dialClient(t, addr)

	// sized returns a registration grown to size bytes by a parameter the
	// registrar skips (action bits 10).
	sized := func(h asap.PoolHandle, id asap.PEID, size int) []byte {
		b := encode(t, &asap.Registration{Handle: h, PE: loopbackPE(id, 7, rr)})
		b = appendParam(b, 0x8001, make([]byte, size-len(b)-4))
		return b[:size] // without the last padding, which the length does not count
	}

	c.sendRaw(sized("over", 2, limit+1))
	c.expectSilence("registration one byte over the limit")
	if _, ok := r.Pool("over"); ok {
		t.Fatal("a registration over the size limit was taken")
	}

	// The connection stays usable: a registration of exactly the limit is
	// answered.
	c.sendRaw(sized("fit", 1, limit))
	if resp := expect[*asap.RegistrationResponse](c, 5*time.Second); resp.Reject || resp.Handle != "fit" || resp.ID != 1 {
		t.Fatalf("registration of %d bytes: %+v, want an acceptance of fit/1", limit, resp)
	}

	// A burst of large messages, valid and random, changes nothing.
	for i := range 20 {
		if i%2 == 0 {
			c.sendRaw(sized("big", 3, 60000))
		} else {
			junk := make([]byte, 5000+i)
			rand.Read(junk)
			c.sendRaw(junk)
		}
	}
	c.expectSilence("large messages")
	if _, ok := r.Pool("big"); ok {
		t.Fatal("an oversized registration was taken")
	}
	if got := ids(r, "fit"); !slices.Equal(got, []asap.PEID{1}) {
		t.Fatalf("pool fit holds %v after oversized messages, want [1]", got)
	}
	if resp := c.register("after", loopbackPE(4, 7, rr)); resp.Reject {
		t.Fatalf("registration after oversized messages refused: %+v", resp)
	}
}

// expectLackOfResources fails the test unless resp refuses element id of
// pool h for lack of resources.
func expectLackOfResources(t *testing.T, resp *asap.RegistrationResponse, h asap.PoolHandle, id asap.PEID) {
	t.Helper()
	if !resp.Reject || resp.Handle != h || resp.ID != id || len(resp.Causes) != 1 || resp.Causes[0].Code != asap.CauseLackOfResources {
		t.Fatalf("registration of %s/%d: %+v, want R=1 with cause %v", h, id, resp, asap.CauseLackOfResources)
	}
}

func TestMaxPools(t *testing.T) {
	r, addr := startRegistrar(t, Config{KeepAliveInterval: -1, MaxPools: 2})
	a := dialClient(t, addr)
	b := dialClient(t, addr)
	if resp := a.register("p1", loopbackPE(1, 7, rr)); resp.Reject {
		t.Fatalf("first pool refused: %+v", resp)
	}
	if resp := b.register("p2", loopbackPE(2, 8, rr)); resp.Reject {
		t.Fatalf("second pool refused: %+v", resp)
	}
	before1, _ := element(r, "p1", 1)
	before2, _ := element(r, "p2", 2)

	// A third pool is refused, whoever asks and however often.
	expectLackOfResources(t, a.register("p3", loopbackPE(3, 9, rr)), "p3", 3)
	expectLackOfResources(t, b.register("p3", loopbackPE(3, 9, rr)), "p3", 3)
	expectLackOfResources(t, b.register("p4", loopbackPE(1, 7, rr)), "p4", 1)
	if _, ok := r.Pool("p3"); ok {
		t.Fatal("refused pool p3 exists")
	}
	if n := len(r.Pools()); n != 2 {
		t.Fatalf("%d pools, want 2", n)
	}
	after1, _ := element(r, "p1", 1)
	after2, _ := element(r, "p2", 2)
	if !samePE(before1, after1) || !samePE(before2, after2) {
		t.Fatalf("existing elements changed by refusals:\n%+v -> %+v\n%+v -> %+v", before1, after1, before2, after2)
	}
	if n := ownedCount(r); n != 2 {
		t.Fatalf("registrar watches %d elements, want the 2 registered", n)
	}

	// Existing pools still take new elements and re-registrations.
	if resp := a.register("p1", loopbackPE(4, 7, rr)); resp.Reject {
		t.Fatalf("new element in an existing pool refused: %+v", resp)
	}
	if resp := a.register("p1", loopbackPE(1, 17, rr)); resp.Reject {
		t.Fatalf("re-registration refused: %+v", resp)
	}
	if e, _ := element(r, "p1", 1); e.UserTransport.Port != 17 {
		t.Fatalf("re-registration not applied: %+v", e)
	}

	// A pool that goes frees its place.
	b.send(&asap.Deregistration{Handle: "p2", ID: 2})
	if resp := expect[*asap.DeregistrationResponse](b, 5*time.Second); len(resp.Causes) != 0 {
		t.Fatalf("deregistration failed: %+v", resp)
	}
	if resp := b.register("p3", loopbackPE(3, 9, rr)); resp.Reject {
		t.Fatalf("pool p3 refused after p2 left: %+v", resp)
	}
}

// samePE reports whether two snapshots of an element agree on what a
// registration sets.
func samePE(x, y asap.PoolElement) bool {
	return x.ID == y.ID && x.Home == y.Home && x.Life == y.Life && x.Policy == y.Policy &&
		x.UserTransport.Kind == y.UserTransport.Kind && x.UserTransport.Port == y.UserTransport.Port &&
		x.UserTransport.Use == y.UserTransport.Use && slices.Equal(x.UserTransport.Addrs, y.UserTransport.Addrs)
}

func TestMaxPEsPerPool(t *testing.T) {
	r, addr := startRegistrar(t, Config{KeepAliveInterval: -1, MaxPEsPerPool: 3})
	a := dialClient(t, addr)
	b := dialClient(t, addr)
	for id := asap.PEID(1); id <= 3; id++ {
		c := a
		if id == 2 {
			c = b
		}
		if resp := c.register("full", loopbackPE(id, uint16(id), rr)); resp.Reject {
			t.Fatalf("element %d refused: %+v", id, resp)
		}
	}
	var before []asap.PoolElement
	for id := asap.PEID(1); id <= 3; id++ {
		e, _ := element(r, "full", id)
		before = append(before, e)
	}

	expectLackOfResources(t, a.register("full", loopbackPE(4, 4, rr)), "full", 4)
	expectLackOfResources(t, b.register("full", loopbackPE(5, 5, rr)), "full", 5)
	for i, id := range []asap.PEID{1, 2, 3} {
		if e, ok := element(r, "full", id); !ok || !samePE(before[i], e) {
			t.Fatalf("element %d changed by refusals: %+v -> %+v (%v)", id, before[i], e, ok)
		}
	}
	if got := ids(r, "full"); !slices.Equal(got, []asap.PEID{1, 2, 3}) {
		t.Fatalf("pool holds %v, want [1 2 3]", got)
	}
	if n := ownedCount(r); n != 3 {
		t.Fatalf("registrar watches %d elements, want the 3 registered", n)
	}

	// A full pool still takes re-registrations; the limit is per pool.
	if resp := b.register("full", loopbackPE(2, 22, rr)); resp.Reject {
		t.Fatalf("re-registration in a full pool refused: %+v", resp)
	}
	if e, _ := element(r, "full", 2); e.UserTransport.Port != 22 {
		t.Fatalf("re-registration not applied: %+v", e)
	}
	for id := asap.PEID(1); id <= 3; id++ {
		if resp := b.register("other", loopbackPE(id, 7, rr)); resp.Reject {
			t.Fatalf("element %d of another pool refused: %+v", id, resp)
		}
	}

	// An element that leaves frees its place.
	a.send(&asap.Deregistration{Handle: "full", ID: 1})
	expect[*asap.DeregistrationResponse](a, 5*time.Second)
	if resp := a.register("full", loopbackPE(4, 4, rr)); resp.Reject {
		t.Fatalf("element 4 refused after element 1 left: %+v", resp)
	}
	if got := ids(r, "full"); !slices.Equal(got, []asap.PEID{2, 3, 4}) {
		t.Fatalf("pool holds %v, want [2 3 4]", got)
	}
}

// probesWithin returns the keep-alives c receives within d.
func probesWithin(c *client, d time.Duration) int {
	c.t.Helper()
	n := 0
	deadline := time.Now().Add(d)
	for {
		m, err := c.tryRecv(time.Until(deadline))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return n
		}
		if err != nil {
			c.t.Fatal(err)
		}
		if _, ok := m.(*asap.EndpointKeepAlive); ok {
			n++
		}
	}
}

func TestUnreachableRate(t *testing.T) {
	// Five reports a second per connection, in bursts of five; each
	// report counted makes the registrar probe the element reported.
	// Over the limit, the connection is read no faster than the limit.
	cfg := Config{KeepAliveInterval: -1, KeepAliveTimeout: time.Minute, UnreachableRate: 5}
	r, addr := startRegistrar(t, cfg)
	pe := dialClient(t, addr)
	const n = 40
	for id := range asap.PEID(n) {
		pe.register("eu", loopbackPE(id+1, 7, rr))
	}
	flood := dialClient(t, addr)
	for id := range asap.PEID(n) {
		flood.send(&asap.EndpointUnreachable{Handle: "eu", ID: id + 1})
	}
	if got := probesWithin(pe, time.Second); got < 5 || got > 12 {
		t.Fatalf("%d probes in the second after %d reports at 5/s, want 5 to 12", got, n)
	}
	// Another connection has a limit of its own.
	second := dialClient(t, addr)
	second.send(&asap.EndpointUnreachable{Handle: "eu", ID: n})
	second.expectSilence("unreachable report")
	if got := probesWithin(pe, 100*time.Millisecond); got < 1 {
		t.Fatal("another connection's report drew no probe")
	}
	if got := len(ids(r, "eu")); got != n {
		t.Fatalf("%d elements left, want %d", got, n)
	}
}

// The rates of resolutions and reports are limited unless the
// configuration says otherwise.
func TestDefaultRateLimits(t *testing.T) {
	c := Config{}.withDefaults()
	if c.HandleResolutionRate != DefaultHandleResolutionRate || c.UnreachableRate != DefaultUnreachableRate {
		t.Fatalf("default rates %v, %v", c.HandleResolutionRate, c.UnreachableRate)
	}
	if DefaultHandleResolutionRate <= 0 || DefaultUnreachableRate <= 0 {
		t.Fatal("a default rate is unlimited")
	}
	c = Config{HandleResolutionRate: -1, UnreachableRate: -1}.withDefaults()
	b := newTokenBucket(c.HandleResolutionRate)
	for i := range 10000 {
		if !b.allow() {
			t.Fatalf("a negative rate limits at event %d", i+1)
		}
	}
	// With the defaults, a flood of reports from one connection probes
	// its burst's worth of elements at once, and more at its rate.
	r, addr := startRegistrar(t, Config{KeepAliveInterval: -1, KeepAliveTimeout: time.Minute})
	pe := dialClient(t, addr)
	const n = 5 * DefaultUnreachableRate
	for id := range asap.PEID(n) {
		pe.register("eu", loopbackPE(id+1, 7, rr))
	}
	flood := dialClient(t, addr)
	for id := range asap.PEID(n) {
		flood.send(&asap.EndpointUnreachable{Handle: "eu", ID: id + 1})
	}
	if got := probesWithin(pe, 300*time.Millisecond); got < DefaultUnreachableRate || got > DefaultUnreachableRate+6 {
		t.Fatalf("%d probes within 300ms of %d reports at once, want about %d", got, n, DefaultUnreachableRate+3)
	}
	if got := len(ids(r, "eu")); got != n {
		t.Fatalf("%d elements left, want %d", got, n)
	}
}

// An element this registrar cannot probe (its home is elsewhere, or it
// lost its connection in a takeover) is removed when reports from
// MaxBadPEReports distinct peer addresses name it; reports of one peer
// count once.
func TestUnreachableReportsCountPerPeer(t *testing.T) {
	r, addr := startRegistrar(t, Config{KeepAliveInterval: -1})
	pe := loopbackPE(9, 7, rr)
	pe.Home = r.ID()
	r.mu.Lock()
	if _, err := r.hs.Register("orphan", pe, time.Now()); err != nil {
		t.Fatal(err)
	}
	r.mu.Unlock()
	for i, src := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} {
		pu := dialClientFrom(t, addr, src)
		for range 5 {
			pu.send(&asap.EndpointUnreachable{Handle: "orphan", ID: 9})
		}
		pu.expectSilence("unreachable reports")
		_, ok := r.Pool("orphan")
		if last := i == DefaultMaxBadPEReports-1; ok == last {
			t.Fatalf("after reports from %d peers the element is there: %v", i+1, ok)
		}
	}
}

func TestRegistrationLifeClamped(t *testing.T) {
	const minLife, maxLife = 200 * time.Millisecond, 600 * time.Millisecond
	r, addr := startRegistrar(t, Config{KeepAliveInterval: -1, MinRegistrationLife: minLife, MaxRegistrationLife: maxLife})
	pe := dialClient(t, addr)

	tests := []struct {
		id         asap.PEID
		life, want time.Duration
	}{
		{1, asap.LifeInfinite, maxLife},
		{2, 10 * time.Hour, maxLife},
		{3, time.Millisecond, minLife},
		{4, 0, minLife},
		{5, 400 * time.Millisecond, 400 * time.Millisecond},
	}
	registered := map[asap.PEID]time.Time{}
	for _, tt := range tests {
		e := loopbackPE(tt.id, 7, rr)
		e.Life = tt.life
		registered[tt.id] = time.Now()
		if resp := pe.register("life", e); resp.Reject {
			t.Fatalf("registration with life %v refused: %+v", tt.life, resp)
		}
	}
	for _, tt := range tests {
		if e, ok := element(r, "life", tt.id); !ok || e.Life != tt.want {
			t.Errorf("element %d asked for life %v: registered with %v (%v), want %v", tt.id, tt.life, e.Life, ok, tt.want)
		}
	}

	// Every element expires at its clamped life, the infinite one too, and
	// the registrar tells the element so.
	expired := map[asap.PEID]time.Time{}
	for len(expired) < len(tests) {
		resp := expect[*asap.DeregistrationResponse](pe, 3*time.Second)
		if resp.Handle != "life" || len(resp.Causes) != 0 {
			t.Fatalf("unsolicited deregistration response %+v", resp)
		}
		expired[resp.ID] = time.Now()
	}
	for _, tt := range tests {
		if lived := expired[tt.id].Sub(registered[tt.id]); lived < tt.want {
			t.Errorf("element %d expired after %v, before its life of %v", tt.id, lived, tt.want)
		}
	}
	if !expired[3].Before(expired[5]) || !expired[5].Before(expired[1]) {
		t.Errorf("expiry order 3, 5, 1 expected: %v", expired)
	}
	if _, ok := r.Pool("life"); ok {
		t.Fatal("expired elements still registered")
	}
}

// TestSlowPeerDropped floods the registrar with handle resolutions whose
// answers are large and never reads them. The registrar stops reading the
// peer once its send queue is full, drops it when a write has waited
// WriteTimeout, and meanwhile serves another peer as usual. The dropped
// peer's pool elements leave promptly (within a second of the drop; it
// takes well under a millisecond): the registrar does not go on answering,
// into the closed connection, the requests it had read, which took 0.3–2 s
// under the race detector (TestDroppedPeerBacklogUnanswered checks that
// without a clock).
func TestSlowPeerDropped(t *testing.T) {
	// Long enough that a loaded machine's stall while the setup's
	// registrations are answered does not drop their connection.
	const writeTimeout = time.Second
	r := New(Config{KeepAliveInterval: -1, SendQueue: 4, WriteTimeout: writeTimeout, HandleResolutionRate: -1})
	t.Cleanup(func() { r.Close() })
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(smallBufListener{nl})
	addr := nl.Addr().String()
	pe := dialClient(t, addr)
	for id := asap.PEID(1); id <= 128; id++ {
		if resp := pe.register("big", loopbackPE(id, uint16(id), rr)); resp.Reject {
			t.Fatalf("registration %d refused: %+v", id, resp)
		}
	}

	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.(*net.TCPConn).SetReadBuffer(4096)
	slow := &client{t: t, c: mapping.NewTCPConn(nc, mapping.Config{HeartbeatInterval: -1}), buf: make([]byte, 65536)}
	t.Cleanup(func() { slow.c.Close() })
	slow.register("slow", loopbackPE(1, 7, rr))

	req := encode(t, &asap.HandleResolution{Handle: "big", Items: 0xffffffff})
	flooded := make(chan error, 1)
	var floodEnded atomic.Int64 // unix nanoseconds
	go func() {
		// Until the registrar drops the connection; bounded for safety.
		slow.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		for {
			if err := slow.c.WriteMsg(req, mapping.PPIDASAP); err != nil {
				floodEnded.Store(time.Now().UnixNano())
				flooded <- err
				return
			}
		}
	}()

	other := dialClient(t, addr)
	var worst time.Duration
	for i := 0; ; i++ {
		if _, ok := r.Pool("slow"); !ok {
			break
		}
		if i > 0 && i%100 == 0 {
			// Other peers keep registering too.
			if resp := other.register("other", loopbackPE(asap.PEID(i), 7, rr)); resp.Reject {
				t.Fatalf("registration during the flood refused: %+v", resp)
			}
		}
		start := time.Now()
		other.send(&asap.HandleResolution{Handle: "big", Items: 1})
		if hr := expect[*asap.HandleResolutionResponse](other, 5*time.Second); len(hr.PEs) != 1 {
			t.Fatalf("resolution during the flood: %+v", hr)
		}
		worst = max(worst, time.Since(start))
		if i > 100000 {
			t.Fatal("slow peer not dropped")
		}
	}
	gone := time.Now()
	if worst > time.Second {
		t.Errorf("a resolution of another peer took %v during the flood", worst)
	}
	if err := <-flooded; errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("flood ended by its own deadline, not by the registrar: %v", err)
	}
	// Measured from the end the flood saw; a stall meter would not do:
	// what it would catch is the registrar itself burning the CPU.
	after := gone.Sub(time.Unix(0, floodEnded.Load()))
	t.Logf("the dropped peer's elements left %v after its connection ended", after)
	if after > time.Second {
		t.Errorf("the dropped peer's elements left %v after its connection ended, want within a second", after)
	}
	waitFor(t, 2*time.Second, "the slow peer's connection is still served", func() bool { return connCount(r) == 2 })
	if got := ids(r, "big"); len(got) != 128 {
		t.Fatalf("pool big holds %d elements after the flood, want 128", len(got))
	}
	other.send(&asap.HandleResolution{Handle: "big"})
	expect[*asap.HandleResolutionResponse](other, 5*time.Second)
}

// smallBufListener serves TCP with the mapping's framing and small socket
// send buffers, so that a peer that does not read soon blocks the writer.
type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (mapping.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c.(*net.TCPConn).SetWriteBuffer(4096)
	return mapping.NewTCPConn(c, mapping.Config{}), nil
}

// TestPipelinedRequestsAnswered sends many requests without waiting for
// the answers, reading them as they come: a peer that keeps reading is
// never dropped, however small its send queue.
func TestPipelinedRequestsAnswered(t *testing.T) {
	const requests = 3000
	r, addr := startRegistrar(t, Config{KeepAliveInterval: -1, SendQueue: 2, HandleResolutionRate: -1})
	c := dialClient(t, addr)
	c.register("p", loopbackPE(1, 7, rr))
	answered := make(chan error, 1)
	go func() {
		buf := make([]byte, 65536)
		for n := 0; n < requests; n++ {
			c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
			k, _, err := c.c.ReadMsg(buf)
			if err != nil {
				answered <- fmt.Errorf("after %d answers: %w", n, err)
				return
			}
			if m, err := asap.Unmarshal(buf[:k]); err != nil {
				answered <- err
				return
			} else if hr, ok := m.(*asap.HandleResolutionResponse); !ok || len(hr.PEs) != 1 {
				answered <- fmt.Errorf("answer %d: %T %+v", n, m, m)
				return
			}
		}
		answered <- nil
	}()
	req := encode(t, &asap.HandleResolution{Handle: "p"})
	for i := range requests {
		if err := c.c.WriteMsg(req, mapping.PPIDASAP); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
	if got := ids(r, "p"); !slices.Equal(got, []asap.PEID{1}) {
		t.Fatalf("pool p holds %v, want [1]: the connection was dropped", got)
	}
}

// TestRepliesWaitForSlowPeer serves a connection whose peer never reads (an
// in-memory pipe, where every write waits for the reader). Once the send
// queue is full the registrar stops reading the peer's requests instead of
// buffering answers, and drops the peer when a write has waited
// WriteTimeout, and not much more than twice that.
func TestRepliesWaitForSlowPeer(t *testing.T) {
	const queue = 8
	const writeTimeout = 200 * time.Millisecond
	r := New(Config{KeepAliveInterval: -1, SendQueue: queue, WriteTimeout: writeTimeout})
	t.Cleanup(func() { r.Close() })
	ours, theirs := mapping.Pipe()
	defer ours.Close()
	start := time.Now()
	r.ServeConn(theirs)

	req := encode(t, &asap.HandleResolution{Handle: "none"})
	sent := 0
	for ; sent < 100; sent++ {
		ours.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := ours.WriteMsg(req, mapping.PPIDASAP); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("request %d still not read after 5s: the peer was not dropped", sent+1)
			}
			break
		}
	}
	took := time.Since(start)
	// The first answer is stuck in its write: the reader writes answers
	// itself while nothing is queued, else queues them and waits for
	// room, so that at most one answer in the writer, queue more waiting
	// and one in the reader are held; the next request is not read.
	if sent < 1 || sent > queue+3 {
		t.Fatalf("registrar read %d requests of a peer that does not read, want at most %d", sent, queue+3)
	}
	if took < writeTimeout {
		t.Fatalf("peer dropped after %v, before the write timeout of %v", took, writeTimeout)
	}
	// Config.WriteTimeout promises at most about twice the timeout (the
	// deadline is renewed lazily, by a coarse clock); a second allows for
	// a busy machine.
	if most := 2*writeTimeout + clockGranularity + time.Second; took > most {
		t.Fatalf("peer dropped after %v, later than twice the write timeout of %v", took, writeTimeout)
	}
	waitFor(t, 2*time.Second, "the dropped connection is still served", func() bool { return connCount(r) == 0 })
}

// TestUnsolicitedMessagesWaitForSlowPeer fills the send queue of a peer
// that does not read with messages the registrar sends of its own accord
// (the keep-alive probes after unreachable reports): the probes that find
// the queue full wait (a full queue alone is no reason to drop a peer: a
// registrar slow to write fills it too), the reporting peer is not held
// up, and the write timeout drops the peer with its elements.
func TestUnsolicitedMessagesWaitForSlowPeer(t *testing.T) {
	const queue = 4
	const writeTimeout = 500 * time.Millisecond
	r, addr := startRegistrar(t, Config{KeepAliveInterval: -1, KeepAliveTimeout: time.Minute,
		SendQueue: queue, WriteTimeout: writeTimeout, MaxBadPEReports: 100})
	ours, theirs := mapping.Pipe()
	defer ours.Close()
	r.ServeConn(fakeAddrConn{theirs})
	pe := &client{t: t, c: ours, buf: make([]byte, 65536)}
	const elements = queue + 4
	for id := asap.PEID(1); id <= elements; id++ {
		if resp := pe.register("quiet", loopbackPE(id, 7, rr)); resp.Reject {
			t.Fatalf("registration %d refused: %+v", id, resp)
		}
	}
	// From now on the element's side reads nothing. The keep-alive
	// timeout is far beyond the test: only the write timeout can drop
	// the peer.
	start := time.Now()
	pu := dialClient(t, addr)
	for id := asap.PEID(1); id <= elements; id++ {
		pu.send(&asap.EndpointUnreachable{Handle: "quiet", ID: id})
	}
	pu.expectSilence("unreachable reports")
	waitFor(t, 2*time.Second, "no probe waited for the full queue", func() bool { return r.KeepAlivesDeferred() > 0 })
	waitFor(t, 2*writeTimeout+clockGranularity+2*time.Second, "elements of the dropped peer still registered", func() bool {
		_, ok := r.Pool("quiet")
		return !ok
	})
	if took := time.Since(start); took < writeTimeout {
		t.Fatalf("peer dropped after %v, before the write timeout of %v", took, writeTimeout)
	}
	waitFor(t, 2*time.Second, "the dropped connection is still served", func() bool { return connCount(r) == 1 })
}

// countingConn counts the writes of a connection the registrar serves.
type countingConn struct {
	*mapping.TCPConn
	writes atomic.Int32 // WriteMsg and WriteBatch calls
}

func (c *countingConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
}

func (c *countingConn) WriteMsg(b []byte, ppid uint32) error {
	c.writes.Add(1)
	return c.TCPConn.WriteMsg(b, ppid)
}

func (c *countingConn) WriteBatch(ms []mapping.Msg) (int, error) {
	c.writes.Add(1)
	return c.TCPConn.WriteBatch(ms)
}

// Messages queued for a peer together, such as the keep-alives of many of
// its elements due at once, go out in batched writes, not one write each.
func TestQueuedMessagesWrittenInBatches(t *testing.T) {
	r, addr := startRegistrar(t, Config{KeepAliveInterval: -1, KeepAliveTimeout: time.Minute, UnreachableRate: -1})
	ours, theirs := mapping.Pipe()
	defer ours.Close()
	cc := &countingConn{TCPConn: theirs.(*mapping.TCPConn)}
	r.ServeConn(cc)
	pe := &client{t: t, c: ours, buf: make([]byte, 65536)}
	const n = 50
	for id := asap.PEID(1); id <= n; id++ {
		if resp := pe.register("burst", loopbackPE(id, 7, rr)); resp.Reject {
			t.Fatalf("registration %d refused: %+v", id, resp)
		}
	}
	cc.writes.Store(0)
	pu := dialClient(t, addr)
	for id := asap.PEID(1); id <= n; id++ {
		pu.send(&asap.EndpointUnreachable{Handle: "burst", ID: id})
	}
	pu.expectSilence("unreachable reports") // n probes queued
	for id := asap.PEID(1); id <= n; id++ {
		ka := expect[*asap.EndpointKeepAlive](pe, 5*time.Second)
		if ka.ID != id {
			t.Fatalf("probe %d is for element %d", id, ka.ID)
		}
	}
	if w := cc.writes.Load(); w > 10 {
		t.Fatalf("%d probes took %d writes, want a few batches", n, w)
	}
}

// A registrar whose keep-alive schedule runs late does not remove an
// element for an answer it may not have read yet: the element gets another
// keep-alive timeout; on time, the unanswered element goes.
func TestScheduleBehindRemovesNobody(t *testing.T) {
	r, addr := startRegistrar(t, Config{KeepAliveInterval: -1, KeepAliveTimeout: time.Minute, UnreachableRate: -1})
	pe := dialClient(t, addr)
	pe.register("late", loopbackPE(1, 7, rr))
	pu := dialClient(t, addr)
	pu.send(&asap.EndpointUnreachable{Handle: "late", ID: 1})
	expect[*asap.EndpointKeepAlive](pe, 5*time.Second) // the probe, unanswered
	r.mu.Lock()
	st := r.ownedLocked(peKey{"late", 1})
	if st == nil || !st.awaiting {
		r.mu.Unlock()
		t.Fatal("no probe outstanding")
	}
	due := r.dueTime(st)
	r.unscheduleLocked(st)
	r.keepAliveDueLocked(st, due.Add(maxScheduleLag+time.Second), nil)
	kept, rescheduled := r.ownedLocked(peKey{"late", 1}) == st, st.slot >= 0 && r.dueTime(st).After(due)
	r.mu.Unlock()
	if !kept || !rescheduled {
		t.Fatalf("timeout handled %v late: element kept %v, given more time %v", maxScheduleLag+time.Second, kept, rescheduled)
	}
	r.mu.Lock()
	r.unscheduleLocked(st)
	r.keepAliveDueLocked(st, r.dueTime(st), nil)
	still := r.ownedLocked(peKey{"late", 1}) != nil
	r.mu.Unlock()
	if still {
		t.Fatal("unanswered element kept although its timeout was handled on time")
	}
	if _, ok := r.Pool("late"); ok {
		t.Fatal("unanswered element still in the handlespace")
	}
}

// TestDroppedPeerBacklogUnanswered: a connection the registrar drops (here
// its first write fails) may still hold requests it read before, in its
// read buffer, as the TCP mapping's does. The registrar answers none of
// them into the closed connection: it stops reading at once, so that its
// pool elements leave at once and the CPU goes to other peers. (It went on
// answering the whole buffer, which took up to two seconds under the race
// detector in TestSlowPeerDropped.)
func TestDroppedPeerBacklogUnanswered(t *testing.T) {
	r := New(Config{KeepAliveInterval: -1, HandleResolutionRate: -1})
	t.Cleanup(func() { r.Close() })
	c := &backlogConn{req: encode(t, &asap.HandleResolution{Handle: "any"}), closed: make(chan struct{})}
	r.ServeConn(c)
	select {
	case <-c.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("connection not closed after its write failed")
	}
	waitFor(t, 5*time.Second, "the connection to end", func() bool { return connCount(r) == 0 })
	if n := c.readsAfterClose.Load(); n > 1 {
		t.Errorf("registrar read %d requests after it closed the connection, want at most the one it was reading", n)
	}
}

// backlogConn is a peer connection whose writes fail and whose reads
// return a handle resolution every time, also after Close, as a
// connection's read buffer would until it is empty (here: 1000 more).
type backlogConn struct {
	req             []byte
	once            sync.Once
	closed          chan struct{}
	readsAfterClose atomic.Int64
}

func (c *backlogConn) ReadMsg(b []byte) (int, uint32, error) {
	select {
	case <-c.closed:
		if c.readsAfterClose.Add(1) > 1000 {
			return 0, 0, net.ErrClosed
		}
	default:
	}
	return copy(b, c.req), mapping.PPIDASAP, nil
}

func (c *backlogConn) WriteMsg([]byte, uint32) error {
	return &net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}
}

func (c *backlogConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *backlogConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9902}
}

func (c *backlogConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}

func (c *backlogConn) SetDeadline(time.Time) error      { return nil }
func (c *backlogConn) SetReadDeadline(time.Time) error  { return nil }
func (c *backlogConn) SetWriteDeadline(time.Time) error { return nil }
