package benchmarks

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/enrp"
	"github.com/rsp-go/rsp/handlespace"
	"github.com/rsp-go/rsp/internal/rsplibtest"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/policy"
	"github.com/rsp-go/rsp/registrar"
)

// enrpTarget is a registrar measured by the ENRP benchmarks: its ASAP
// target and its ENRP address.
type enrpTarget struct {
	Target
	ENRP string
}

// enrpTargets are the registrars of the ENRP benchmarks, each with its
// default ENRP timers: inside User-mode Linux rsp's and rsplib's over
// SCTP; elsewhere rsp's over TCP.
func enrpTargets(b *testing.B) []enrpTarget {
	if ok, _ := rsplibtest.Available(); ok {
		pid := rsplibtest.StartRegistrar(b, 3895, 9915)
		return []enrpTarget{
			startRSPWithENRP(b, "sctp", rsplibtest.HostAddr+":3885", rsplibtest.HostAddr+":9905"),
			{Target{Name: "rsplib", Network: "sctp", Addr: rsplibtest.HostAddr + ":3895", PID: pid}, rsplibtest.HostAddr + ":9915"},
		}
	}
	return []enrpTarget{startRSPWithENRP(b, "tcp", testutil.FreeAddr(b), testutil.FreeAddr(b))}
}

// startRSPWithENRP starts rsp's registrar serving ASAP at asapAddr and ENRP
// at enrpAddr: in a process of its own when EnvRegistrarBinary names one.
func startRSPWithENRP(b *testing.B, network, asapAddr, enrpAddr string) enrpTarget {
	b.Helper()
	t := Target{Name: "rsp", Network: network, Addr: asapAddr}
	if bin := os.Getenv(EnvRegistrarBinary); bin != "" {
		p := rsplibtest.StartProcess(b, nil, bin, "-listen", network+":"+asapAddr, "-enrp-listen", network+":"+enrpAddr,
			"-keepalive-interval", keepAliveInterval.String(), "-log-level", "warn")
		testutil.WaitFor(b, 20*time.Second, "rsp's registrar to serve", func() bool { return canDial(network, enrpAddr) })
		t.PID = p.Pid
		return enrpTarget{t, enrpAddr}
	}
	r := registrar.New(registrar.Config{
		KeepAliveInterval: keepAliveInterval,
		ENRP:              registrar.ENRPConfig{Listen: []string{network + ":" + enrpAddr}},
	})
	l, err := registrar.Listen(context.Background(), network, asapAddr)
	if err != nil {
		b.Fatal(err)
	}
	go r.Serve(l)
	b.Cleanup(func() { r.Close() })
	testutil.WaitFor(b, 10*time.Second, "rsp's registrar to serve ENRP", func() bool { return canDial(network, enrpAddr) })
	return enrpTarget{t, enrpAddr}
}

func canDial(network, addr string) bool {
	var d mapping.Dialer
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// fakePeer is an ENRP peer registrar played by the benchmark over one
// connection it makes to the registrar measured: it sends presences every
// 500 ms, answers probes and handle table requests (it owns nothing
// unless told), acknowledges takeovers, and passes every message on.
type fakePeer struct {
	id   asap.ServerID
	c    mapping.Conn
	info *asap.ServerInformation
	in   chan arrival
	mute atomic.Bool  // a hung registrar: it neither sends nor answers
	werr atomic.Value // the first failed write's error
	derr atomic.Value // the first message that did not decode, and why

	mu    sync.Mutex
	owned *handlespace.Handlespace // the elements it is home of
	table []enrp.PoolEntry         // a handle table answer in progress, one element per entry

	done chan struct{}
	once sync.Once
}

func dialFakePeer(b *testing.B, network, addr string, id asap.ServerID) *fakePeer {
	b.Helper()
	var d mapping.Dialer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		b.Fatal(err)
	}
	// rsplib takes presences only when the address in them is the
	// association's.
	ap, err := netip.ParseAddrPort(c.LocalAddr().String())
	if err != nil {
		b.Fatalf("local address %v: %v", c.LocalAddr(), err)
	}
	f := &fakePeer{id: id, c: c, in: make(chan arrival, 1<<16), done: make(chan struct{}), owned: handlespace.New(handlespace.Config{}),
		info: &asap.ServerInformation{Server: id, Transport: asap.Transport{Kind: asap.ParamSCTPTransport, Port: ap.Port(), Use: asap.DataOnly, Addrs: []netip.Addr{ap.Addr().Unmap()}}}}
	b.Cleanup(f.close)
	go f.read()
	go f.heartbeat()
	f.send(f.presence(false))
	return f
}

func (f *fakePeer) close() {
	f.once.Do(func() {
		close(f.done)
		f.c.Close()
	})
}

func (f *fakePeer) presence(reply bool) *enrp.Presence {
	f.mu.Lock()
	sum := f.owned.Checksum(f.id)
	f.mu.Unlock()
	return &enrp.Presence{Header: enrp.Header{Sender: f.id}, ReplyRequired: reply, Checksum: sum, Info: f.info}
}

// own makes the fake peer home of pe and tells the registrar. rsplib
// drops elements without an ASAP transport.
func (f *fakePeer) own(h asap.PoolHandle, pe asap.PoolElement) {
	pe.Home = f.id
	if pe.ASAPTransport == nil {
		at := f.info.Transport
		pe.ASAPTransport = &at
	}
	f.mu.Lock()
	_, err := f.owned.Register(h, pe, time.Now())
	f.mu.Unlock()
	if err != nil {
		panic(err)
	}
	f.send(&enrp.HandleUpdate{Header: enrp.Header{Sender: f.id}, Action: enrp.AddPE, Handle: h, PE: pe})
}

// tableResponse is the next chunk of the fake peer's own elements.
func (f *fakePeer) tableResponse(to asap.ServerID) *enrp.HandleTableResponse {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.table) == 0 {
		for h := range f.owned.Pools() {
			for pe := range f.owned.Elements(h) {
				f.table = append(f.table, enrp.PoolEntry{Handle: h, PEs: []asap.PoolElement{*pe}})
			}
		}
	}
	n := min(len(f.table), 128)
	r := &enrp.HandleTableResponse{Header: enrp.Header{Sender: f.id, Receiver: to}, Pools: f.table[:n], More: n < len(f.table)}
	f.table = f.table[n:]
	return r
}

func (f *fakePeer) send(m enrp.Message) {
	if f.mute.Load() {
		return
	}
	b, err := m.AppendBinary(nil)
	if err != nil {
		panic(err)
	}
	if err := f.c.WriteMsg(b, mapping.PPIDENRP); err != nil {
		f.werr.CompareAndSwap(nil, err)
	}
}

func (f *fakePeer) heartbeat() {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			f.send(f.presence(false))
		case <-f.done:
			return
		}
	}
}

func (f *fakePeer) read() {
	buf := make([]byte, 1<<16)
	for {
		n, ppid, err := f.c.ReadMsg(buf)
		if err != nil {
			return
		}
		if ppid != mapping.PPIDENRP || f.mute.Load() {
			continue
		}
		m, err := enrp.Unmarshal(buf[:n])
		if m == nil {
			f.derr.CompareAndSwap(nil, fmt.Sprintf("%v: % x", err, buf[:min(n, 64)]))
		}
		switch m := m.(type) {
		case nil:
			continue
		case *enrp.Presence:
			if m.ReplyRequired {
				f.send(f.presence(false))
			}
		case *enrp.HandleTableRequest:
			f.send(f.tableResponse(m.Sender))
		case *enrp.InitTakeover:
			if m.Target == f.id {
				f.send(f.presence(false))
			} else {
				f.send(&enrp.InitTakeoverAck{Header: enrp.Header{Sender: f.id, Receiver: m.Sender}, Target: m.Target})
			}
		}
		select {
		case f.in <- arrival{m, time.Now()}:
		default: // nobody listens
		}
	}
}

// arrival is a message the fake peer received, and when.
type arrival struct {
	m  enrp.Message
	at time.Time
}

// await returns the next message for which match holds, with its arrival
// time, or fails b after timeout.
func (f *fakePeer) await(b *testing.B, timeout time.Duration, what string, match func(enrp.Message) bool) arrival {
	b.Helper()
	a, ok := f.awaitFor(timeout, match)
	if !ok {
		b.Fatalf("fake peer %08x: no %s within %v (first write error: %v; first message that did not decode: %v)", uint32(f.id), what, timeout, f.werr.Load(), f.derr.Load())
	}
	return a
}

// awaitFor is await that reports a timeout instead of failing.
func (f *fakePeer) awaitFor(timeout time.Duration, match func(enrp.Message) bool) (arrival, bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case a := <-f.in:
			if match(a.m) {
				return a, true
			}
		case <-t.C:
			return arrival{}, false
		}
	}
}

// joined waits until the registrar has answered the fake peer, so that it
// is in its peer list.
func (f *fakePeer) joined(b *testing.B) {
	f.await(b, 30*time.Second, "message from the registrar", func(enrp.Message) bool { return true })
	time.Sleep(200 * time.Millisecond)
}

// percentile returns the p-th percentile of ds (sorted in place).
func percentile(ds []time.Duration, p float64) time.Duration {
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(float64(len(ds))*p))]
}

// BenchmarkENRPUpdatePropagation times at least propagationSamples
// registrations, so that -benchtime=1x, which the takeover benchmark
// needs, still gives percentiles, and at most maxPropagationSamples, so
// that the suite's -benchtime=3000x stays short. BenchmarkENRPTakeover
// runs at most maxTakeovers takeovers (each takes seconds: up to 12 with
// rsplib's timers).
const (
	propagationSamples    = 200
	maxPropagationSamples = 3000
	maxTakeovers          = 3
	maxSyncs              = 20 // of BenchmarkENRPHandleTableSync
)

// BenchmarkENRPUpdatePropagation measures the time from a registration at
// a registrar to its handle update at a peer: one registration at a time
// over ASAP, the peer a fake one on the same host; reported are the median
// and 99th percentile, in µs.
func BenchmarkENRPUpdatePropagation(b *testing.B) {
	for _, t := range enrpTargets(b) {
		b.Run("registrar="+t.Name, func(b *testing.B) {
			f := dialFakePeer(b, t.Network, t.ENRP, 0x0b0b0000+asap.ServerID(nextID.Add(1)))
			f.joined(b)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			c, err := dial(ctx, t.Target)
			if err != nil {
				b.Fatal(err)
			}
			defer c.c.Close()
			n := min(max(b.N, propagationSamples), maxPropagationSamples)
			base := nextID.Add(uint32(n)+1) - uint32(n)
			lat := make([]time.Duration, 0, n)
			lost := 0
			b.ResetTimer()
			for i := range n {
				id := asap.PEID(0x50000000 + base + uint32(i))
				m, err := (&asap.Registration{Handle: "enrp-prop", PE: pe(id, hostAddr(t.Target), 2000, kindFor(t.Target))}).AppendBinary(nil)
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if err := c.c.WriteMsg(m, mapping.PPIDASAP); err != nil {
					b.Fatal(err)
				}
				c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
				for {
					n, _, err := c.c.ReadMsg(c.in)
					if err != nil {
						b.Fatalf("registration %d: %v", i, err)
					}
					m, _ := asap.Unmarshal(c.in[:n])
					if r, ok := m.(*asap.RegistrationResponse); ok {
						if r.Reject {
							b.Fatalf("registration %d refused: %v", i, r.Causes)
						}
						break
					}
				}
				a, ok := f.awaitFor(5*time.Second, func(m enrp.Message) bool {
					u, ok := m.(*enrp.HandleUpdate)
					return ok && u.Action == enrp.AddPE && u.PE.ID == id
				})
				if !ok {
					// Now and then no update comes from rsplib 3.4.4 for a
					// registration it accepted (seen in 2 of 10 runs of 200;
					// the cause is not known). Counted, not fatal.
					lost++
					continue
				}
				lat = append(lat, a.at.Sub(start))
			}
			b.StopTimer()
			if len(lat) == 0 {
				b.Fatalf("no handle update for any of %d registrations", n)
			}
			b.ReportMetric(float64(lost), "updates-missing")
			b.ReportMetric(float64(percentile(lat, 0.5).Microseconds()), "p50-µs")
			b.ReportMetric(float64(percentile(lat, 0.99).Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkENRPTakeover measures, at each registrar's default timers, how
// long a registrar takes to notice that a peer hangs (it stops sending and
// answering, its association open) and start a takeover (INIT_TAKEOVER,
// reported as detect-ms), and until another peer learns that the
// registrar is now the home of the hung peer's element (takeover-ms):
// from its TAKEOVER_SERVER, or, as rsplib 3.4.4 fails to send that message
// (it logs "Sending TakeoverServer failed"), from its next presence, whose
// ownership checksum then covers the element. Each operation is one
// takeover of a new peer that owns one pool element.
func BenchmarkENRPTakeover(b *testing.B) {
	for _, t := range enrpTargets(b) {
		b.Run("registrar="+t.Name, func(b *testing.B) {
			watcher := dialFakePeer(b, t.Network, t.ENRP, 0x0c0c0000+asap.ServerID(nextID.Add(1)))
			watcher.joined(b)
			var detect, total time.Duration
			takeovers := min(b.N, maxTakeovers)
			for range takeovers {
				b.StopTimer()
				dead := dialFakePeer(b, t.Network, t.ENRP, 0x0d0d0000+asap.ServerID(nextID.Add(1)))
				dead.joined(b)
				dead.own("enrp-takeover", pe(asap.PEID(0x60000000+nextID.Add(1)), hostAddr(t.Target), 2001, kindFor(t.Target)))
				dead.mu.Lock()
				want := dead.owned.Checksum(dead.id)
				dead.mu.Unlock()
				time.Sleep(300 * time.Millisecond)
				b.StartTimer()
				start := time.Now()
				dead.mute.Store(true)
				a := watcher.await(b, 60*time.Second, "init takeover", func(m enrp.Message) bool {
					it, ok := m.(*enrp.InitTakeover)
					return ok && it.Target == dead.id
				})
				detect += a.at.Sub(start)
				a = watcher.await(b, 60*time.Second, "takeover server or presence with the element", func(m enrp.Message) bool {
					switch m := m.(type) {
					case *enrp.TakeoverServer:
						return m.Target == dead.id
					case *enrp.Presence:
						return m.Checksum == want
					}
					return false
				})
				total += a.at.Sub(start)
				b.StopTimer()
				dead.close()
			}
			b.ReportMetric(float64(detect.Milliseconds())/float64(takeovers), "detect-ms")
			b.ReportMetric(float64(total.Milliseconds())/float64(takeovers), "takeover-ms")
		})
	}
}

// BenchmarkENRPHandleTableSync measures how fast a registrar hands its
// handlespace to a new peer: a fake peer fills it with elements it owns
// (handle updates), another asks for the whole table (W=0) and follows
// the M flag to its end. Reported are pool elements per second.
func BenchmarkENRPHandleTableSync(b *testing.B) {
	const pools, perPool = 100, 100
	for _, t := range enrpTargets(b) {
		b.Run(fmt.Sprintf("registrar=%s/elements=%d", t.Name, pools*perPool), func(b *testing.B) {
			owner := dialFakePeer(b, t.Network, t.ENRP, 0x0e0e0000+asap.ServerID(nextID.Add(1)))
			owner.joined(b)
			for i := range pools * perPool {
				p := pe(asap.PEID(0x70000000+nextID.Add(1)), hostAddr(t.Target), 2002, kindFor(t.Target))
				p.Life, p.Policy = time.Hour, policy.Policy{Type: policy.RoundRobin}
				owner.own(asap.PoolHandle(fmt.Sprintf("sync-%d", i%pools)), p)
			}
			reader := dialFakePeer(b, t.Network, t.ENRP, 0x0f0f0000+asap.ServerID(nextID.Add(1)))
			reader.joined(b)
			count := func() int {
				n := 0
				reader.send(&enrp.HandleTableRequest{Header: enrp.Header{Sender: reader.id}})
				for {
					m := reader.await(b, 60*time.Second, "handle table response", func(m enrp.Message) bool {
						r, ok := m.(*enrp.HandleTableResponse)
						return ok && !r.Reject
					}).m.(*enrp.HandleTableResponse)
					for _, p := range m.Pools {
						n += len(p.PEs)
					}
					if !m.More {
						return n
					}
					reader.send(&enrp.HandleTableRequest{Header: enrp.Header{Sender: reader.id}})
				}
			}
			have := 0
			testutil.WaitFor(b, 60*time.Second, "the registrar to hold every element", func() bool {
				have = count()
				if have < pools*perPool {
					b.Logf("registrar holds %d elements (owner's first write error: %v)", have, owner.werr.Load())
					time.Sleep(time.Second)
				}
				return have >= pools*perPool
			})
			b.ResetTimer()
			n := 0
			for range min(b.N, maxSyncs) {
				n += count()
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "elements/s")
		})
	}
}
