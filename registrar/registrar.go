// Package registrar is an RSerPool registrar (RFC 5353's ENRP server) as seen
// by pool elements and pool users: the server side of ASAP (RFC 5352). It
// holds the handlespace, takes registrations, re-registrations and
// deregistrations, answers handle resolutions by the pools' policies, checks
// the pool elements it is home for with keep-alives, and removes those that
// stop answering, whose registration life runs out, or whose registration
// connection closes. A pool user's unreachable report makes it probe the
// element at once; an element that answers stays.
//
// A pool element identifier belongs to the connection (association) that
// registered it until that registration ends: another connection can
// neither re-register nor deregister it (cause 0xa). Such an attempt makes
// the registrar probe the owner with a keep-alive at once, so that an
// element that moved to a new connection while its old one went silent
// gets its identifier within KeepAliveTimeout. Peers are limited by
// default (Config): resolution and report rates per connection, the time a
// TCP frame may take to arrive, and connections in all and per address.
//
// A Registrar serves ASAP on any mapping.Listener: TCP with the framing of
// package mapping, or kernel SCTP (PPID 11) where the kernel has it. Over
// SCTP, Listen opens one one-to-many socket for all associations, which
// Serve reads in batches: the messages of many peers come in with one
// system call and their answers go out with another.
//
// # Registrar pools (ENRP)
//
// With Config.ENRP naming peers and listeners, registrars form a pool that
// shares the handlespace with ENRP (RFC 5353), over TCP with the framing of
// package mapping or over SCTP (PPID 12) as rsplib's registrars speak it.
// Every registration, deregistration and expiry at a registrar goes to its
// peers as a handle update; a registrar that joins takes the handlespace
// from the first peer it hears (its mentor) and their own elements from
// the others, in handle table responses of at most 128 elements; presences
// carry each registrar's ownership checksum, and a checksum that differs
// twice in a row makes the peer resynchronise with the sender's own
// elements. Resolutions are answered from the whole handlespace.
//
// A peer silent for MaxTimeLastHeard is probed; one that does not answer
// within MaxTimeNoResponse is taken over: INIT_TAKEOVER to all peers, the
// lower server identifier winning when two try at once (as in rsplib),
// TAKEOVER_SERVER once every live peer acknowledged. The taker becomes
// the home of the dead registrar's elements in every handlespace, and
// sends them the home-flagged keep-alive of RFC 5352 on an association it
// opens to their SCTP ASAP transport; rsplib's pool elements accept it and
// answer its keep-alives from then on. rsp's pool elements keep one
// connection, to their home registrar, and cannot be reached that way:
// when it breaks they hunt, reach another registrar of the pool and
// re-register, which makes it their home; one that never does leaves with
// its registration life.
//
// An element registered here over a live connection stays here when a
// peer's handle table or takeover claims it; the claim is answered with a
// handle update, so that a partition heals to one home per element. A peer
// may only add or remove elements it is home of (else ENRP_ERROR with
// "rejected due to security considerations"); malformed messages are
// answered with ENRP_ERROR; ENRPConfig bounds the peers, each peer's
// message rate and the bad messages one connection may send.
//
// # Security
//
// rsplib authenticates nobody: whoever reaches its registrar can register,
// deregister or redirect a pool. RFC 5355 asks for mutual authentication
// and integrity on every link, and for registrars to decide who may
// register where. With Config.TLSConfig set, the registrar serves ASAP
// over TCP with TLS 1.3; with its ClientAuth set to
// tls.RequireAndVerifyClientCert and ClientCAs, every peer proves who it
// is with a certificate (mutual TLS), and Config.Authorize (for example a
// Rules table) decides which identities, the certificate's subject common
// name or SAN DNS names and URIs, may register, re-register and deregister
// in which pools. A refused request is answered with cause "rejected due
// to security considerations" (0xa) and logged with its peer. Independent
// of TLS, a pool element belongs to the connection that registered it.
// ENRPConfig.TLSConfig runs the registrar-to-registrar links over TLS as
// well, and ENRPConfig.AuthorizePeer says which certificates belong to
// registrars.
//
// Over SCTP the links stay as rsplib has them: no TLS (RFC 5355 would have
// DTLS or TLS over SCTP, which neither rsplib nor crypto/tls speaks).
// Protect SCTP links with IPsec or keep them on a private network; and
// refuse SCTP altogether, by listening over TCP only, where the network is
// not trusted. Config.Authorize still applies to SCTP peers, which have no
// certificate: a Rules table refuses them every registration.
package registrar

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/handlespace"
	"github.com/rsp-go/rsp/mapping"
)

// ErrRegistrarClosed is returned by Serve after Close.
var ErrRegistrarClosed = errors.New("registrar: closed")

// Registrar serves ASAP to pool elements and pool users. Its methods are
// safe for concurrent use.
type Registrar struct {
	cfg Config
	id  asap.ServerID

	mu      sync.Mutex
	hs      *handlespace.Handlespace
	owned   ownedIndex // pool elements registered here over a live connection
	nOwned  int        // how many
	conns   map[*peerConn]struct{}
	perAddr map[netip.Addr]int // connections in conns by connAddr
	sched   schedule           // keep-alives of the owned elements
	epoch   time.Time          // the schedule's clock starts here
	wakeAt  int64              // when the schedule runs next, on its clock
	wake    chan struct{}      // an element was scheduled before wakeAt
	// holdKicks is set while the schedule runs: the writers of the
	// connections it queues keep-alives for are kicked once it is done,
	// those on kicks (see kickLocked).
	holdKicks bool
	kicks     []*peerConn
	// refusedLog limits the logs of connections refused by the limits.
	refusedLog tokenBucket
	// behindLog limits the logs of a keep-alive schedule running late.
	behindLog tokenBucket
	// slowLog limits the logs of peers answering keep-alives late.
	slowLog tokenBucket
	// deferLog limits the logs of keep-alives waiting for room in a send
	// queue, and kaDeferred counts them (KeepAlivesDeferred).
	deferLog   tokenBucket
	kaDeferred atomic.Uint64
	// kaExtended counts the keep-alive timeouts extended
	// (KeepAliveTimeoutsExtended).
	kaExtended atomic.Uint64
	listeners  map[mapping.Listener]struct{}
	ann        *announcer
	enrp       *enrpSide
	closed     bool

	clock atomic.Int64 // coarseNow, in Unix nanoseconds

	done chan struct{}
	wg   sync.WaitGroup
}

// peKey names a pool element in the handlespace.
type peKey struct {
	handle asap.PoolHandle
	id     asap.PEID
}

// peState is the registrar's view of a pool element it is home for.
type peState struct {
	key  peKey
	conn *peerConn // the connection it registered on
	// at is when the next keep-alive is due, or the answer to the last
	// one overdue, on the schedule's clock (schedNow); slot is its slot
	// of the schedule, or -1 when it is not on the schedule, and idx its
	// index there.
	at        int64
	slot, idx int32
	awaiting  bool // a keep-alive is outstanding
	waiting   bool // on its connection's kaWait, for room in the send queue
	owned     bool // in r.owned (ownLocked), so without a look-up there
	extended  bool // the wait for the answer was extended (see keepAliveDueLocked)
	// connPrev and connNext link the elements registered over conn
	// (peerConn.pes).
	connPrev, connNext *peState
}

// newPeState returns the state of an element registered over pc, not on
// the schedule.
func newPeState(key peKey, pc *peerConn) *peState {
	return &peState{key: key, conn: pc, slot: -1}
}

// New returns a registrar configured by cfg.
func New(cfg Config) *Registrar {
	cfg = cfg.withDefaults()
	id := cfg.ID
	for id == 0 {
		id = asap.ServerID(rand.Uint32())
	}
	r := &Registrar{
		cfg: cfg,
		id:  id,
		hs: handlespace.New(handlespace.Config{
			MaxPools:      cfg.MaxPools,
			MaxPEsPerPool: cfg.MaxPEsPerPool,
		}),
		owned:      make(ownedIndex),
		conns:      make(map[*peerConn]struct{}),
		perAddr:    make(map[netip.Addr]int),
		wake:       make(chan struct{}, 1),
		refusedLog: newTokenBucket(1),
		behindLog:  newTokenBucket(1),
		slowLog:    newTokenBucket(1),
		epoch:      time.Now(),
		wakeAt:     1<<63 - 1,
		deferLog:   newTokenBucket(1),
		listeners:  make(map[mapping.Listener]struct{}),
		done:       make(chan struct{}),
	}
	r.enrp = newENRPSide(r)
	r.clock.Store(time.Now().UnixNano())
	r.wg.Add(2)
	go r.expireLoop()
	go r.scheduleLoop()
	return r
}

// ID returns the registrar's server identifier.
func (r *Registrar) ID() asap.ServerID { return r.id }

// ListenAndServe listens on network ("tcp", "tcp4", "tcp6", "tls" or
// "sctp") and address, as the Listen method does, and serves ASAP there
// until Close.
func (r *Registrar) ListenAndServe(ctx context.Context, network, address string) error {
	l, err := r.Listen(ctx, network, address)
	if err != nil {
		return err
	}
	return r.Serve(l)
}

// Listen opens an ASAP listener on network and address for a registrar:
// TCP with the mapping's framing, or SCTP. Over SCTP it is one one-to-many
// socket for all associations, which Serve reads in batches, with no
// accept queue to overflow; its Accept only waits for Close.
func Listen(ctx context.Context, network, address string) (mapping.Listener, error) {
	switch network {
	case "sctp", "sctp4", "sctp6":
		if l, ok, err := listenSCTP(network, address); ok {
			return l, err
		}
	}
	var lc mapping.ListenConfig
	return lc.Listen(ctx, network, address)
}

// Serve accepts connections on l and serves each until Close. It always
// returns a non-nil error; after Close it is ErrRegistrarClosed. With
// Config.Announce set, the first Serve starts the announces, and fails if
// the multicast group cannot be used. With ENRP peers configured, Serve
// first waits for the mentor's handlespace (see ENRPConfig.MentorWait).
func (r *Registrar) Serve(l mapping.Listener) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		l.Close()
		return ErrRegistrarClosed
	}
	r.listeners[l] = struct{}{}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.listeners, l)
		r.mu.Unlock()
	}()
	if err := r.startENRP(); err != nil {
		l.Close()
		return err
	}
	if !r.enrp.awaitReady() {
		l.Close()
		return ErrRegistrarClosed
	}
	if err := r.startAnnouncing(); err != nil {
		l.Close()
		return err
	}
	if ok, err := r.serveOwn(l); ok {
		if r.isClosed() {
			return ErrRegistrarClosed
		}
		return err
	}

	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if r.isClosed() {
				return ErrRegistrarClosed
			}
			if !isTemporary(err) {
				return err
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			r.cfg.Logger.Warn("accept failed; retrying", "err", err, "delay", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		r.ServeConn(c)
	}
}

// isTemporary reports whether an accept error is worth retrying (out of
// file descriptors, a connection reset before accept and the like).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// ServeConn serves ASAP on one connection in new goroutines and returns at
// once. The registrar closes c when the peer goes away or on Close.
func (r *Registrar) ServeConn(c mapping.Conn) {
	if ft, ok := c.(interface{ SetFrameTimeout(time.Duration) }); ok {
		ft.SetFrameTimeout(r.cfg.FrameTimeout)
	}
	pc := newPeerConn(r, c)
	r.mu.Lock()
	if r.closed || !r.admitLocked(pc) {
		r.mu.Unlock()
		c.Close()
		return
	}
	r.wg.Add(2)
	r.mu.Unlock()
	go pc.writeLoop()
	go pc.readLoop()
}

func (r *Registrar) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// Close stops the registrar: it closes its listeners and connections and
// waits for its goroutines. Pool elements see their registrar connection
// close and hunt for another registrar.
func (r *Registrar) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.done)
	for l := range r.listeners {
		l.Close()
	}
	r.closeAnnouncerLocked()
	conns := make([]*peerConn, 0, len(r.conns))
	for pc := range r.conns {
		conns = append(conns, pc)
	}
	r.mu.Unlock()
	for _, pc := range conns {
		pc.close()
	}
	r.wg.Wait()
	return nil
}
