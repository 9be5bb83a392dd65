// Package endpoint is the ASAP endpoint of pool elements and pool users
// (RFC 5352): it finds a registrar (the server hunt), registers pool
// elements and keeps them registered, answers the registrar's keep-alives,
// resolves pool handles with a cache, and reports unreachable pool
// elements.
//
// One Endpoint keeps one connection to its home registrar for all its
// registrations and resolutions; when that connection breaks, it hunts for
// a registrar again and registers its pool elements there.
//
// Over SCTP the endpoint also takes associations at the transport address
// its registrations name (the local port of its association to the
// registrar), as rsplib's pool elements do: a registrar of the pool that
// takes over the elements of a dead home registrar opens one there and
// sends a keep-alive with the H flag, and the endpoint answers it, makes
// that association its registrar connection and that registrar its home,
// without registering again and without a call of the application (RFC
// 5352 §3.4.2, RFC 5353 takeover). Over TCP (and TLS) no registrar can
// reach the endpoint: it moves home by the hunt and a re-registration once
// it notices that its registrar is gone.
package endpoint

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/policy"
)

// Errors of the endpoint.
var (
	// ErrNoRegistrar: no registrar of the list could be reached.
	ErrNoRegistrar = errors.New("endpoint: no registrar reachable")
	// ErrNoAnswer: the registrar did not answer a request in time, after
	// the retransmissions.
	ErrNoAnswer = errors.New("endpoint: no answer from the registrar")
	// ErrUnknownPool: the registrar knows no such pool.
	ErrUnknownPool = errors.New("endpoint: unknown pool handle")
	// ErrClosed: the endpoint or registration was closed.
	ErrClosed = errors.New("endpoint: closed")
)

// RegistrationError is a registration the registrar refused (R flag), with
// its error causes.
type RegistrationError struct {
	Handle asap.PoolHandle
	Causes []asap.Cause
}

func (e *RegistrationError) Error() string {
	var s []string
	for _, c := range e.Causes {
		switch c.Code {
		case asap.CauseInconsistentPolicy:
			if p, err := asap.ParsePolicy(c.Info); err == nil {
				s = append(s, fmt.Sprintf("%v (the pool's policy is %v)", c.Code, p))
				continue
			}
		case asap.CauseInconsistentTransport:
			if t, err := asap.ParseTransport(c.Info); err == nil {
				s = append(s, fmt.Sprintf("%v (the pool's transport is %v)", c.Code, t.Kind))
				continue
			}
		}
		s = append(s, c.Code.String())
	}
	return fmt.Sprintf("endpoint: registration in pool %q refused: %s", e.Handle, strings.Join(s, ", "))
}

// Has reports whether the refusal carries cause code c.
func (e *RegistrationError) Has(c asap.CauseCode) bool {
	for _, x := range e.Causes {
		if x.Code == c {
			return true
		}
	}
	return false
}

// EnvRegistrars is the environment variable that lists registrars for
// programs that configure none: comma-separated, each "tcp:HOST:PORT",
// "tls:HOST:PORT" (TCP with TLS), "sctp:HOST:PORT" or "HOST:PORT" (TCP).
const EnvRegistrars = "RSP_REGISTRARS"

// DefaultRegistrar is used when neither Config nor the environment names a
// registrar and announces are off.
const DefaultRegistrar = "tcp:127.0.0.1:3863"

// EnvAnnounce and EnvAnnounceInterface are the environment variables that
// turn on registrar announces for programs that configure none: the
// multicast group, such as "239.0.0.50:3863", and the interface's name.
const (
	EnvAnnounce          = "RSP_ANNOUNCE"
	EnvAnnounceInterface = "RSP_ANNOUNCE_INTERFACE"
)

// Defaults of Config, after rsplib's where the RFC's are impractical.
const (
	DefaultRequestTimeout       = 5 * time.Second
	DefaultMaxRequestRetransmit = 2
	DefaultConnectTimeout       = 5 * time.Second
	DefaultMaxConnectTimeout    = 60 * time.Second
	DefaultReregistration       = 30 * time.Second
	DefaultCacheLifetime        = time.Second
	DefaultAnnounceTimeout      = 5 * time.Second
)

// Config configures an Endpoint. The zero value works: registrars from the
// environment, rsplib's timers, a one-second resolution cache.
type Config struct {
	// Registrars to hunt among; empty means $RSP_REGISTRARS, or else
	// DefaultRegistrar.
	Registrars []string
	// RequestTimeout (T1) bounds the wait for each answer; a request is
	// sent at most 1 + MaxRequestRetransmit times. MaxRequestRetransmit 0
	// means DefaultMaxRequestRetransmit; a negative value, none: each
	// request is sent once.
	RequestTimeout       time.Duration
	MaxRequestRetransmit int
	// ConnectTimeout (T5) bounds each connection attempt of a hunt. Each
	// time it runs out, it doubles for the next attempt, up to
	// MaxConnectTimeout (the RFC's RETRAN-MAX; 0 means
	// DefaultMaxConnectTimeout), and it returns to ConnectTimeout once a
	// registrar answers (RFC 5352 §3.6).
	ConnectTimeout    time.Duration
	MaxConnectTimeout time.Duration
	// Reregistration is the re-registration period; a registration's life
	// defaults to three periods, as in rsplib.
	Reregistration time.Duration
	// CacheLifetime is how long a handle resolution stays fresh (the RFC's
	// stale_cache_value); negative means no caching.
	CacheLifetime time.Duration
	// ResolveItems is how many pool elements to ask for (0: the
	// registrar's choice; 0xFFFFFFFF: all).
	ResolveItems uint32
	// Dialer connects to a registrar, on the network of its address form
	// ("tcp", "tls", "sctp"...); nil means a mapping.Dialer with
	// TLSConfig.
	Dialer func(ctx context.Context, network, address string) (mapping.Conn, error)
	// TLSConfig, when set, makes every TCP connection to a registrar run
	// over TLS 1.3 with it: RootCAs to verify the registrar, and
	// Certificates for the registrar to know this endpoint by (mutual
	// TLS). Registrars named "tls:HOST:PORT" get TLS anyway, with the
	// system's roots when TLSConfig is nil. The registrar's certificate
	// must be valid for the host dialed (HOST of its address, or the IP
	// address of its announce), unless TLSConfig.ServerName names another.
	// A certificate that does not verify fails the connection, and the
	// hunt goes on to the next registrar. SCTP has no TLS: with TLSConfig set, "sctp:" registrars
	// are not dialed (mapping.ErrTLSOverSCTP), so that nothing meant for
	// TLS goes out in the clear. Ignored with Dialer set.
	TLSConfig *tls.Config
	// Announces, when set, is the UDP multicast group where registrars
	// announce themselves with ASAP_SERVER_ANNOUNCE, such as
	// "239.0.0.50:3863" (rsplib's) or "224.0.1.185:3863" (IANA's); empty
	// means $RSP_ANNOUNCE, or no announces. AnnounceInterface names the
	// interface to listen on (empty: $RSP_ANNOUNCE_INTERFACE, or the
	// system's choice). Every registrar heard there joins the hunt, ahead of
	// the configured ones, until AnnounceTimeout (T7) passes without
	// another announce from it. With announces on and no registrar
	// configured here or in the environment, the endpoint hunts among the
	// announced registrars only, waiting up to ConnectTimeout for one.
	Announces         string
	AnnounceInterface string
	AnnounceTimeout   time.Duration

	// Logger receives the endpoint's logs; nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Announces == "" {
		c.Announces = os.Getenv(EnvAnnounce)
		if c.AnnounceInterface == "" {
			c.AnnounceInterface = os.Getenv(EnvAnnounceInterface)
		}
	}
	if c.AnnounceTimeout <= 0 {
		c.AnnounceTimeout = DefaultAnnounceTimeout
	}
	if len(c.Registrars) == 0 {
		if env := os.Getenv(EnvRegistrars); env != "" {
			c.Registrars = strings.Split(env, ",")
		} else if c.Announces == "" {
			c.Registrars = []string{DefaultRegistrar}
		}
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	switch {
	case c.MaxRequestRetransmit == 0:
		c.MaxRequestRetransmit = DefaultMaxRequestRetransmit
	case c.MaxRequestRetransmit < 0:
		c.MaxRequestRetransmit = 0
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.MaxConnectTimeout <= 0 {
		c.MaxConnectTimeout = DefaultMaxConnectTimeout
	}
	c.MaxConnectTimeout = max(c.MaxConnectTimeout, c.ConnectTimeout)
	if c.Reregistration <= 0 {
		c.Reregistration = DefaultReregistration
	}
	if c.CacheLifetime == 0 {
		c.CacheLifetime = DefaultCacheLifetime
	}
	if c.Dialer == nil {
		d := mapping.Dialer{TLSConfig: c.TLSConfig}
		c.Dialer = d.DialContext
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// splitRegistrar parses "tcp:HOST:PORT", "tls:HOST:PORT", "sctp:HOST:PORT"
// or "HOST:PORT".
func splitRegistrar(s string) (network, address string) {
	network, address, _ = mapping.SplitAddress(s)
	return network, address
}

// Endpoint is an ASAP endpoint. It is safe for concurrent use.
type Endpoint struct {
	cfg Config

	mu        sync.Mutex
	sess      *session
	hunting   chan struct{} // closed when the running hunt ends
	t5        time.Duration // the hunt's connect timeout now; used by one hunt at a time
	regs      map[regKey]*Registration
	cache     map[asap.PoolHandle]*cacheEntry
	inflight  map[asap.PoolHandle]*resolveCall
	reported  map[regKey]time.Time
	annConn   *net.UDPConn         // the announce group's socket
	announced map[string]time.Time // registrars heard announcing, until when
	heard     chan struct{}        // closed and replaced when a new registrar is heard
	annErr    error                // why announces could not be heard
	closed    bool
	home      asap.ServerID
	accept    mapping.Listener      // takes registrars' associations over SCTP; nil otherwise
	acceptAt  string                // the address accept listens on
	cands     map[*session]struct{} // accepted associations that named no home yet
	done      chan struct{}
	kick      chan struct{}
	maintains sync.Once
	wg        sync.WaitGroup
}

type regKey struct {
	handle asap.PoolHandle
	id     asap.PEID
}

// New returns an endpoint configured by cfg. It connects to a registrar on
// first use.
func New(cfg Config) *Endpoint {
	ep := &Endpoint{
		cfg:       cfg.withDefaults(),
		regs:      make(map[regKey]*Registration),
		cache:     make(map[asap.PoolHandle]*cacheEntry),
		inflight:  make(map[asap.PoolHandle]*resolveCall),
		reported:  make(map[regKey]time.Time),
		cands:     make(map[*session]struct{}),
		announced: make(map[string]time.Time),
		heard:     make(chan struct{}),
		done:      make(chan struct{}),
		kick:      make(chan struct{}, 1),
	}
	ep.t5 = ep.cfg.ConnectTimeout
	ep.listenAnnounces()
	return ep
}

// Home returns the server identifier of the home registrar, once a
// keep-alive has told it; zero before that and after the connection to it
// ends, until a keep-alive names the next.
func (ep *Endpoint) Home() asap.ServerID {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return ep.home
}

// Close closes the registrar connection without deregistering, as a
// process that ends does; the registrar removes the pool elements when it
// notices. Use Registration.Close first to deregister.
func (ep *Endpoint) Close() error {
	ep.mu.Lock()
	if ep.closed {
		ep.mu.Unlock()
		return nil
	}
	ep.closed = true
	close(ep.done)
	s := ep.sess
	ep.sess = nil
	ann := ep.annConn
	acc := ep.accept
	ep.accept = nil
	cands := make([]*session, 0, len(ep.cands))
	for c := range ep.cands {
		cands = append(cands, c)
	}
	ep.mu.Unlock()
	if ann != nil {
		ann.Close()
	}
	if acc != nil {
		acc.Close()
	}
	if s != nil {
		s.fail(ErrClosed)
	}
	for _, c := range cands {
		c.fail(ErrClosed)
	}
	ep.wg.Wait()
	return nil
}

// session returns the connection to the home registrar, hunting for one
// when there is none.
func (ep *Endpoint) session(ctx context.Context) (*session, error) {
	for {
		ep.mu.Lock()
		if ep.closed {
			ep.mu.Unlock()
			return nil, ErrClosed
		}
		if ep.sess != nil {
			s := ep.sess
			ep.mu.Unlock()
			return s, nil
		}
		if h := ep.hunting; h != nil {
			ep.mu.Unlock()
			select {
			case <-h:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		h := make(chan struct{})
		ep.hunting = h
		ep.mu.Unlock()

		c, err := ep.hunt(ctx)

		ep.mu.Lock()
		ep.hunting = nil
		close(h)
		if err != nil {
			ep.mu.Unlock()
			return nil, err
		}
		if ep.closed {
			ep.mu.Unlock()
			c.Close()
			return nil, ErrClosed
		}
		if s := ep.sess; s != nil {
			// A registrar that took over as home reached us during the
			// hunt (session.handle): that association stays the one.
			ep.mu.Unlock()
			c.Close()
			return s, nil
		}
		s := newSession(ep, c)
		ep.sess = s
		hasRegs := len(ep.regs) > 0
		ep.wg.Add(1)
		ep.acceptAtLocked(c)
		ep.mu.Unlock()
		go s.readLoop()
		if hasRegs {
			ep.kickMaintenance()
		}
		return s, nil
	}
}

// hunt connects to a registrar: up to three of the list at once, the first
// to answer wins (RFC 5352 §3.6).
func (ep *Endpoint) hunt(ctx context.Context) (mapping.Conn, error) {
	list, err := ep.huntList(ctx)
	if err != nil {
		return nil, err
	}
	var lastErr error
	for len(list) > 0 {
		group := list[:min(3, len(list))]
		list = list[len(group):]
		c, expired, err := ep.dialFirst(ctx, group, ep.t5)
		if err == nil {
			ep.t5 = ep.cfg.ConnectTimeout
			return c, nil
		}
		if expired {
			ep.t5 = min(2*ep.t5, ep.cfg.MaxConnectTimeout)
		}
		lastErr = err
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return nil, fmt.Errorf("%w: %w", ErrNoRegistrar, lastErr)
}

// dialFirst connects to one of addrs, dialing them all at once, within
// timeout. expired reports that the timeout ran out.
func (ep *Endpoint) dialFirst(ctx context.Context, addrs []string, timeout time.Duration) (c mapping.Conn, expired bool, err error) {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		c   mapping.Conn
		err error
	}
	results := make(chan result, len(addrs))
	for _, a := range addrs {
		go func() {
			network, address := splitRegistrar(a)
			c, err := ep.cfg.Dialer(tctx, network, address)
			results <- result{c, err}
		}()
	}
	var winner mapping.Conn
	var lastErr error
	for range addrs {
		r := <-results
		switch {
		case r.err != nil:
			lastErr = r.err
		case winner == nil:
			winner = r.c
			cancel() // stop the others
		default:
			r.c.Close()
		}
	}
	if winner != nil {
		ep.cfg.Logger.Debug("connected to registrar", "addr", winner.RemoteAddr())
		return winner, false, nil
	}
	expired = ctx.Err() == nil && errors.Is(tctx.Err(), context.DeadlineExceeded)
	return nil, expired, lastErr
}

// sessionEnded is called when a registrar connection fails. Only the end
// of the connection in use starts a hunt and re-registration: an accepted
// association that never named a home, or the connection that one
// replaced, goes quietly.
func (ep *Endpoint) sessionEnded(s *session) {
	ep.mu.Lock()
	delete(ep.cands, s)
	current := ep.sess == s
	if current {
		ep.sess = nil
		ep.home = 0
	}
	hasRegs := current && len(ep.regs) > 0 && !ep.closed
	ep.mu.Unlock()
	if hasRegs {
		ep.kickMaintenance()
	}
}

// acceptAtLocked makes the endpoint take associations at the transport
// address that registrations on c name: over SCTP the local port of c, on
// every address (a registrar names the association's addresses as the
// pool element's ASAP transport). The listener of an earlier connection's
// port is closed: registrations on c name the new one. Over TCP there is
// none. ep.mu is held.
func (ep *Endpoint) acceptAtLocked(c mapping.Conn) {
	var at string
	if la := c.LocalAddr(); la != nil && la.Network() == "sctp" {
		if p := portOf(la); p != "" {
			at = ":" + p
		}
	}
	if at == ep.acceptAt && ep.accept != nil {
		return
	}
	if ep.accept != nil {
		ep.accept.Close()
		ep.accept, ep.acceptAt = nil, ""
	}
	if at == "" {
		return
	}
	var lc mapping.ListenConfig
	l, err := lc.Listen(context.Background(), "sctp", at)
	if err != nil {
		ep.cfg.Logger.Info("cannot take registrars' associations; a takeover of the home registrar is left to the hunt", "addr", at, "err", err)
		return
	}
	ep.accept, ep.acceptAt = l, at
	ep.wg.Add(1)
	go ep.acceptLoop(l)
}

// portOf returns the port of an address such as "[a,b]:9000", or "".
func portOf(a net.Addr) string {
	s := a.String()
	i := strings.LastIndexByte(s, ':')
	if i < 0 || i == len(s)-1 {
		return ""
	}
	return s[i+1:]
}

// acceptLoop serves the associations registrars open to l until l closes.
// Each waits up to RequestTimeout for a keep-alive with the H flag for one
// of the endpoint's registrations, which makes it the registrar
// connection (session.handle); one that brings none is closed.
func (ep *Endpoint) acceptLoop(l mapping.Listener) {
	defer ep.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		ep.mu.Lock()
		if ep.closed {
			ep.mu.Unlock()
			c.Close()
			return
		}
		s := newSession(ep, c)
		ep.cands[s] = struct{}{}
		ep.wg.Add(1)
		ep.mu.Unlock()
		ep.cfg.Logger.Debug("association from a registrar", "addr", c.RemoteAddr())
		time.AfterFunc(ep.cfg.RequestTimeout, func() {
			ep.mu.Lock()
			_, still := ep.cands[s]
			ep.mu.Unlock()
			if still {
				s.fail(ErrNoAnswer)
			}
		})
		go s.readLoop()
	}
}

// request sends m and waits for the answer that key names, re-sending on
// timeouts and broken connections (RFC 5352 §3.7).
func (ep *Endpoint) request(ctx context.Context, m asap.Message, key pendKey) (asap.Message, error) {
	b, err := m.AppendBinary(nil)
	if err != nil {
		return nil, err
	}
	lastErr := ErrNoAnswer
	for range 1 + ep.cfg.MaxRequestRetransmit {
		s, err := ep.session(ctx)
		if err != nil {
			return nil, err
		}
		ch := s.expect(key)
		if err := s.write(b); err != nil {
			s.forget(key, ch)
			s.fail(err)
			lastErr = err
			continue
		}
		t := time.NewTimer(ep.cfg.RequestTimeout)
		select {
		case resp := <-ch:
			t.Stop()
			return resp, nil
		case <-s.dead:
			t.Stop()
			lastErr = s.err
		case <-t.C:
			// The registrar is silent: hunt for another.
			s.forget(key, ch)
			s.fail(ErrNoAnswer)
			lastErr = ErrNoAnswer
		case <-ctx.Done():
			t.Stop()
			s.forget(key, ch)
			return nil, ctx.Err()
		}
	}
	return nil, fmt.Errorf("%w: %w", ErrNoAnswer, lastErr)
}

// send sends m without waiting for an answer.
func (ep *Endpoint) send(ctx context.Context, m asap.Message) error {
	b, err := m.AppendBinary(nil)
	if err != nil {
		return err
	}
	s, err := ep.session(ctx)
	if err != nil {
		return err
	}
	if err := s.write(b); err != nil {
		s.fail(err)
		return err
	}
	return nil
}

// Register registers pool element pe in pool h and keeps it registered
// until the registration is closed. A zero pe.ID is replaced by a random
// one; a zero pe.Life by three re-registration periods.
func (ep *Endpoint) Register(ctx context.Context, h asap.PoolHandle, pe asap.PoolElement) (*Registration, error) {
	for pe.ID == 0 {
		pe.ID = asap.PEID(rand.Uint32())
	}
	if pe.Life == 0 {
		pe.Life = 3 * ep.cfg.Reregistration
	}
	r := &Registration{ep: ep, handle: h, pe: pe}
	if err := r.register(ctx); err != nil {
		if errors.Is(err, ErrNoAnswer) || ctx.Err() != nil {
			// The registrar may have taken the registration before
			// its answer was lost or given up on: withdraw it, so that
			// no element is left in the pool that nobody keeps.
			ep.withdraw(h, pe.ID)
		}
		return nil, err
	}
	ep.mu.Lock()
	if ep.closed {
		ep.mu.Unlock()
		return nil, ErrClosed
	}
	ep.regs[regKey{h, pe.ID}] = r
	ep.mu.Unlock()
	ep.maintains.Do(func() {
		ep.wg.Add(1)
		go ep.maintain()
	})
	return r, nil
}

// withdraw deregisters pool element id of pool h in the background, once,
// bounded by the request timeout and its retransmissions.
func (ep *Endpoint) withdraw(h asap.PoolHandle, id asap.PEID) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.closed {
		return
	}
	ep.wg.Add(1)
	go func() {
		defer ep.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), ep.cfg.RequestTimeout*time.Duration(1+ep.cfg.MaxRequestRetransmit))
		defer cancel()
		ep.request(ctx, &asap.Deregistration{Handle: h, ID: id}, pendKey{asap.TypeDeregistrationResponse, h, id})
	}()
}

func (ep *Endpoint) kickMaintenance() {
	select {
	case ep.kick <- struct{}{}:
	default:
	}
}

// maintain re-registers every registration each period, and at once after
// the registrar connection changed or a registration expired.
func (ep *Endpoint) maintain() {
	defer ep.wg.Done()
	t := time.NewTimer(ep.cfg.Reregistration)
	defer t.Stop()
	for {
		select {
		case <-ep.done:
			return
		case <-ep.kick:
		case <-t.C:
		}
		ep.mu.Lock()
		regs := make([]*Registration, 0, len(ep.regs))
		for _, r := range ep.regs {
			regs = append(regs, r)
		}
		ep.mu.Unlock()
		next := ep.cfg.Reregistration
		for _, r := range regs {
			ctx, cancel := context.WithTimeout(context.Background(), ep.cfg.RequestTimeout*time.Duration(1+ep.cfg.MaxRequestRetransmit))
			err := r.register(ctx)
			cancel()
			if err != nil && !errors.Is(err, ErrClosed) {
				ep.cfg.Logger.Warn("re-registration failed; retrying", "pool", r.handle, "pe", r.pe.ID, "err", err)
				next = min(next, time.Second)
			}
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(next)
	}
}

// Registration is a pool element registered through an Endpoint.
type Registration struct {
	ep     *Endpoint
	handle asap.PoolHandle
	mu     sync.Mutex
	pe     asap.PoolElement
	closed bool
}

// ID returns the pool element identifier.
func (r *Registration) ID() asap.PEID { return r.pe.ID }

// Handle returns the pool handle.
func (r *Registration) Handle() asap.PoolHandle { return r.handle }

// Policy returns the policy values last registered.
func (r *Registration) Policy() policy.Policy {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pe.Policy
}

// register sends the registration and checks the answer.
func (r *Registration) register(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	m := &asap.Registration{Handle: r.handle, PE: r.pe}
	r.mu.Unlock()
	resp, err := r.ep.request(ctx, m, pendKey{asap.TypeRegistrationResponse, r.handle, r.pe.ID})
	if err != nil {
		return err
	}
	rr := resp.(*asap.RegistrationResponse)
	if rr.Reject {
		return &RegistrationError{Handle: r.handle, Causes: rr.Causes}
	}
	return nil
}

// Update re-registers with new policy values, such as a new load.
func (r *Registration) Update(ctx context.Context, p policy.Policy) error {
	r.mu.Lock()
	r.pe.Policy = p
	r.mu.Unlock()
	return r.register(ctx)
}

// Close deregisters the pool element and waits for the registrar's answer
// (bounded by ctx). The registration ends even when the registrar cannot
// be reached.
func (r *Registration) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	r.closed = true
	r.mu.Unlock()
	ep := r.ep
	ep.mu.Lock()
	delete(ep.regs, regKey{r.handle, r.pe.ID})
	ep.mu.Unlock()
	resp, err := ep.request(ctx, &asap.Deregistration{Handle: r.handle, ID: r.pe.ID},
		pendKey{asap.TypeDeregistrationResponse, r.handle, r.pe.ID})
	if err != nil {
		return err
	}
	if dr := resp.(*asap.DeregistrationResponse); len(dr.Causes) > 0 {
		return fmt.Errorf("endpoint: deregistration refused: %v", dr.Causes[0].Code)
	}
	return nil
}
