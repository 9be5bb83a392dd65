// Package peer is the ENRP (RFC 5353) side of a registrar as a pure core:
// ENRP messages and timer events go in, with the time passed in; the
// messages to send come out, and Deadline says when to call Tick next. It
// keeps the peer table (presence heartbeats carrying the ownership
// checksum, MAX-TIME-LAST-HEARD probes, MAX-TIME-NO-RESPONSE), answers and
// sends list and handle table requests (in chunks with the M flag),
// replicates the registrar's own pool elements with handle updates, audits
// the peers' checksums and resynchronises on a mismatch, and takes over the
// pool elements of a peer that dies (INIT_TAKEOVER, acknowledgements, the
// lower server identifier winning a tie as in rsplib, TAKEOVER_SERVER).
//
// A Core works on the registrar's handlespace and, like it, is not safe for
// concurrent use: the registrar calls it under the lock that guards both.
// It imports neither net nor os.
package peer

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/enrp"
	"github.com/rsp-go/rsp/handlespace"
)

// Defaults of Config. The timers are faster than rsplib's (2.4 s
// heartbeat, 5 s max-time-last-heard, 5 s max-time-no-response, 5 s
// takeover expiry) and still work with it: an rsplib peer is probed when
// its heartbeats are further apart than MaxTimeLastHeard, and it answers
// the probe.
const (
	DefaultHeartbeatInterval      = time.Second
	DefaultMaxTimeLastHeard       = 2 * time.Second
	DefaultMaxTimeNoResponse      = time.Second
	DefaultTakeoverExpiry         = 2 * time.Second
	DefaultMaxElementsPerResponse = 128
	DefaultMaxPeers               = 64
	DefaultSessionTimeout         = 30 * time.Second
	DefaultMaxLife                = time.Hour
	DefaultAuditMismatches        = 2
)

// Errors of Receive. The registrar counts them per connection and drops a
// connection that sends too many.
var (
	// ErrBadMessage: the bytes are no valid ENRP message.
	ErrBadMessage = errors.New("peer: malformed ENRP message")
	// ErrBadSender: the sender's identifier is 0 or the registrar's own.
	ErrBadSender = errors.New("peer: bad sender identifier")
	// ErrTooManyPeers: a new peer over Config.MaxPeers.
	ErrTooManyPeers = errors.New("peer: too many peers")
	// ErrFlood: the peer sends faster than Config.MaxMessageRate.
	ErrFlood = errors.New("peer: message rate over the limit")
	// ErrClaim: the peer claims a pool element it cannot own.
	ErrClaim = errors.New("peer: pool element claimed by a server that is not its home")
)

// Config configures a Core. Zero values mean the defaults.
type Config struct {
	// ID is the registrar's server identifier (not zero).
	ID asap.ServerID
	// Info is the registrar's server information, sent in presences; nil
	// sends none (an rsplib peer then cannot answer point to point).
	Info *asap.ServerInformation

	// HeartbeatInterval is PEER-HEARTBEAT-CYCLE: how often a presence goes
	// to every peer. A peer silent for MaxTimeLastHeard is probed with a
	// presence asking for a reply; one that does not answer within
	// MaxTimeNoResponse is taken over. TakeoverExpiry is how long a
	// takeover waits for the acknowledgements before it asks again (a
	// peer that has died since is no longer waited for).
	HeartbeatInterval time.Duration
	MaxTimeLastHeard  time.Duration
	MaxTimeNoResponse time.Duration
	TakeoverExpiry    time.Duration

	// MaxElementsPerResponse is the most pool elements in one handle table
	// response (rsplib: 128); more are sent on request with the M flag.
	// SessionTimeout is how long such a chunked answer waits for the next
	// request.
	MaxElementsPerResponse int
	SessionTimeout         time.Duration

	// MaxPeers bounds the peer table; messages of further servers are
	// refused. MaxMessageRate bounds each peer's messages per second
	// (zero: no limit); messages over it are dropped, and the audit
	// repairs what they would have changed.
	MaxPeers       int
	MaxMessageRate float64

	// MinLife and MaxLife clamp the registration life of pool elements
	// learnt from peers (an infinite life becomes MaxLife), so that an
	// element whose owner is gone expires.
	MinLife time.Duration
	MaxLife time.Duration

	// MentorWait is how long a new registrar waits for a mentor's
	// handlespace before it serves pool elements and users anyway (RFC
	// 5353 §3.2; see Ready): a registrar whose peers are all down still
	// starts. Zero: it serves at once.
	MentorWait time.Duration

	// ListInterval is how often each peer is asked for its peer list
	// (ENRP_LIST_REQUEST) after the request when it was first heard, so
	// that registrars that joined it later are found too (TakeDials).
	// Zero means 10 HeartbeatIntervals.
	ListInterval time.Duration

	// AuditMismatches is how many presences in a row must carry a
	// checksum different from the peer's elements here before the core
	// asks the peer for its own elements; 1 asks at the first, as rsplib
	// does. Handle updates in flight make single mismatches common.
	AuditMismatches int

	// Live reports whether a pool element is registered at this registrar
	// over a live ASAP connection; such an element keeps this registrar
	// as its home when a peer's handle table or takeover claims it, and
	// the claim is answered with a handle update. nil: none is.
	Live func(asap.PoolHandle, asap.PEID) bool
	// Disown is called when a peer's handle update takes a live element
	// (it registered there since): the registrar stops watching it. It
	// stays in the handlespace with its new home.
	Disown func(asap.PoolHandle, asap.PEID)
	// TookOver is called when this registrar has taken over target's pool
	// elements: it is now their home and should tell them so with
	// home-flagged keep-alives.
	TookOver func(target asap.ServerID, pes []Key)

	// Logger receives the core's logs; nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.HeartbeatInterval, DefaultHeartbeatInterval)
	def(&c.MaxTimeLastHeard, DefaultMaxTimeLastHeard)
	def(&c.MaxTimeNoResponse, DefaultMaxTimeNoResponse)
	def(&c.TakeoverExpiry, DefaultTakeoverExpiry)
	def(&c.SessionTimeout, DefaultSessionTimeout)
	def(&c.ListInterval, 10*c.HeartbeatInterval)
	def(&c.MaxLife, DefaultMaxLife)
	defInt(&c.MaxElementsPerResponse, DefaultMaxElementsPerResponse)
	defInt(&c.MaxPeers, DefaultMaxPeers)
	defInt(&c.AuditMismatches, DefaultAuditMismatches)
	if c.MinLife <= 0 {
		c.MinLife = time.Second
	}
	if c.Live == nil {
		c.Live = func(asap.PoolHandle, asap.PEID) bool { return false }
	}
	if c.Disown == nil {
		c.Disown = func(asap.PoolHandle, asap.PEID) {}
	}
	if c.TookOver == nil {
		c.TookOver = func(asap.ServerID, []Key) {}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Key names a pool element.
type Key struct {
	Handle asap.PoolHandle
	ID     asap.PEID
}

// Out is a message to send. Reply is set for an answer to the message
// being received: it goes back on the connection that one came on. Else To
// names the peer, or is 0 for a group-cast to every peer.
type Out struct {
	To    asap.ServerID
	Reply bool
	Msg   enrp.Message
}

// Stats counts what the core did.
type Stats struct {
	Takeovers      int // peers this registrar took over
	TakenOver      int // peers another registrar took over
	Syncs          int // handle table synchronisations completed
	BadMessages    int
	Floods         int // messages dropped over the rate limit
	Claims         int // pool elements refused for their home
	Refused        int // peers refused over MaxPeers
	HandleRequests int // handle table requests answered
}

// Core is the ENRP state of one registrar.
type Core struct {
	cfg   Config
	hs    *handlespace.Handlespace
	peers map[asap.ServerID]*peerState
	out   []Out

	started       bool
	startedAt     time.Time
	waiting       bool // for the mentor, until MentorWait from startedAt
	nextHeartbeat time.Time
	mentor        asap.ServerID // the peer the whole handlespace came from
	synced        bool
	sessions      map[asap.ServerID]*session
	stats         Stats
	dials         []asap.ServerInformation
	dialing       map[asap.ServerID]time.Time // dials asked for, by when they were
}

type peerState struct {
	id        asap.ServerID
	info      *asap.ServerInformation
	lastHeard time.Time
	probeAt   time.Time // when a reply-required presence went out; zero: none
	takeover  *takeover
	takenBy   asap.ServerID // another peer's takeover of this one that we acknowledged
	takenAt   time.Time
	sync      *syncState // our handle table request to it
	retryAt   time.Time  // when to ask again after a rejected request
	retryOwn  bool
	mismatch  int
	bucket    bucket
	listAt    time.Time // when to ask it for its peer list again
}

type takeover struct {
	started time.Time
	acks    map[asap.ServerID]bool
}

type syncState struct {
	own  bool
	sent time.Time
	seen map[Key]struct{}
}

// session is a chunked handle table response in progress. It holds no
// copy of the handlespace, only the pool handles as the first request
// found them and the identifiers of the pool it is in (the registrar's
// lock, held while a chunk is made, is held for a chunk and a pool's
// identifiers, not for the whole handlespace); an element gone since is
// skipped, and one registered since in a pool not yet reached is sent
// too (handle updates and the audit see to the rest).
type session struct {
	own     bool
	pools   []asap.PoolHandle
	pool    int         // index in pools of the pool being sent; -1 before the first
	ids     []asap.PEID // its elements' identifiers
	pos     int         // the next of ids to send
	touched time.Time
}

// New returns a core for the registrar cfg.ID over hs.
func New(cfg Config, hs *handlespace.Handlespace) *Core {
	return &Core{
		cfg:      cfg.withDefaults(),
		hs:       hs,
		peers:    make(map[asap.ServerID]*peerState),
		sessions: make(map[asap.ServerID]*session),
		dialing:  make(map[asap.ServerID]time.Time),
	}
}

// TakeDials returns the registrars learnt from peer lists that the
// registrar should connect to, and forgets them. Each is asked for once;
// it is asked for again when a later peer list still names it and it has
// not become a peer within MaxTimeLastHeard.
func (c *Core) TakeDials() []asap.ServerInformation {
	d := c.dials
	c.dials = nil
	return d
}

// ID returns the registrar's server identifier.
func (c *Core) ID() asap.ServerID { return c.cfg.ID }

// SetInfo sets the server information sent in presences.
func (c *Core) SetInfo(info *asap.ServerInformation) { c.cfg.Info = info }

// Stats returns the counters.
func (c *Core) Stats() Stats { return c.stats }

// Peers returns the identifiers of the peers in the table, sorted.
func (c *Core) Peers() []asap.ServerID {
	ids := make([]asap.ServerID, 0, len(c.peers))
	for id := range c.peers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Synced reports whether the handlespace came from a mentor, or there was
// none to come from.
func (c *Core) Synced() bool { return c.synced || c.mentor == 0 }

// TakeOut returns the messages to send and forgets them.
func (c *Core) TakeOut() []Out {
	o := c.out
	c.out = nil
	return o
}

func (c *Core) send(to asap.ServerID, m enrp.Message) {
	c.out = append(c.out, Out{To: to, Msg: m})
}

func (c *Core) reply(to asap.ServerID, m enrp.Message) {
	c.out = append(c.out, Out{To: to, Reply: true, Msg: m})
}

func (c *Core) hdr(to asap.ServerID) enrp.Header { return enrp.Header{Sender: c.cfg.ID, Receiver: to} }

// Presence returns a presence of this registrar, with its checksum and
// information, addressed to to (0: everyone).
func (c *Core) Presence(to asap.ServerID, replyRequired bool) *enrp.Presence {
	return &enrp.Presence{Header: c.hdr(to), ReplyRequired: replyRequired, Checksum: c.hs.Checksum(c.cfg.ID), Info: c.cfg.Info}
}

// Registered tells the peers that pe, of which this registrar is home,
// registered or re-registered.
func (c *Core) Registered(handle asap.PoolHandle, pe *asap.PoolElement) {
	if len(c.peers) == 0 {
		return // a new peer asks for the table
	}
	c.send(0, &enrp.HandleUpdate{Header: c.hdr(0), Action: enrp.AddPE, Handle: handle, PE: *pe})
}

// Removed tells the peers that pe, of which this registrar was home, is
// gone (deregistered, expired, unreachable).
func (c *Core) Removed(handle asap.PoolHandle, pe *asap.PoolElement) {
	if len(c.peers) == 0 {
		return
	}
	c.send(0, &enrp.HandleUpdate{Header: c.hdr(0), Action: enrp.DelPE, Handle: handle, PE: *pe})
}

// Start begins at now: the first presence goes out at once.
func (c *Core) Start(now time.Time) {
	c.started = true
	c.startedAt = now
	c.waiting = c.cfg.MentorWait > 0 && !c.synced
	c.nextHeartbeat = now
}

// Ready reports whether the registrar may serve pool elements and users:
// its mentor's handlespace has arrived, or MentorWait has passed since
// Start (then it serves what it has; the audit brings the rest), or it
// was not to wait. Deadline includes the end of the wait.
func (c *Core) Ready(now time.Time) bool {
	if c.waiting && (c.synced || !now.Before(c.startedAt.Add(c.cfg.MentorWait))) {
		c.waiting = false
		if !c.synced {
			c.cfg.Logger.Warn("no mentor's handlespace within the wait; serving with what is here", "wait", c.cfg.MentorWait, "elements", c.hs.Len())
		}
	}
	return c.started && !c.waiting
}

// Receive handles the bytes of one ENRP message received at now. An error
// says the message was refused (the registrar counts them); answers, such
// as ENRP_ERROR for a malformed message, are among TakeOut's.
func (c *Core) Receive(now time.Time, b []byte) error {
	m, err := enrp.Unmarshal(b)
	if err != nil {
		c.badMessage(b, err)
		if m == nil {
			return fmt.Errorf("%w: %w", ErrBadMessage, err)
		}
	}
	return c.Handle(now, m)
}

// badMessage answers a message that did not decode with ENRP_ERROR, when
// its header names a sender.
func (c *Core) badMessage(b []byte, err error) {
	c.stats.BadMessages++
	if len(b) < 12 {
		return
	}
	sender := asap.ServerID(uint32(b[4])<<24 | uint32(b[5])<<16 | uint32(b[6])<<8 | uint32(b[7]))
	if sender == 0 || sender == c.cfg.ID {
		return
	}
	var um *enrp.UnrecognizedMessageError
	var up *asap.UnrecognizedParamError
	var cause asap.Cause
	switch {
	case errors.As(err, &um):
		if !um.Report {
			return
		}
		cause = asap.Cause{Code: asap.CauseUnrecognizedMessage, Info: clip(b)}
	case errors.As(err, &up):
		if !up.Report {
			return
		}
		var info []byte
		if len(up.Params) > 0 {
			info = clip(up.Params[0])
		}
		cause = asap.Cause{Code: asap.CauseUnrecognizedParameter, Info: info}
	default:
		cause = asap.Cause{Code: asap.CauseInvalidValues, Info: clip(b)}
	}
	c.reply(sender, &enrp.Error{Header: c.hdr(sender), Causes: []asap.Cause{cause}})
}

// clip copies at most 1 KiB of b for an error cause.
func clip(b []byte) []byte { return append([]byte(nil), b[:min(len(b), 1024)]...) }

func header(m enrp.Message) enrp.Header {
	switch m := m.(type) {
	case *enrp.Presence:
		return m.Header
	case *enrp.HandleTableRequest:
		return m.Header
	case *enrp.HandleTableResponse:
		return m.Header
	case *enrp.HandleUpdate:
		return m.Header
	case *enrp.ListRequest:
		return m.Header
	case *enrp.ListResponse:
		return m.Header
	case *enrp.InitTakeover:
		return m.Header
	case *enrp.InitTakeoverAck:
		return m.Header
	case *enrp.TakeoverServer:
		return m.Header
	case *enrp.Error:
		return m.Header
	}
	return enrp.Header{}
}

// Handle handles one decoded ENRP message (a pointer to one of package
// enrp's types) received at now.
func (c *Core) Handle(now time.Time, m enrp.Message) error {
	h := header(m)
	if h.Sender == 0 || h.Sender == c.cfg.ID {
		c.stats.BadMessages++
		return ErrBadSender
	}
	if h.Receiver != 0 && h.Receiver != c.cfg.ID {
		return nil // meant for another server
	}
	p := c.peers[h.Sender]
	if p == nil {
		if len(c.peers) >= c.cfg.MaxPeers {
			c.stats.Refused++
			return ErrTooManyPeers
		}
		p = &peerState{id: h.Sender, bucket: newBucket(c.cfg.MaxMessageRate, now)}
		c.peers[h.Sender] = p
		c.cfg.Logger.Info("new ENRP peer", "peer", h.Sender)
		delete(c.dialing, h.Sender)
		// Its peer list names the registrars to connect to as well.
		c.askList(p, now)
		if pr, ok := m.(*enrp.Presence); !ok || pr.Info == nil {
			c.reply(h.Sender, c.Presence(h.Sender, true))
		}
		// The first peer is the mentor, for the whole handlespace; the
		// others are asked for their own elements.
		if c.mentor == 0 && !c.synced {
			c.mentor = p.id
			c.requestTable(p, now, false)
		} else {
			c.requestTable(p, now, true)
		}
	} else if !p.bucket.allow(now) {
		c.stats.Floods++
		return ErrFlood
	}
	p.lastHeard = now
	p.probeAt = time.Time{}
	p.takenBy = 0
	if p.takeover != nil {
		c.cfg.Logger.Info("takeover target is alive; takeover cancelled", "peer", p.id)
		p.takeover = nil
	}

	switch m := m.(type) {
	case *enrp.Presence:
		c.presence(now, p, m)
	case *enrp.HandleTableRequest:
		c.tableRequest(now, p, m)
	case *enrp.HandleTableResponse:
		return c.tableResponse(now, p, m)
	case *enrp.HandleUpdate:
		return c.update(now, p, m)
	case *enrp.ListRequest:
		c.listRequest(p)
	case *enrp.ListResponse:
		c.listResponse(now, m)
	case *enrp.InitTakeover:
		c.initTakeover(now, p, m)
	case *enrp.InitTakeoverAck:
		if tp := c.peers[m.Target]; tp != nil && tp.takeover != nil {
			tp.takeover.acks[p.id] = true
			c.checkTakeover(now, tp)
		}
	case *enrp.TakeoverServer:
		c.takeoverServer(now, p, m)
	case *enrp.Error:
		c.cfg.Logger.Info("peer reported an ENRP error", "peer", p.id, "causes", m.Causes)
	}
	return nil
}

func (c *Core) presence(now time.Time, p *peerState, m *enrp.Presence) {
	if m.Info != nil {
		info := *m.Info
		p.info = &info
	}
	if m.ReplyRequired {
		c.reply(p.id, c.Presence(p.id, false))
	}
	if m.Checksum == c.hs.Checksum(p.id) {
		p.mismatch = 0
		return
	}
	p.mismatch++
	if p.mismatch >= c.cfg.AuditMismatches && p.sync == nil {
		c.cfg.Logger.Info("peer's checksum differs; resynchronising", "peer", p.id, "theirs", m.Checksum, "ours", c.hs.Checksum(p.id))
		p.mismatch = 0
		c.requestTable(p, now, true)
	}
}

// requestTable asks p for its handle table: its own elements, or all.
func (c *Core) requestTable(p *peerState, now time.Time, own bool) {
	p.sync = &syncState{own: own, sent: now, seen: make(map[Key]struct{})}
	p.retryAt = time.Time{}
	c.send(p.id, &enrp.HandleTableRequest{Header: c.hdr(p.id), OwnChildrenOnly: own})
}

func (c *Core) tableRequest(now time.Time, p *peerState, m *enrp.HandleTableRequest) {
	c.stats.HandleRequests++
	s := c.sessions[p.id]
	if s == nil || s.own != m.OwnChildrenOnly || now.Sub(s.touched) > c.cfg.SessionTimeout {
		s = &session{own: m.OwnChildrenOnly, pool: -1}
		for handle := range c.hs.Pools() {
			s.pools = append(s.pools, handle)
		}
		c.sessions[p.id] = s
	}
	s.touched = now
	resp := &enrp.HandleTableResponse{Header: c.hdr(p.id)}
	size := 0
	for n := 0; n < c.cfg.MaxElementsPerResponse; {
		if s.pos == len(s.ids) {
			if !s.nextPool(c.hs) {
				break
			}
			continue
		}
		handle := s.pools[s.pool]
		pe, ok := c.hs.Lookup(handle, s.ids[s.pos])
		if !ok || s.own && pe.Home != c.cfg.ID {
			s.pos++ // gone since, or not ours
			continue
		}
		sz := peSize(pe)
		if n > 0 && size+sz > maxResponseBytes {
			break
		}
		size += sz
		if k := len(resp.Pools); k == 0 || resp.Pools[k-1].Handle != handle {
			resp.Pools = append(resp.Pools, enrp.PoolEntry{Handle: handle})
			size += 4 + len(handle) + 3
		}
		last := &resp.Pools[len(resp.Pools)-1]
		last.PEs = append(last.PEs, *pe)
		s.pos++
		n++
	}
	resp.More = s.pos < len(s.ids) || s.pool+1 < len(s.pools)
	if !resp.More {
		delete(c.sessions, p.id)
	}
	c.reply(p.id, resp)
}

// nextPool moves s to the next pool that is still there, taking its
// elements' identifiers; false at the end.
func (s *session) nextPool(hs *handlespace.Handlespace) bool {
	for s.pool+1 < len(s.pools) {
		s.pool++
		s.ids, s.pos = s.ids[:0], 0
		for pe := range hs.Elements(s.pools[s.pool]) {
			s.ids = append(s.ids, pe.ID)
		}
		if len(s.ids) > 0 {
			return true
		}
	}
	return false
}

// maxResponseBytes keeps a handle table response well inside an ENRP
// message's 64 KiB.
const maxResponseBytes = 60000

// peSize is an upper bound of a pool element parameter's encoded size.
func peSize(pe *asap.PoolElement) int {
	n := 64 + 20*len(pe.UserTransport.Addrs)
	if pe.ASAPTransport != nil {
		n += 16 + 20*len(pe.ASAPTransport.Addrs)
	}
	return n
}

func (c *Core) tableResponse(now time.Time, p *peerState, m *enrp.HandleTableResponse) error {
	st := p.sync
	if st == nil {
		return nil // not asked for
	}
	if m.Reject {
		c.cfg.Logger.Info("peer rejected the handle table request; asking again later", "peer", p.id)
		p.sync = nil
		p.retryAt = now.Add(c.cfg.MaxTimeNoResponse)
		p.retryOwn = st.own
		return nil
	}
	var err error
	for i := range m.Pools {
		pool := &m.Pools[i]
		for j := range pool.PEs {
			pe := pool.PEs[j]
			if st.own && pe.Home != p.id {
				c.stats.Claims++
				err = ErrClaim
				continue
			}
			if e := c.addRemote(now, p, pool.Handle, pe, false); e != nil && err == nil {
				err = e
			}
			if st.own {
				st.seen[Key{pool.Handle, pe.ID}] = struct{}{}
			}
		}
	}
	if m.More {
		st.sent = now
		c.send(p.id, &enrp.HandleTableRequest{Header: c.hdr(p.id), OwnChildrenOnly: st.own})
		return err
	}
	p.sync = nil
	c.stats.Syncs++
	if st.own {
		// What the peer no longer owns goes.
		var gone []Key
		for handle, pe := range c.hs.OwnedBy(p.id) {
			if _, ok := st.seen[Key{handle, pe.ID}]; !ok {
				gone = append(gone, Key{handle, pe.ID})
			}
		}
		for _, k := range gone {
			c.hs.Deregister(k.Handle, k.ID)
		}
	} else if p.id == c.mentor {
		c.synced = true
		c.cfg.Logger.Info("handlespace received from mentor", "peer", p.id, "elements", c.hs.Len())
	}
	return err
}

// addRemote puts a pool element that peer p announced into the handlespace.
// fromUpdate tells a handle update (the element registered at p) from a
// handle table entry (what p holds).
func (c *Core) addRemote(now time.Time, p *peerState, handle asap.PoolHandle, pe asap.PoolElement, fromUpdate bool) error {
	if pe.Home == 0 || pe.ID == 0 || !pe.Policy.Type.Valid() || len(handle) == 0 {
		c.stats.BadMessages++
		return ErrBadMessage
	}
	if pe.Home == c.cfg.ID {
		// A peer cannot make us the home of something: ours are ours.
		return nil
	}
	if cur, ok := c.hs.Lookup(handle, pe.ID); ok && cur.Home == c.cfg.ID && c.cfg.Live(handle, pe.ID) {
		if !fromUpdate {
			// Registered here and alive: this registrar stays home, and
			// says so.
			c.send(0, &enrp.HandleUpdate{Header: c.hdr(0), Action: enrp.AddPE, Handle: handle, PE: *cur})
			return nil
		}
		c.cfg.Disown(handle, pe.ID)
	}
	switch {
	case pe.Life < 0 || pe.Life > c.cfg.MaxLife:
		pe.Life = c.cfg.MaxLife
	case pe.Life < c.cfg.MinLife:
		pe.Life = c.cfg.MinLife
	}
	if _, err := c.hs.Register(handle, pe, now); err != nil {
		c.cfg.Logger.Info("pool element from peer refused", "peer", p.id, "pool", handle, "pe", pe.ID, "err", err)
		return err
	}
	return nil
}

func (c *Core) update(now time.Time, p *peerState, m *enrp.HandleUpdate) error {
	if m.PE.Home != p.id {
		c.stats.Claims++
		c.reply(p.id, &enrp.Error{Header: c.hdr(p.id), Causes: []asap.Cause{{Code: asap.CauseRejectedSecurity}}})
		return ErrClaim
	}
	if m.Action == enrp.DelPE {
		if cur, ok := c.hs.Lookup(m.Handle, m.PE.ID); ok && cur.Home == p.id {
			c.hs.Deregister(m.Handle, m.PE.ID)
		}
		return nil
	}
	return c.addRemote(now, p, m.Handle, m.PE, true)
}

func (c *Core) listRequest(p *peerState) {
	resp := &enrp.ListResponse{Header: c.hdr(p.id)}
	if c.cfg.Info != nil {
		resp.Servers = append(resp.Servers, *c.cfg.Info)
	}
	for _, id := range c.Peers() {
		if q := c.peers[id]; q.info != nil && id != p.id {
			resp.Servers = append(resp.Servers, *q.info)
		}
	}
	c.reply(p.id, resp)
}

// askList asks p for its peer list, and again after ListInterval.
func (c *Core) askList(p *peerState, now time.Time) {
	p.listAt = now.Add(c.cfg.ListInterval)
	c.send(p.id, &enrp.ListRequest{Header: c.hdr(p.id)})
}

// listResponse asks to connect to the servers of a peer list that are
// not yet peers, as far as MaxPeers allows, counting the connections
// already asked for.
func (c *Core) listResponse(now time.Time, m *enrp.ListResponse) {
	c.expireDials(now)
	for _, si := range m.Servers {
		c.learn(now, si, "peer list")
	}
}

// Discovered handles a presence heard by multicast (RFC 5353 §3.1:
// servers may announce their presence to a multicast group) at now from
// source address src: a registrar that is not yet a peer is to be dialed
// (TakeDials) at src and the port its server information names, as rsplib
// does, within MaxPeers. The registrar's own presences, and those without
// a port, are ignored. It reports whether the presence asks for a dial.
func (c *Core) Discovered(now time.Time, m *enrp.Presence, src netip.Addr) bool {
	src = src.Unmap()
	if m.Info == nil || !src.IsValid() || src.IsUnspecified() || src.IsMulticast() {
		return false
	}
	si := *m.Info
	si.Server = m.Sender
	si.Transport.Addrs = []netip.Addr{src}
	c.expireDials(now)
	return c.learn(now, si, "multicast presence")
}

// expireDials forgets the dials asked for MaxTimeLastHeard ago, and those
// that became peers, so that a server still named is dialed again.
func (c *Core) expireDials(now time.Time) {
	for id, at := range c.dialing {
		if now.Sub(at) >= c.cfg.MaxTimeLastHeard || c.peers[id] != nil {
			delete(c.dialing, id)
		}
	}
}

// learn asks to connect to si, a server named by a peer list or heard by
// multicast, unless it is this registrar, a peer, already being dialed,
// has no address, or MaxPeers (counting the dials in flight) leaves no
// room.
func (c *Core) learn(now time.Time, si asap.ServerInformation, how string) bool {
	if si.Server == 0 || si.Server == c.cfg.ID || c.peers[si.Server] != nil || len(si.Transport.Addrs) == 0 || si.Transport.Port == 0 {
		return false
	}
	if _, ok := c.dialing[si.Server]; ok {
		return false
	}
	if len(c.peers)+len(c.dialing) >= c.cfg.MaxPeers {
		c.cfg.Logger.Debug("new server over the peer limit; not connecting", "peer", si.Server, "from", how)
		return false
	}
	c.cfg.Logger.Info("new server; connecting", "peer", si.Server, "from", how)
	c.dialing[si.Server] = now
	si.Transport.Addrs = slices.Clone(si.Transport.Addrs)
	c.dials = append(c.dials, si)
	return true
}

func (c *Core) initTakeover(now time.Time, p *peerState, m *enrp.InitTakeover) {
	if m.Target == c.cfg.ID {
		c.cfg.Logger.Warn("peer starts to take this registrar over; answering with presences", "peer", p.id)
		c.send(0, c.Presence(0, false))
		return
	}
	tp := c.peers[m.Target]
	if tp != nil && tp.takeover != nil {
		if p.id > c.cfg.ID {
			return // ours goes on: the lower identifier wins
		}
		c.cfg.Logger.Info("peer with a lower identifier takes over the same target; ours aborted", "peer", p.id, "target", m.Target)
		tp.takeover = nil
	}
	if tp != nil {
		tp.takenBy, tp.takenAt = p.id, now
	}
	c.reply(p.id, &enrp.InitTakeoverAck{Header: c.hdr(p.id), Target: m.Target})
}

// takeoverServer handles TAKEOVER_SERVER: p is the target's elements'
// new home.
func (c *Core) takeoverServer(now time.Time, p *peerState, m *enrp.TakeoverServer) {
	if m.Target == c.cfg.ID {
		c.cfg.Logger.Warn("peer took this registrar over; its audit will return our elements", "peer", p.id)
		c.send(0, c.Presence(0, false))
		return
	}
	if m.Target == p.id {
		return
	}
	n := c.hs.TakeOver(m.Target, p.id)
	if _, ok := c.peers[m.Target]; ok {
		c.forget(now, m.Target)
		c.stats.TakenOver++
	}
	c.cfg.Logger.Info("peer took over a registrar", "peer", p.id, "target", m.Target, "elements", n)
}

// forget removes peer id from the table. A mentor that goes before its
// handlespace has arrived hands its role to the first other peer that
// answers, which is asked for the whole handlespace (RFC 5353 §3.2: the
// new registrar keeps hunting for a mentor); with none, the next new peer
// is the mentor. Without this the registrar would wait MentorWait in vain.
func (c *Core) forget(now time.Time, id asap.ServerID) {
	delete(c.peers, id)
	delete(c.sessions, id)
	if id != c.mentor || c.synced {
		return
	}
	c.mentor = 0
	for _, next := range c.Peers() {
		p := c.peers[next]
		if p.takeover != nil || p.takenBy != 0 || !p.probeAt.IsZero() {
			continue // not answering either
		}
		c.mentor = next
		c.cfg.Logger.Info("mentor gone before its handlespace arrived; asking another peer", "gone", id, "mentor", next)
		c.requestTable(p, now, false)
		return
	}
}

// owns reports whether id is home of any pool element here.
func (c *Core) owns(id asap.ServerID) bool {
	for range c.hs.OwnedBy(id) {
		return true
	}
	return false
}

// suspect reports whether peer q itself is not answering (probed in vain),
// so that a takeover does not wait for its acknowledgement.
func (c *Core) suspect(now time.Time, q *peerState) bool {
	return q.takeover != nil || q.takenBy != 0 || !q.probeAt.IsZero() && now.Sub(q.probeAt) >= c.cfg.MaxTimeNoResponse
}

func (c *Core) checkTakeover(now time.Time, tp *peerState) {
	for id, q := range c.peers {
		if id != tp.id && !tp.takeover.acks[id] && !c.suspect(now, q) {
			return
		}
	}
	c.finishTakeover(now, tp)
}

func (c *Core) finishTakeover(now time.Time, tp *peerState) {
	c.send(0, &enrp.TakeoverServer{Header: c.hdr(0), Target: tp.id})
	var keys []Key
	for handle, pe := range c.hs.OwnedBy(tp.id) {
		keys = append(keys, Key{handle, pe.ID})
	}
	c.hs.TakeOver(tp.id, c.cfg.ID)
	c.forget(now, tp.id)
	c.stats.Takeovers++
	c.cfg.Logger.Warn("took over a registrar", "peer", tp.id, "elements", len(keys))
	c.cfg.TookOver(tp.id, keys)
}

// Tick runs the timers due at now.
func (c *Core) Tick(now time.Time) {
	if !c.started {
		c.Start(now)
	}
	c.Ready(now) // ends the mentor wait when it is over
	if !now.Before(c.nextHeartbeat) {
		c.send(0, c.Presence(0, false))
		c.nextHeartbeat = now.Add(c.cfg.HeartbeatInterval)
	}
	for _, id := range c.Peers() {
		p := c.peers[id]
		if p == nil {
			continue // taken over during this tick
		}
		if st := p.sync; st != nil && now.Sub(st.sent) >= c.cfg.MaxTimeNoResponse {
			// Asked in vain; ask again (the answer continues where it was).
			st.sent = now
			c.send(p.id, &enrp.HandleTableRequest{Header: c.hdr(p.id), OwnChildrenOnly: st.own})
		}
		if !p.retryAt.IsZero() && !now.Before(p.retryAt) {
			c.requestTable(p, now, p.retryOwn)
		}
		if !now.Before(p.listAt) {
			c.askList(p, now)
		}
		switch {
		case p.takenBy != 0:
			if now.Sub(p.takenAt) >= 2*c.cfg.TakeoverExpiry {
				p.takenBy = 0 // the other's takeover did not complete
				p.probeAt = time.Time{}
				p.lastHeard = now.Add(-c.cfg.MaxTimeLastHeard)
			}
		case p.takeover != nil:
			if now.Sub(p.takeover.started) >= c.cfg.TakeoverExpiry {
				p.takeover.started = now
				c.send(0, &enrp.InitTakeover{Header: c.hdr(0), Target: p.id})
				c.checkTakeover(now, p)
			}
		case p.probeAt.IsZero():
			if now.Sub(p.lastHeard) >= c.cfg.MaxTimeLastHeard {
				p.probeAt = now
				c.send(p.id, c.Presence(p.id, true))
			}
		case now.Sub(p.probeAt) >= c.cfg.MaxTimeNoResponse && !c.owns(p.id):
			// Nothing to take over (a tool such as hsdump that came and
			// went, or a registrar without elements): as rsplib does, the
			// peer is only forgotten.
			c.cfg.Logger.Info("peer does not answer and owns no pool elements; removed", "peer", p.id)
			c.forget(now, p.id)
		case now.Sub(p.probeAt) >= c.cfg.MaxTimeNoResponse:
			c.cfg.Logger.Warn("peer does not answer; taking it over", "peer", p.id)
			p.takeover = &takeover{started: now, acks: make(map[asap.ServerID]bool)}
			c.send(0, &enrp.InitTakeover{Header: c.hdr(0), Target: p.id})
			c.checkTakeover(now, p)
		}
	}
	for id, s := range c.sessions {
		if now.Sub(s.touched) > c.cfg.SessionTimeout {
			delete(c.sessions, id)
		}
	}
}

// Deadline returns when Tick must run next.
func (c *Core) Deadline() time.Time {
	d := c.nextHeartbeat
	earlier := func(t time.Time) {
		if !t.IsZero() && t.Before(d) {
			d = t
		}
	}
	if c.waiting {
		earlier(c.startedAt.Add(c.cfg.MentorWait))
	}
	for _, p := range c.peers {
		switch {
		case p.takenBy != 0:
			earlier(p.takenAt.Add(2 * c.cfg.TakeoverExpiry))
		case p.takeover != nil:
			earlier(p.takeover.started.Add(c.cfg.TakeoverExpiry))
		case p.probeAt.IsZero():
			earlier(p.lastHeard.Add(c.cfg.MaxTimeLastHeard))
		default:
			earlier(p.probeAt.Add(c.cfg.MaxTimeNoResponse))
		}
		if p.sync != nil {
			earlier(p.sync.sent.Add(c.cfg.MaxTimeNoResponse))
		}
		earlier(p.retryAt)
		earlier(p.listAt)
	}
	return d
}

// bucket is a token bucket on the time passed in.
type bucket struct {
	rate   float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, now time.Time) bucket {
	return bucket{rate: rate, tokens: max(rate, 1), last: now}
}

func (b *bucket) allow(now time.Time) bool {
	if b.rate <= 0 {
		return true
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(max(b.rate, 1), b.tokens+dt*b.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
