package registrar

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/handlespace"
)

// handle decodes one ASAP message and acts on it.
func (pc *peerConn) handle(b []byte) {
	if h, id, ok := plainKeepAliveAck(b); ok {
		pc.keepAliveAck(peKey{pc.ackHandle(h), id})
		return
	}
	m, err := asap.Unmarshal(b)
	if err != nil {
		pc.badMessage(b, err)
		if m == nil {
			return
		}
	}
	switch m := m.(type) {
	case *asap.Registration:
		pc.register(m)
	case *asap.Deregistration:
		pc.deregister(m)
	case *asap.HandleResolution:
		pc.resolve(m)
	case *asap.EndpointKeepAliveAck:
		pc.keepAliveAck(peKey{m.Handle, m.ID})
	case *asap.EndpointUnreachable:
		pc.unreachable(m)
	case *asap.Error:
		pc.r.cfg.Logger.Info("peer reported an error", "peer", pc.c.RemoteAddr(), "causes", m.Causes)
	default:
		// Messages for pool elements and pool users (responses, cookies,
		// business cards, keep-alives, announces) mean nothing here.
		pc.r.cfg.Logger.Debug("ignored message not for a registrar", "peer", pc.c.RemoteAddr(), "type", m.Type())
	}
}

// badMessage answers a message that did not decode cleanly, as the RFC's
// action bits and error causes say. The causes carry as much of the
// offending message or parameters as the answer can hold.
func (pc *peerConn) badMessage(b []byte, err error) {
	pc.r.cfg.Logger.Debug("bad message", "peer", pc.c.RemoteAddr(), "err", err)
	var um *asap.UnrecognizedMessageError
	var up *asap.UnrecognizedParamError
	switch {
	case errors.As(err, &um):
		if um.Report {
			pc.reply(&asap.Error{Causes: causesWithin(errorRoom, asap.CauseUnrecognizedMessage, b)})
		}
	case errors.As(err, &up):
		if up.Report {
			pc.reply(&asap.Error{Causes: causesWithin(errorRoom, asap.CauseUnrecognizedParameter, up.Params...)})
		}
	default:
		// A known message with bad contents. A registration is refused
		// with "invalid values" when enough of it decoded to say whose it
		// is; anything else gets an ASAP_ERROR. A registration without
		// its pool handle or its pool element is one of those: a
		// registration response names both (RFC 5352 §2.2.2), the
		// element could not match one without them, and rsplib's
		// registrar answers a message that does not parse with an
		// ASAP_ERROR too.
		var pe *asap.ParamError
		info := b
		if errors.As(err, &pe) && pe.Param != nil {
			info = pe.Param
		}
		if h, id, ok := registrationIdentity(b); ok {
			// The handle and the PE identifier take room from the causes.
			room := errorRoom - 4 - len(h) - (4-len(h)%4)%4 - 8
			pc.reply(&asap.RegistrationResponse{Reject: true, Handle: h, ID: id, Causes: causesWithin(room, asap.CauseInvalidValues, info)})
			return
		}
		pc.reply(&asap.Error{Causes: causesWithin(errorRoom, asap.CauseInvalidValues, info)})
	}
}

// errorRoom is how many bytes of error causes, padding included, fit in an
// ASAP_ERROR: the largest message less its header and the operation error
// parameter's header, rounded down to a multiple of four as causes are
// padded to one.
const errorRoom = (0xffff - asap.HeaderLen - 4) &^ 3

// causesWithin returns one cause of code per info, each info copied and cut
// short where needed so that all causes fit in room bytes; causes without
// room for a header and four bytes of their info are left out.
func causesWithin(room int, code asap.CauseCode, infos ...[]byte) []asap.Cause {
	causes := make([]asap.Cause, 0, len(infos))
	for _, info := range infos {
		if room < 8 {
			break
		}
		room -= 4
		n := min(len(info), room)
		causes = append(causes, asap.Cause{Code: code, Info: clone(info[:n])})
		room -= n + (4-n%4)%4
	}
	return causes
}

// registrationIdentity finds the pool handle and PE identifier of a
// registration that did not decode, so that the refusal can name them.
func registrationIdentity(b []byte) (asap.PoolHandle, asap.PEID, bool) {
	if len(b) < 8 || asap.MessageType(b[0]) != asap.TypeRegistration {
		return "", 0, false
	}
	b = b[4:]
	hl := int(binary.BigEndian.Uint16(b[2:]))
	if asap.ParamType(binary.BigEndian.Uint16(b)) != asap.ParamPoolHandle || hl <= 4 || hl > len(b) || hl-4 > asap.MaxPoolHandleLen {
		return "", 0, false
	}
	h := asap.PoolHandle(b[4:hl])
	b = b[min(hl+(4-hl%4)%4, len(b)):]
	if len(b) < 8 || asap.ParamType(binary.BigEndian.Uint16(b)) != asap.ParamPoolElement {
		return "", 0, false
	}
	return h, asap.PEID(binary.BigEndian.Uint32(b[4:])), true
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// register handles ASAP_REGISTRATION: validation, the home registrar, the
// registration life, the pool's policy and transport, then ownership and the
// keep-alive cycle.
func (pc *peerConn) register(m *asap.Registration) {
	r := pc.r
	resp := &asap.RegistrationResponse{Handle: m.Handle, ID: m.PE.ID}
	pe := m.PE
	if !pc.authorizedRegistration(m.Handle, pe.ID) {
		resp.Reject, resp.Causes = true, rejectedSecurity
		pc.reply(resp)
		return
	}
	if cause, ok := pc.validate(m.Handle, &pe); !ok {
		resp.Reject, resp.Causes = true, []asap.Cause{cause}
		pc.reply(resp)
		return
	}
	pe.Home = r.id
	pe.ASAPTransport = pc.asapTransport()
	// The infinite life (-1) is given the maximum, as any longer one:
	// the element re-registers within it, as it does anyway (RFC 5352
	// T4-reregistration), and an element that vanishes without its
	// connection ending is forgotten in the end.
	switch {
	case pe.Life == asap.LifeInfinite || pe.Life > r.cfg.MaxRegistrationLife:
		pe.Life = r.cfg.MaxRegistrationLife
	case pe.Life < r.cfg.MinRegistrationLife:
		pe.Life = r.cfg.MinRegistrationLife
	}
	key := peKey{m.Handle, pe.ID}

	// The life starts by the coarse clock, moved ahead by its
	// granularity: a registration expires no earlier than its life, and no
	// later than the expiry check's granularity allows anyway, without a
	// clock read per registration.
	start := r.coarseNow().Add(clockGranularity)
	r.mu.Lock()
	// A pool element identifier belongs to the connection (association)
	// that registered it until that registration ends: another may
	// neither re-register nor deregister it. The element may have moved
	// to a new connection while the old one went silent without closing,
	// so the owner is probed with a keep-alive at once, as for an
	// unreachable report: one that answers keeps the element, a silent
	// one loses it within KeepAliveTimeout, and the element's next
	// registration over the new connection succeeds.
	if st := r.ownedLocked(key); st != nil && st.conn != pc {
		if !st.awaiting {
			r.sendKeepAliveLocked(key, st, r.schedNow(time.Now()))
		}
		r.mu.Unlock()
		r.cfg.Logger.Warn("refused registration of a pool element registered over another connection", "pool", m.Handle, "pe", pe.ID, "peer", pc.c.RemoteAddr(), "owner", st.conn.c.RemoteAddr())
		resp.Reject, resp.Causes = true, rejectedSecurity
		pc.reply(resp)
		return
	}
	_, err := r.hs.Register(m.Handle, pe, start)
	if err == nil {
		// Every owned element of a pool keeps the handlespace's one copy
		// of its handle, not the one decoded from its message.
		key.handle, _ = r.hs.Handle(m.Handle)
		if r.ownedLocked(key) == nil {
			st := newPeState(key, pc)
			r.ownLocked(st)
			r.scheduleLocked(st, r.keepAliveDelay(), r.schedNow(time.Now()))
		}
		r.registeredLocked(m.Handle, &pe, &pc.enrpHeld)
	}
	r.mu.Unlock()
	if !pc.batching {
		flushHeld(&pc.enrpHeld)
	}

	if err != nil {
		resp.Reject = true
		var re *handlespace.RegistrationError
		if errors.As(err, &re) {
			resp.Causes = []asap.Cause{re.Cause}
		} else {
			resp.Causes = []asap.Cause{{Code: asap.CauseUnspecified}}
		}
		r.cfg.Logger.Info("registration refused", "pool", m.Handle, "pe", pe.ID, "err", err)
	} else {
		r.cfg.Logger.Debug("registered", "pool", m.Handle, "pe", pe.ID, "transport", pe.UserTransport.Addrs)
	}
	pc.reply(resp)
}

// validate checks a registration's values and completes the user transport
// with the connection's address where the element left it unspecified. It
// returns the error cause of a refusal.
func (pc *peerConn) validate(h asap.PoolHandle, pe *asap.PoolElement) (asap.Cause, bool) {
	invalid := asap.Cause{Code: asap.CauseInvalidValues}
	if len(h) == 0 || len(h) > asap.MaxPoolHandleLen || pe.ID == 0 || !pe.Policy.Type.Valid() {
		return invalid, false
	}
	// A life below -1 (infinite) means nothing (RFC 5354 §2.2.12: a
	// signed 32-bit life, -1 for infinite).
	if pe.Life < 0 && pe.Life != asap.LifeInfinite {
		return invalid, false
	}
	t := pe.UserTransport
	// Port 0 reaches nobody.
	if t.Port == 0 {
		return invalid, false
	}
	switch t.Kind {
	case asap.ParamSCTPTransport, asap.ParamTCPTransport, asap.ParamUDPTransport,
		asap.ParamUDPLiteTransport, asap.ParamDCCPTransport:
	default:
		return invalid, false
	}
	if t.Use != asap.DataOnly && t.Use != asap.DataPlusControl {
		return invalid, false
	}
	// The element may only register addresses it uses towards the
	// registrar (RFC 5352 R1); unspecified ones stand for those.
	peer := pc.peerAddrs(false)
	for _, a := range t.Addrs {
		if a = a.Unmap(); !a.IsUnspecified() && !contains(peer, a) {
			peer = pc.peerAddrs(true) // the association may have changed
			break
		}
	}
	var buf [4]netip.Addr
	addrs := buf[:0]
	for _, a := range t.Addrs {
		a = a.Unmap()
		if a.IsUnspecified() {
			for _, p := range peer {
				if p.Is4() == a.Is4() {
					addrs = appendUnique(addrs, p)
				}
			}
			continue
		}
		if contains(peer, a) {
			addrs = appendUnique(addrs, a)
		}
	}
	if len(t.Addrs) == 0 {
		addrs = append(addrs, peer...)
	}
	if len(addrs) == 0 {
		return invalid, false
	}
	if t.Kind != asap.ParamSCTPTransport {
		addrs = addrs[:1]
	}
	// The elements of one connection mostly register the same
	// addresses: they share one copy, which nobody changes.
	if !slices.Equal(addrs, pc.addrs) {
		pc.addrs = slices.Clone(addrs)
	}
	pe.UserTransport.Addrs = pc.addrs
	return asap.Cause{}, true
}

func contains(s []netip.Addr, a netip.Addr) bool {
	for _, x := range s {
		if x == a {
			return true
		}
	}
	return false
}

func appendUnique(s []netip.Addr, a netip.Addr) []netip.Addr {
	if contains(s, a) {
		return s
	}
	return append(s, a)
}

// deregister handles ASAP_DEREGISTRATION. A pool element may only remove
// itself: the registration must have come over this connection. Removing
// an unknown element succeeds.
func (pc *peerConn) deregister(m *asap.Deregistration) {
	r := pc.r
	key := peKey{m.Handle, m.ID}
	resp := &asap.DeregistrationResponse{Handle: m.Handle, ID: m.ID}
	if !pc.authorized(OpDeregister, m.Handle) {
		resp.Causes = rejectedSecurity
		pc.reply(resp)
		return
	}
	r.mu.Lock()
	st := r.ownedLocked(key)
	_, known := r.hs.Lookup(m.Handle, m.ID)
	switch {
	case st != nil && st.conn == pc:
		// As for a registration, the peers' update goes out before
		// the answer (see registeredLocked).
		r.disownLocked(st)
		r.dropHeldLocked(key, &pc.enrpHeld)
	case known:
		// Registered by another connection or another registrar: not
		// this peer's to remove.
		resp.Causes = []asap.Cause{{Code: asap.CauseRejectedSecurity}}
	}
	r.mu.Unlock()
	if !pc.batching {
		flushHeld(&pc.enrpHeld)
	}
	pc.reply(resp)
}

// resolve handles ASAP_HANDLE_RESOLUTION with the pool's policy.
func (pc *peerConn) resolve(m *asap.HandleResolution) {
	r := pc.r
	resp := &pc.resp
	*resp = asap.HandleResolutionResponse{Handle: m.Handle}
	if !pc.hrLimit.allow() {
		pc.limited = true
		resp.Causes = []asap.Cause{{Code: asap.CauseLackOfResources}}
		pc.reply(resp)
		return
	}
	n := int(m.Items)
	if m.Items == 0 {
		n = r.cfg.HandleResolutionItems
	}
	if n <= 0 || n > r.cfg.MaxHandleResolutionItems {
		n = r.cfg.MaxHandleResolutionItems
	}
	r.mu.Lock()
	sel, pol, err := r.hs.Select(m.Handle, n, pc.sel[:0])
	if err != nil {
		r.mu.Unlock()
		resp.Causes = []asap.Cause{{Code: asap.CauseUnknownPoolHandle}}
		pc.reply(resp)
		return
	}
	resp.Policy = &pol
	resp.PEs = resp.PEs[:0]
	for _, pe := range sel {
		resp.PEs = append(resp.PEs, *pe)
	}
	// Encode while the handlespace still holds what the elements point to.
	bp := bufPool.Get().(*[]byte)
	b, err := resp.AppendBinary((*bp)[:0])
	if errors.Is(err, asap.ErrInvalidLength) && len(resp.PEs) > 1 {
		// Too long for one message: answer with as many elements as
		// fit, in the policy's order (the most it can say).
		b, err = pc.fewerElements(resp, b)
	}
	r.mu.Unlock()
	pc.sel = sel[:0]
	if err != nil {
		r.cfg.Logger.Error("encoding handle resolution response", "pool", m.Handle, "err", err)
		bufPool.Put(bp)
		return
	}
	pc.replyBytes(b)
}

// unreachable handles ASAP_ENDPOINT_UNREACHABLE. An element this registrar
// is home for is probed with a keep-alive at once (RFC 5352 §3.5), and the
// probe decides: an element that answers it stays, one that does not is
// removed when KeepAliveTimeout runs out. The registrar cannot probe an
// element of another home registrar; such an element is removed once
// MaxBadPEReports distinct peers (by address) reported it, so that no
// single peer can empty a pool.
func (pc *peerConn) unreachable(m *asap.EndpointUnreachable) {
	r := pc.r
	if !pc.euLimit.allow() {
		pc.limited = true
		r.cfg.Logger.Debug("unreachable report over the rate limit", "peer", pc.c.RemoteAddr())
		return
	}
	var reporter netip.Addr
	if a := pc.peerAddrs(false); len(a) > 0 {
		reporter = a[0]
	}
	key := peKey{m.Handle, m.ID}
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := r.ownedLocked(key); st != nil {
		if !st.awaiting {
			r.sendKeepAliveLocked(key, st, r.schedNow(time.Now()))
		}
		return
	}
	reports := r.hs.ReportUnreachable(m.Handle, m.ID, reporter)
	if reports >= r.cfg.MaxBadPEReports {
		r.cfg.Logger.Info("removed pool element reported unreachable", "pool", m.Handle, "pe", m.ID, "reporters", reports)
		r.dropLocked(key)
	}
}

// fewerElements encodes resp with the longest prefix of its elements that
// fits in one message, found by bisection, into b's room.
func (pc *peerConn) fewerElements(resp *asap.HandleResolutionResponse, b []byte) ([]byte, error) {
	all := resp.PEs
	lo, hi := 0, len(all) // lo elements fit, hi do not
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		resp.PEs = all[:mid]
		var err error
		if b, err = resp.AppendBinary(b[:0]); err == nil {
			lo = mid
		} else {
			hi = mid
		}
	}
	resp.PEs = all[:lo]
	pc.r.cfg.Logger.Debug("handle resolution answered with fewer elements to fit a message", "pool", resp.Handle, "elements", lo, "selected", len(all))
	return resp.AppendBinary(b[:0])
}
