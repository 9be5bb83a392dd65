package registrar

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/enrp"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/registrar/internal/peer"
)

// Defaults of ENRPConfig. The timers are faster than rsplib's (2.4 s
// heartbeats, 5 s max-time-last-heard, 5 s max-time-no-response, 5 s
// takeover expiry) and interoperate with it.
const (
	DefaultPeerHeartbeatInterval = peer.DefaultHeartbeatInterval
	DefaultPeerMaxTimeLastHeard  = peer.DefaultMaxTimeLastHeard
	DefaultPeerMaxTimeNoResponse = peer.DefaultMaxTimeNoResponse
	DefaultTakeoverExpiry        = peer.DefaultTakeoverExpiry
	DefaultMaxPeers              = peer.DefaultMaxPeers
	DefaultMaxBadPeerMessages    = 100
	DefaultPeerSendQueue         = 8192
	DefaultENRPPort              = 9901
	DefaultMentorWait            = 5 * time.Second
	DefaultENRPAnnounce          = "239.0.0.51:9901"
)

// ENRPConfig configures a registrar's ENRP side (RFC 5353): the peer
// registrars it shares the handlespace with. The zero value has no peers
// and listens nowhere.
type ENRPConfig struct {
	// Peers are registrars to connect to, as network:address
	// ("tcp:host:port" with the framing of package mapping, or
	// "sctp:host:port", PPID 12, as rsplib's registrars speak it). The
	// registrar keeps a connection to each, reconnecting when it breaks.
	Peers []string
	// Listen are where to accept ENRP connections from peers, as
	// network:address. Serve opens them; ServeENRP serves other
	// listeners.
	Listen []string

	// HeartbeatInterval (PEER-HEARTBEAT-CYCLE), MaxTimeLastHeard,
	// MaxTimeNoResponse and TakeoverExpiry are the ENRP timers: a peer
	// silent for MaxTimeLastHeard is probed, and taken over when it does
	// not answer within MaxTimeNoResponse; a takeover waits
	// TakeoverExpiry for acknowledgements before it asks again.
	HeartbeatInterval time.Duration
	MaxTimeLastHeard  time.Duration
	MaxTimeNoResponse time.Duration
	TakeoverExpiry    time.Duration

	// MaxPeers bounds the peer table. MaxMessageRate bounds each peer's
	// ENRP messages per second (zero: no limit). A connection that sends
	// MaxBadMessages malformed, refused or over-the-rate messages is
	// closed. MaxElementsPerResponse is the most pool elements per
	// handle table response (rsplib: 128). SendQueue is how many messages
	// may wait for one peer connection; when it is full the connection
	// is closed, and the peers' audit repairs what it missed.
	MaxPeers               int
	MaxMessageRate         float64
	MaxBadMessages         int
	MaxElementsPerResponse int
	SendQueue              int

	// StaticPeers keeps the registrar to the connections to Peers and
	// those peers make: it does not connect to the registrars its peers'
	// lists name (as it does by default, within MaxPeers), for a network
	// where peers are reachable only at the configured addresses.
	StaticPeers bool

	// MentorWait is how long a registrar with Peers waits, once it has
	// started, for the first peer that answers (its mentor) to send it
	// the handlespace before it serves pool elements and users (RFC 5353
	// §3.2): Serve accepts ASAP connections, and the announces begin,
	// only then. When no mentor's handlespace arrives within MentorWait
	// it serves anyway. Zero means DefaultMentorWait; negative, or no
	// Peers, serves at once. ServeConn is not held back.
	MentorWait time.Duration

	// TLSConfig, when set, runs ENRP over TCP with TLS 1.3 both ways: it
	// is the server configuration of the Listen listeners (with
	// ClientAuth tls.RequireAndVerifyClientCert and ClientCAs, peers
	// prove who they are) and the client configuration for dialing Peers
	// (Certificates, and RootCAs to verify them by their host). SCTP
	// peers and listeners are refused with it (mapping.ErrTLSOverSCTP):
	// over SCTP, ENRP stays as rsplib has it, for IPsec or a private
	// network to protect. AuthorizePeer, when set, decides by the verified
	// certificate (see Peer) which registrars may be peers, on connections
	// accepted and dialed alike; PeerIdentities makes one. nil allows
	// every peer that passed the TLS handshake (any, without TLS).
	TLSConfig     *tls.Config
	AuthorizePeer func(p Peer) bool

	// Announce, when set, is the UDP multicast group of ENRP presences
	// (RFC 5353 §3.1; DefaultENRPAnnounce, "239.0.0.51:9901", is
	// rsplib's): Serve sends the registrar's ENRP_PRESENCE there every
	// HeartbeatInterval, once it has an ENRP listener, and connects to the
	// registrars it hears there that are not yet peers (its own presences
	// aside, within MaxPeers, StaticPeers or not) at the datagram's source
	// address and the port of their server information, over SCTP if it
	// has an SCTP ENRP listener, else over TCP. Serve fails if the group
	// cannot be used. AnnounceInterface names the interface to send and
	// listen on ("": the system's choice).
	Announce          string
	AnnounceInterface string
}

func (c ENRPConfig) withDefaults() ENRPConfig {
	if c.MaxBadMessages <= 0 {
		c.MaxBadMessages = DefaultMaxBadPeerMessages
	}
	if c.SendQueue <= 0 {
		c.SendQueue = DefaultPeerSendQueue
	}
	switch {
	case len(c.Peers) == 0 || c.MentorWait < 0:
		c.MentorWait = 0
	case c.MentorWait == 0:
		c.MentorWait = DefaultMentorWait
	}
	return c
}

// enrpSide is the registrar's ENRP I/O around its pure core: one
// goroutine per connection reads and feeds the core, one writes; one runs
// the core's timers. The core is guarded by the registrar's mutex, as is
// the handlespace it works on.
type enrpSide struct {
	r       *Registrar
	cfg     ENRPConfig
	core    *peer.Core    // guarded by r.mu
	started bool          // guarded by r.mu
	running bool          // guarded by r.mu
	ready   chan struct{} // closed once the core is Ready
	isReady bool          // guarded by r.mu

	lmu       sync.Mutex
	links     map[*link]struct{}
	listeners map[mapping.Listener]struct{}
	infoSet   bool
}

// link is one ENRP connection to a peer. The messages for it wait in q,
// in order; whoever holds wmu takes them from there and writes them: the
// link's writer goroutine, which kick wakes, or the goroutine that
// handled a registration, which writes its handle update itself before
// it answers the pool element (see flushHeld).
type link struct {
	e    *enrpSide
	c    mapping.Conn
	kick chan struct{} // one waiting wake-up of the writer at most
	done chan struct{}
	once sync.Once

	qmu sync.Mutex
	q   [][]byte // encoded messages waiting; guarded by qmu

	// wmu is held while taking messages from q and writing them, so that
	// they go out in the order queued. held is set while the TCP mapping
	// holds the rest of a write that did not wait (TryWriteBatch), for
	// the writer to flush; deadline is the write deadline set last.
	wmu      sync.Mutex
	held     bool
	deadline time.Time
	batch    []mapping.Msg

	id  asap.ServerID // the peer, once heard; guarded by e.lmu
	bad int           // reader only
	// dialed is set for connections this registrar made. info, for a
	// dialed SCTP association, is the server information its presences
	// carry: rsplib accepts a presence only when the ENRP address in it is
	// the association's, and a dialed association's local port is not the
	// listener's.
	dialed bool
	info   *asap.ServerInformation
}

func newENRPSide(r *Registrar) *enrpSide {
	cfg := r.cfg.ENRP.withDefaults()
	e := &enrpSide{
		r:         r,
		cfg:       cfg,
		links:     make(map[*link]struct{}),
		listeners: make(map[mapping.Listener]struct{}),
		ready:     make(chan struct{}),
	}
	e.core = peer.New(peer.Config{
		ID:                     r.id,
		MentorWait:             cfg.MentorWait,
		HeartbeatInterval:      cfg.HeartbeatInterval,
		MaxTimeLastHeard:       cfg.MaxTimeLastHeard,
		MaxTimeNoResponse:      cfg.MaxTimeNoResponse,
		TakeoverExpiry:         cfg.TakeoverExpiry,
		MaxElementsPerResponse: cfg.MaxElementsPerResponse,
		MaxPeers:               cfg.MaxPeers,
		MaxMessageRate:         cfg.MaxMessageRate,
		MinLife:                r.cfg.MinRegistrationLife,
		MaxLife:                r.cfg.MaxRegistrationLife,
		Live: func(h asap.PoolHandle, id asap.PEID) bool {
			return r.ownedLocked(peKey{h, id}) != nil
		},
		Disown: func(h asap.PoolHandle, id asap.PEID) {
			if st := r.ownedLocked(peKey{h, id}); st != nil {
				r.disownLocked(st)
			}
		},
		TookOver: func(target asap.ServerID, pes []peer.Key) {
			r.cfg.Logger.Warn("took over a registrar's pool elements", "registrar", fmt.Sprintf("%08x", uint32(target)), "elements", len(pes))
			r.homeKeepAlivesLocked(pes)
		},
		Logger: r.cfg.Logger.With("enrp", fmt.Sprintf("%08x", uint32(r.id))),
	}, r.hs)
	return e
}

// homeKeepAlivesLocked tells the pool elements this registrar took over
// that it is their home (RFC 5352 §3.4.2): for each SCTP ASAP transport
// among them it opens an association there and sends every element behind
// it an ASAP_ENDPOINT_KEEP_ALIVE with the H flag; from then on they are
// watched with keep-alives on that association like elements registered
// here, and one that does not answer within KeepAliveTimeout is removed
// (as rsplib does). rsplib's pool elements accept such associations, and
// so do rsp's over SCTP (asap/endpoint), which make it their registrar
// connection. An element whose transport cannot be reached, such as one
// registered over TCP, whose ASAP transport names no SCTP address, stays in
// the handlespace until it hunts, finds a registrar of the pool and
// re-registers, or its registration life ends. r.mu is held.
func (r *Registrar) homeKeepAlivesLocked(keys []peer.Key) {
	byAddr := make(map[string][]peKey)
	for _, k := range keys {
		pe, ok := r.hs.Lookup(k.Handle, k.ID)
		if !ok || pe.ASAPTransport == nil || pe.ASAPTransport.Kind != asap.ParamSCTPTransport || len(pe.ASAPTransport.Addrs) == 0 {
			continue
		}
		t := pe.ASAPTransport
		addr := netip.AddrPortFrom(t.Addrs[0].Unmap(), t.Port).String()
		byAddr[addr] = append(byAddr[addr], peKey{k.Handle, k.ID})
	}
	if len(byAddr) == 0 || r.closed || !mapping.SCTPSupported() {
		return
	}
	timeout := r.cfg.ENRP.MaxTimeNoResponse
	if timeout <= 0 {
		timeout = DefaultPeerMaxTimeNoResponse
	}
	for addr, keys := range byAddr {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*timeout)
			go func() {
				select {
				case <-r.done:
					cancel()
				case <-ctx.Done():
				}
			}()
			var d mapping.Dialer
			c, err := d.DialContext(ctx, "sctp", addr)
			cancel()
			if err != nil {
				r.cfg.Logger.Info("taken-over pool elements unreachable for a home keep-alive; left to re-register", "addr", addr, "elements", len(keys), "err", err)
				return
			}
			r.adopt(c, keys)
		}()
	}
}

// adopt serves c, an association this registrar opened to taken-over pool
// elements, and sends each of keys a home-flagged keep-alive on it.
func (r *Registrar) adopt(c mapping.Conn, keys []peKey) {
	pc := newPeerConn(r, c)
	r.mu.Lock()
	if r.closed || !r.admitLocked(pc) {
		r.mu.Unlock()
		c.Close()
		return
	}
	n := 0
	for _, key := range keys {
		pe, ok := r.hs.Lookup(key.handle, key.id)
		if !ok || pe.Home != r.id || r.ownedLocked(key) != nil {
			continue // gone, or registered again somewhere since
		}
		st := newPeState(key, pc)
		st.awaiting = true
		r.ownLocked(st)
		r.scheduleLocked(st, r.cfg.KeepAliveTimeout, r.schedNow(time.Now()))
		pc.send(&asap.EndpointKeepAlive{Server: r.id, Handle: key.handle, ID: key.id, Home: true})
		n++
	}
	r.wg.Add(2)
	r.mu.Unlock()
	r.cfg.Logger.Info("sent home keep-alives to taken-over pool elements", "peer", c.RemoteAddr(), "elements", n)
	go pc.writeLoop()
	go pc.readLoop()
}

// registeredLocked tells the peers of a registration here. The update is
// queued on the peers' connections in the order of r.mu, without waking
// their writers: the links are added to held, for the caller to write
// with flushHeld once r.mu is released and before it answers the pool
// element, as rsplib sends its update before its answer. dispatch takes
// only e.lmu (which is never held while taking r.mu) and never blocks.
func (r *Registrar) registeredLocked(h asap.PoolHandle, pe *asap.PoolElement, held *[]*link) {
	r.enrp.core.Registered(h, pe)
	r.enrp.dispatch(nil, r.enrp.core.TakeOut(), held)
}

// flushHeld writes what waits on the links registeredLocked held, each
// without waiting for room (flushNow), and empties held. r.mu is not
// held.
func flushHeld(held *[]*link) {
	for i, l := range *held {
		l.flushNow()
		(*held)[i] = nil
	}
	*held = (*held)[:0]
}

// dropLocked removes a pool element this registrar is home of from the
// handlespace and tells the peers. An element whose home is now a peer
// (it registered there since) stays: it is the peer's to remove. A
// registrar that is closing tells nobody: its elements live on, and its
// peers take them over as from a registrar that died.
func (r *Registrar) dropLocked(key peKey) { r.dropHeldLocked(key, nil) }

// dropHeldLocked is dropLocked that, with held, queues the update for the
// caller to write with flushHeld, as registeredLocked does.
func (r *Registrar) dropHeldLocked(key peKey, held *[]*link) {
	pe, ok := r.hs.Lookup(key.handle, key.id)
	if !ok || pe.Home != r.id {
		return
	}
	p := *pe
	r.hs.Deregister(key.handle, key.id)
	if r.closed {
		return
	}
	r.enrp.core.Removed(key.handle, &p)
	r.enrp.dispatch(nil, r.enrp.core.TakeOut(), held)
}

// expiredLocked tells the peers that an element homed here expired, the
// update queued on the links added to held (see registeredLocked).
func (r *Registrar) expiredLocked(h asap.PoolHandle, pe *asap.PoolElement, held *[]*link) {
	if pe.Home == r.id {
		r.enrp.core.Removed(h, pe)
		r.enrp.dispatch(nil, r.enrp.core.TakeOut(), held)
	}
}

// startENRP opens the configured ENRP listeners and connects to the
// configured peers, once.
func (r *Registrar) startENRP() error {
	e := r.enrp
	r.mu.Lock()
	if e.started || r.closed {
		r.mu.Unlock()
		return nil
	}
	e.started = true
	r.mu.Unlock()
	// The timer goroutine runs first: it is what closes the listeners and
	// connections on Close, and one that Close has begun before it is
	// refused by addListener and run.
	e.ensureRunning()
	for _, spec := range e.cfg.Listen {
		network, address, ok := strings.Cut(spec, ":")
		if !ok {
			return fmt.Errorf("registrar: ENRP listener %q: want network:address", spec)
		}
		lc := e.enrpListenConfig()
		l, err := lc.Listen(context.Background(), network, address)
		if err != nil {
			return fmt.Errorf("registrar: ENRP listener: %w", err)
		}
		if !e.addListener(l) {
			return ErrRegistrarClosed
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			e.accept(l)
		}()
	}
	if e.cfg.Announce != "" {
		if err := e.startMulticast(); err != nil {
			return err
		}
	}
	for _, spec := range e.cfg.Peers {
		network, address, ok := strings.Cut(spec, ":")
		if !ok {
			return fmt.Errorf("registrar: ENRP peer %q: want network:address", spec)
		}
		r.wg.Add(1)
		go e.dialLoop(network, address)
	}
	return nil
}

// closing reports whether Close has begun. Unlike r.isClosed it takes no
// lock, so that it may be called with e.lmu held: the lock order is r.mu,
// then e.lmu. Close closes r.done under r.mu before the timer goroutine
// closes the connections and listeners it finds under e.lmu, so one that
// is added after that check fails here.
func (e *enrpSide) closing() bool {
	select {
	case <-e.r.done:
		return true
	default:
		return false
	}
}

// ensureRunning starts the timer goroutine once.
func (e *enrpSide) ensureRunning() {
	r := e.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || e.running {
		return
	}
	e.running = true
	now := time.Now()
	e.core.Start(now)
	e.checkReadyLocked(now)
	r.wg.Add(1)
	go e.timerLoop()
}

// checkReadyLocked closes e.ready when the core has become Ready; r.mu
// is held.
func (e *enrpSide) checkReadyLocked(now time.Time) {
	if !e.isReady && e.core.Ready(now) {
		e.isReady = true
		close(e.ready)
	}
}

// awaitReady waits until the registrar may serve ASAP: its mentor's
// handlespace is here or MentorWait has passed. It returns false on
// Close.
func (e *enrpSide) awaitReady() bool {
	e.ensureRunning()
	select {
	case <-e.ready:
		return true
	case <-e.r.done:
		return false
	}
}

// ServeENRP accepts ENRP connections from peer registrars on l until
// Close; its address is announced in the registrar's presences. It always
// returns a non-nil error; after Close it is ErrRegistrarClosed.
func (r *Registrar) ServeENRP(l mapping.Listener) error {
	e := r.enrp
	if !e.addListener(l) {
		return ErrRegistrarClosed
	}
	e.ensureRunning()
	return e.accept(l)
}

// addListener records l, whose address goes into the presences if it is
// the first; false after Close.
func (e *enrpSide) addListener(l mapping.Listener) bool {
	r := e.r
	e.lmu.Lock()
	defer e.lmu.Unlock()
	if e.closing() {
		l.Close()
		return false
	}
	e.listeners[l] = struct{}{}
	var info *asap.ServerInformation
	if !e.infoSet {
		var ok bool
		info, ok = serverInfo(r.id, l.Addr())
		e.infoSet = ok
	}
	e.lmu.Unlock()
	if info != nil {
		// r.mu is never taken with e.lmu held: dispatch takes e.lmu
		// under r.mu.
		r.mu.Lock()
		e.core.SetInfo(info)
		r.mu.Unlock()
	}
	e.lmu.Lock()
	return true
}

func (e *enrpSide) accept(l mapping.Listener) error {
	r := e.r
	for {
		c, err := l.Accept()
		if err != nil {
			if r.isClosed() {
				return ErrRegistrarClosed
			}
			if isTemporary(err) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		e.run(c, false)
	}
}

// ENRPAddrs returns the addresses of the registrar's ENRP listeners.
func (r *Registrar) ENRPAddrs() []net.Addr {
	e := r.enrp
	e.lmu.Lock()
	defer e.lmu.Unlock()
	var a []net.Addr
	for l := range e.listeners {
		a = append(a, l.Addr())
	}
	return a
}

// Peers returns the server identifiers of the registrar's ENRP peers.
func (r *Registrar) Peers() []asap.ServerID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.enrp.core.Peers()
}

// serverInfo is the server information of a registrar listening at a:
// rsplib's peers reach it there over SCTP. (A TCP listener is described
// with the same parameter; RFC 5353 knows only SCTP.)
func serverInfo(id asap.ServerID, a net.Addr) (*asap.ServerInformation, bool) {
	s := a.String()
	if i := strings.IndexByte(s, ']'); strings.HasPrefix(s, "[") && i > 0 && strings.Contains(s[1:i], ",") {
		s = s[1:strings.IndexByte(s, ',')] + s[i+1:] // first of a multi-homed list
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, false
	}
	addr := ap.Addr().Unmap()
	if addr.IsUnspecified() {
		addr = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	return &asap.ServerInformation{Server: id, Transport: asap.Transport{
		Kind: asap.ParamSCTPTransport, Port: ap.Port(), Use: asap.DataOnly, Addrs: []netip.Addr{addr},
	}}, true
}

// dialLoop keeps a connection to one configured peer.
func (e *enrpSide) dialLoop(network, address string) {
	r := e.r
	defer r.wg.Done()
	d := e.enrpDialer()
	delay := e.cfg.HeartbeatInterval
	if delay <= 0 {
		delay = DefaultPeerHeartbeatInterval
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*delay+time.Second)
		go func() {
			select {
			case <-r.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		c, err := d.DialContext(ctx, network, address)
		cancel()
		if err == nil {
			l := e.run(c, true)
			select {
			case <-l.done:
			case <-r.done:
				return
			}
		} else {
			r.cfg.Logger.Debug("ENRP peer unreachable", "peer", address, "err", err)
		}
		select {
		case <-r.done:
			return
		case <-time.After(delay):
		}
	}
}

// dialLearnt connects once to si, a registrar that a peer's list named or
// that was heard by multicast, over network: the kind of connection the
// list came on, or of the registrar's own ENRP listeners (a TCP listener
// is described as SCTP in server information, as rsplib knows only SCTP).
// A dial that fails is left to a later list or presence.
func (e *enrpSide) dialLearnt(network string, si asap.ServerInformation) {
	r := e.r
	address := netip.AddrPortFrom(si.Transport.Addrs[0].Unmap(), si.Transport.Port).String()
	timeout := e.cfg.HeartbeatInterval
	if timeout <= 0 {
		timeout = DefaultPeerHeartbeatInterval
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 2*timeout+time.Second)
		defer cancel()
		go func() {
			select {
			case <-r.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		d := e.enrpDialer()
		c, err := d.DialContext(ctx, network, address)
		if err != nil {
			r.cfg.Logger.Info("registrar named in a peer list unreachable", "peer", fmt.Sprintf("%08x", uint32(si.Server)), "addr", address, "err", err)
			return
		}
		e.run(c, true)
	}()
}

// networkOf is "sctp" for an SCTP association, else "tcp".
func networkOf(c mapping.Conn) string {
	if isSCTP(c) {
		return "sctp"
	}
	return "tcp"
}

// isSCTP reports whether c is an SCTP association.
func isSCTP(c mapping.Conn) bool {
	_, ok := c.(interface {
		PeerAddrs() ([]netip.Addr, error)
	})
	return ok
}

// run serves one ENRP connection in new goroutines; it starts with a
// presence that asks the peer to answer with its own.
func (e *enrpSide) run(c mapping.Conn, dialed bool) *link {
	r := e.r
	l := &link{e: e, c: c, kick: make(chan struct{}, 1), done: make(chan struct{}), dialed: dialed}
	if dialed && isSCTP(c) {
		l.info, _ = serverInfo(r.id, c.LocalAddr())
	}
	e.lmu.Lock()
	if e.closing() || !e.peerAllowed(c) {
		e.lmu.Unlock()
		c.Close()
		close(l.done)
		return l
	}
	e.links[l] = struct{}{}
	r.wg.Add(2)
	e.lmu.Unlock()
	r.mu.Lock()
	p := e.core.Presence(0, true)
	r.mu.Unlock()
	l.send(l.own(p))
	go l.writeLoop()
	go l.readLoop()
	return l
}

// own returns m as this connection sends it: a presence with the
// connection's own server information where it has one.
func (l *link) own(m enrp.Message) enrp.Message {
	if p, ok := m.(*enrp.Presence); ok && l.info != nil && p.Info != nil {
		q := *p
		q.Info = l.info
		return &q
	}
	return m
}

func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		l.c.Close()
		l.e.lmu.Lock()
		delete(l.e.links, l)
		l.e.lmu.Unlock()
	})
}

// send queues m and wakes the writer.
func (l *link) send(m enrp.Message) {
	if l.queue(m) {
		l.wake()
	}
}

// queue encodes m and queues it without waking the writer; false if it
// was not queued. It never blocks: a peer that does not keep up, with
// SendQueue messages waiting, loses its connection. It may be called
// with r.mu held.
func (l *link) queue(m enrp.Message) bool {
	b, err := m.AppendBinary(nil)
	if err != nil {
		l.e.r.cfg.Logger.Error("encoding ENRP message", "err", err)
		return false
	}
	l.qmu.Lock()
	full := len(l.q) >= l.e.cfg.SendQueue
	if !full {
		l.q = append(l.q, b)
	}
	l.qmu.Unlock()
	if full {
		l.e.r.cfg.Logger.Warn("ENRP peer does not keep up; closing its connection", "peer", l.c.RemoteAddr())
		l.close()
		return false
	}
	return true
}

// wake tells the writer that messages wait.
func (l *link) wake() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// takeLocked moves up to linkWriteBatch waiting messages into l.batch.
// wmu is held.
func (l *link) takeLocked() []mapping.Msg {
	l.qmu.Lock()
	n := min(len(l.q), linkWriteBatch)
	for _, b := range l.q[:n] {
		l.batch = append(l.batch, mapping.Msg{Buf: b, PPID: mapping.PPIDENRP})
	}
	rest := copy(l.q, l.q[n:])
	clear(l.q[rest:])
	l.q = l.q[:rest]
	l.qmu.Unlock()
	return l.batch
}

// requeueLocked puts ms back at the head of the queue, before what was
// queued since they were taken. wmu is held.
func (l *link) requeueLocked(ms []mapping.Msg) {
	l.qmu.Lock()
	q := make([][]byte, 0, len(ms)+len(l.q))
	for _, m := range ms {
		q = append(q, m.Buf)
	}
	l.q = append(q, l.q...)
	l.qmu.Unlock()
}

// doneLocked empties l.batch after a write. wmu is held.
func (l *link) doneLocked() {
	clear(l.batch)
	l.batch = l.batch[:0]
}

// linkWriteBatch is how many messages one write to a peer takes at most.
const linkWriteBatch = 64

// renewDeadlineLocked keeps the write deadline at least WriteTimeout away,
// by the registrar's coarse clock (see peerConn.renewWriteDeadline). wmu
// is held.
func (l *link) renewDeadlineLocked() {
	if d, renew := l.e.r.writeDeadline(l.deadline); renew {
		l.deadline = d
		l.c.SetWriteDeadline(d)
	}
}

// nowWriter is an SCTP connection that writes what its socket takes
// without waiting (mapping.SCTPConn).
type nowWriter interface {
	WriteBatchNow([]mapping.Msg) (int, error)
}

// tryWriter is a connection that writes without waiting and holds what
// its socket did not take until its next write or Flush
// (mapping.TCPConn on a socket).
type tryWriter interface {
	CanTryWrite() bool
	TryWriteBatch([]mapping.Msg) (bool, error)
	Flush() error
}

// flushNow writes what waits for l from the calling goroutine, without
// waiting for room in the socket's buffer and without a hand-over to the
// writer, when no one else writes: what the socket does not take at once,
// or a connection that cannot write so, is left to the writer, which it
// wakes. It never blocks on the peer.
func (l *link) flushNow() {
	if !l.wmu.TryLock() {
		l.wake() // the writer, or another flushNow, writes: it may have taken its batch already
		return
	}
	defer l.wmu.Unlock()
	ms := l.takeLocked()
	if len(ms) == 0 {
		return
	}
	defer l.doneLocked()
	select {
	case <-l.done:
		return
	default:
	}
	tw, canTry := l.c.(tryWriter)
	canTry = canTry && tw.CanTryWrite()
	nw, canNow := l.c.(nowWriter)
	if l.held || !canNow && !canTry {
		l.requeueLocked(ms)
		l.wake()
		return
	}
	l.renewDeadlineLocked()
	var err error
	if canNow {
		var n int
		n, err = nw.WriteBatchNow(ms)
		if err == nil && n < len(ms) {
			l.requeueLocked(ms[n:])
		}
	} else {
		var sent bool
		sent, err = tw.TryWriteBatch(ms)
		l.held = err == nil && !sent
	}
	if err != nil {
		l.writeFailed(err)
		return
	}
	l.qmu.Lock()
	more := len(l.q) > 0
	l.qmu.Unlock()
	if more || l.held {
		l.wake()
	}
}

// writeLoop writes what waits whenever it is woken, waiting for room in
// the socket's buffer up to WriteTimeout.
func (l *link) writeLoop() {
	r := l.e.r
	defer r.wg.Done()
	bc := mapping.Batched(l.c)
	for {
		select {
		case <-l.kick:
		case <-l.done:
			return
		}
		if !l.writeWaiting(bc) {
			return
		}
	}
}

// writeWaiting writes every message waiting, and what the connection
// holds of an earlier write; false when a write failed and closed the
// link.
func (l *link) writeWaiting(bc mapping.BatchConn) bool {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	for {
		if l.held {
			l.renewDeadlineLocked()
			if err := l.c.(tryWriter).Flush(); err != nil {
				l.writeFailed(err)
				return false
			}
			l.held = false
		}
		ms := l.takeLocked()
		if len(ms) == 0 {
			return true
		}
		l.renewDeadlineLocked()
		_, err := bc.WriteBatch(ms)
		l.doneLocked()
		if err != nil {
			l.writeFailed(err)
			return false
		}
	}
}

func (l *link) writeFailed(err error) {
	l.e.r.cfg.Logger.Debug("ENRP write failed; closing connection", "peer", l.c.RemoteAddr(), "err", err)
	l.close()
}

func (l *link) readLoop() {
	e := l.e
	r := e.r
	defer r.wg.Done()
	defer l.close()
	buf := make([]byte, 65536)
	for {
		n, ppid, err := l.c.ReadMsg(buf)
		if errors.Is(err, mapping.ErrMessageTooLong) {
			continue
		}
		if err != nil {
			r.cfg.Logger.Debug("ENRP connection ended", "peer", l.c.RemoteAddr(), "err", err)
			return
		}
		if ppid != mapping.PPIDENRP {
			continue
		}
		b := buf[:n]
		now := time.Now()
		r.mu.Lock()
		err = e.core.Receive(now, b)
		out := e.core.TakeOut()
		dials := e.core.TakeDials()
		e.checkReadyLocked(now)
		r.mu.Unlock()
		for _, si := range dials {
			if !e.cfg.StaticPeers {
				e.dialLearnt(networkOf(l.c), si)
			}
		}
		if err == nil && n >= 12 {
			id := asap.ServerID(binary.BigEndian.Uint32(b[4:]))
			e.lmu.Lock()
			l.id = id
			e.lmu.Unlock()
		}
		e.dispatch(l, out, nil)
		if err != nil {
			l.bad++
			r.cfg.Logger.Debug("refused ENRP message", "peer", l.c.RemoteAddr(), "err", err)
			if l.bad >= e.cfg.MaxBadMessages {
				r.cfg.Logger.Warn("ENRP peer sends too many bad messages; closing its connection", "peer", l.c.RemoteAddr(), "bad", l.bad)
				return
			}
		}
	}
}

// timerLoop runs the core's timers and sends what it queues between them.
func (e *enrpSide) timerLoop() {
	r := e.r
	defer r.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-r.done:
			e.lmu.Lock()
			links := make([]*link, 0, len(e.links))
			for l := range e.links {
				links = append(links, l)
			}
			ls := make([]mapping.Listener, 0, len(e.listeners))
			for l := range e.listeners {
				ls = append(ls, l)
			}
			e.lmu.Unlock()
			for _, l := range ls {
				l.Close()
			}
			for _, l := range links {
				l.close()
			}
			return
		}
		now := time.Now()
		r.mu.Lock()
		if !e.core.Deadline().After(now) {
			e.core.Tick(now)
		}
		e.checkReadyLocked(now)
		out := e.core.TakeOut()
		d := e.core.Deadline()
		r.mu.Unlock()
		e.dispatch(nil, out, nil)
		t.Reset(time.Until(d))
	}
}

// dispatch sends the core's messages: answers on the connection from, the
// others to the peer they name, group-casts once to every peer and to
// every connection whose peer is not yet known. Of several connections to
// one peer, the one the peer made (accepted here) is preferred: rsplib
// takes presences only on associations from the ENRP port it knows. With
// held, the messages are queued without waking the writers, and the links
// added to held (once each) for flushHeld.
func (e *enrpSide) dispatch(from *link, out []peer.Out, held *[]*link) {
	if len(out) == 0 {
		return
	}
	send := func(l *link, m enrp.Message) {
		if held == nil {
			l.send(m)
			return
		}
		if l.queue(m) && !slices.Contains(*held, l) {
			*held = append(*held, l)
		}
	}
	type dest struct {
		l  *link
		id asap.ServerID
	}
	e.lmu.Lock()
	links := make([]dest, 0, len(e.links))
	for l := range e.links {
		links = append(links, dest{l, l.id})
	}
	e.lmu.Unlock()
	slices.SortFunc(links, func(a, b dest) int {
		switch {
		case a.l.dialed == b.l.dialed:
			return 0
		case !a.l.dialed:
			return -1
		}
		return 1
	})
	for _, o := range out {
		switch {
		case o.Reply && from != nil:
			send(from, from.own(o.Msg))
		case o.To != 0:
			for _, d := range links {
				if d.id == o.To {
					send(d.l, d.l.own(o.Msg))
					break
				}
			}
		default:
			seen := make(map[asap.ServerID]bool, len(links))
			for _, d := range links {
				if d.id != 0 && seen[d.id] {
					continue
				}
				seen[d.id] = true
				send(d.l, d.l.own(o.Msg))
			}
		}
	}
}

// Checksum returns the RFC 5353 PE checksum of the pool elements owner is
// home of in this registrar's handlespace: the registrar's own when owner
// is its ID. Registrars that agree hold the same checksums.
func (r *Registrar) Checksum(owner asap.ServerID) uint16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hs.Checksum(owner)
}
