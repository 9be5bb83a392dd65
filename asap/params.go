package asap

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/rsp-go/rsp/policy"
)

// appendAddr appends an IPv4 or IPv6 address parameter. IPv4-mapped IPv6
// addresses are written as IPv4, as rsplib does.
func (e *encoder) addr(a netip.Addr) error {
	a = a.Unmap()
	switch {
	case a.Is4():
		s := e.begin(ParamIPv4Address)
		v := a.As4()
		e.raw(v[:])
		e.end(s)
	case a.Is6():
		s := e.begin(ParamIPv6Address)
		v := a.As16()
		e.raw(v[:])
		e.end(s)
	default:
		return fmt.Errorf("%w: address %v", ErrInvalidValue, a)
	}
	return nil
}

func parseAddr(p tlv) (netip.Addr, error) {
	switch {
	case p.typ == ParamIPv4Address && len(p.val) == 4:
		return netip.AddrFrom4([4]byte(p.val)), nil
	case p.typ == ParamIPv6Address && len(p.val) == 16:
		return netip.AddrFrom16([16]byte(p.val)), nil
	case p.typ == ParamIPv4Address || p.typ == ParamIPv6Address:
		return netip.Addr{}, &ParamError{Type: p.typ, Param: p.raw, Err: fmt.Errorf("%w: %d bytes", ErrInvalidLength, len(p.val))}
	}
	return netip.Addr{}, &ParamError{Type: p.typ, Param: p.raw, Err: fmt.Errorf("%w: not an address", ErrInvalidValue)}
}

// isTransport reports whether t is a transport parameter type.
func (t ParamType) isTransport() bool {
	switch t {
	case ParamDCCPTransport, ParamSCTPTransport, ParamTCPTransport, ParamUDPTransport, ParamUDPLiteTransport, ParamOpaqueTransport:
		return true
	}
	return false
}

// transport appends a transport parameter.
func (e *encoder) transport(t *Transport) error {
	if !t.Kind.isTransport() {
		return fmt.Errorf("%w: transport kind %v", ErrInvalidValue, t.Kind)
	}
	s := e.begin(t.Kind)
	if t.Kind == ParamOpaqueTransport {
		e.raw(t.Opaque)
		e.end(s)
		return nil
	}
	if len(t.Addrs) == 0 || (t.Kind != ParamSCTPTransport && len(t.Addrs) != 1) {
		return fmt.Errorf("%w: %v with %d addresses", ErrInvalidValue, t.Kind, len(t.Addrs))
	}
	e.u16(t.Port)
	e.u16(uint16(t.Use))
	if t.Kind == ParamDCCPTransport {
		e.u32(t.ServiceCode)
	}
	for _, a := range t.Addrs {
		if err := e.addr(a); err != nil {
			return err
		}
	}
	e.end(s)
	return nil
}

// AppendTransport appends t as a transport parameter to b.
func AppendTransport(b []byte, t *Transport) ([]byte, error) {
	e := encoder{b: b}
	err := e.transport(t)
	return e.b, err
}

// ParseTransport decodes a whole transport parameter (header included).
// Nested parameters skipped and to be reported come back with the value as
// an *UnrecognizedParamError with Skipped set, as from ParsePoolElement and
// ParseServerInformation.
func ParseTransport(b []byte) (Transport, error) {
	p, _, err := nextTLV(b)
	if err != nil {
		return Transport{}, err
	}
	return parseTransport(p)
}

func parseTransport(p tlv) (Transport, error) {
	t := Transport{Kind: p.typ}
	bad := func(err error) (Transport, error) {
		return Transport{}, &ParamError{Type: p.typ, Param: p.raw, Err: err}
	}
	if !p.typ.isTransport() {
		return bad(fmt.Errorf("%w: not a transport", ErrInvalidValue))
	}
	if p.typ == ParamOpaqueTransport {
		t.Opaque = p.val
		return t, nil
	}
	fixed := 4
	if p.typ == ParamDCCPTransport {
		fixed = 8
	}
	if len(p.val) < fixed {
		return bad(ErrTruncated)
	}
	t.Port = binary.BigEndian.Uint16(p.val)
	t.Use = TransportUse(binary.BigEndian.Uint16(p.val[2:]))
	if p.typ == ParamDCCPTransport {
		t.Use = 0
		t.ServiceCode = binary.BigEndian.Uint32(p.val[4:])
	}
	if p.typ == ParamSCTPTransport && t.Use > DataPlusControl {
		return bad(fmt.Errorf("%w: transport use %d", ErrInvalidValue, t.Use))
	}
	w := params{rest: p.val[fixed:]}
	for {
		a, ok, err := w.next()
		if err != nil {
			return Transport{}, err
		}
		if !ok {
			break
		}
		addr, err := parseAddr(a)
		if err != nil {
			return Transport{}, err
		}
		t.Addrs = append(t.Addrs, addr)
	}
	if len(t.Addrs) == 0 {
		return bad(fmt.Errorf("%w: no address", ErrInvalidValue))
	}
	if p.typ != ParamSCTPTransport && len(t.Addrs) != 1 {
		return bad(fmt.Errorf("%w: %d addresses", ErrInvalidValue, len(t.Addrs)))
	}
	return t, w.done()
}

func (e *encoder) policy(p *policy.Policy) error {
	s := e.begin(ParamPolicy)
	var err error
	e.b, err = p.AppendBinary(e.b)
	e.lastPad = 0
	e.end(s)
	return err
}

// AppendPolicy appends p as a pool member selection policy parameter.
func AppendPolicy(b []byte, p *policy.Policy) ([]byte, error) {
	e := encoder{b: b}
	err := e.policy(p)
	return e.b, err
}

// ParsePolicy decodes a whole member selection policy parameter (header
// included), as an "inconsistent pooling policy" cause carries the pool's.
func ParsePolicy(b []byte) (policy.Policy, error) {
	p, _, err := nextTLV(b)
	if err != nil {
		return policy.Policy{}, err
	}
	if p.typ != ParamPolicy {
		return policy.Policy{}, &ParamError{Type: p.typ, Param: p.raw, Err: fmt.Errorf("%w: not a policy", ErrInvalidValue)}
	}
	return parsePolicy(p)
}

func parsePolicy(p tlv) (policy.Policy, error) {
	pol, err := policy.ParsePolicy(p.val)
	if err != nil {
		return pol, &ParamError{Type: p.typ, Param: p.raw, Err: err}
	}
	return pol, nil
}

func (e *encoder) handle(h PoolHandle) error {
	if len(h) == 0 || len(h) > 0xffff-4 {
		return fmt.Errorf("%w: pool handle of %d bytes", ErrInvalidValue, len(h))
	}
	s := e.begin(ParamPoolHandle)
	e.b = append(e.b, h...)
	e.lastPad = 0
	e.end(s)
	return nil
}

// AppendPoolHandle appends h as a pool handle parameter.
func AppendPoolHandle(b []byte, h PoolHandle) ([]byte, error) {
	e := encoder{b: b}
	err := e.handle(h)
	return e.b, err
}

func parseHandle(p tlv) (PoolHandle, error) {
	if len(p.val) == 0 {
		return "", &ParamError{Type: p.typ, Param: p.raw, Err: fmt.Errorf("%w: empty pool handle", ErrInvalidValue)}
	}
	return PoolHandle(p.val), nil
}

// lifeMillis converts a registration life to its wire form.
// LifeInfinite is -1; any other negative life (which a registrar refuses)
// keeps its value, so that it decodes as it was sent.
func lifeMillis(d time.Duration) uint32 {
	if d == LifeInfinite {
		return 0xffffffff
	}
	ms := min(max(d.Milliseconds(), -0x80000000), 0x7fffffff)
	if d < 0 && ms == -1 {
		ms = -2 // not the infinite life
	}
	return uint32(int32(ms))
}

func (e *encoder) poolElement(pe *PoolElement) error {
	s := e.begin(ParamPoolElement)
	e.u32(uint32(pe.ID))
	e.u32(uint32(pe.Home))
	e.u32(lifeMillis(pe.Life))
	if err := e.transport(&pe.UserTransport); err != nil {
		return err
	}
	if err := e.policy(&pe.Policy); err != nil {
		return err
	}
	if pe.ASAPTransport != nil {
		if pe.ASAPTransport.Kind != ParamSCTPTransport {
			return fmt.Errorf("%w: ASAP transport must be SCTP", ErrInvalidValue)
		}
		if err := e.transport(pe.ASAPTransport); err != nil {
			return err
		}
	}
	e.end(s)
	return nil
}

// AppendPoolElement appends pe as a pool element parameter.
func AppendPoolElement(b []byte, pe *PoolElement) ([]byte, error) {
	e := encoder{b: b}
	err := e.poolElement(pe)
	return e.b, err
}

// ParsePoolElement decodes a whole pool element parameter (header
// included).
func ParsePoolElement(b []byte) (PoolElement, error) {
	p, _, err := nextTLV(b)
	if err != nil {
		return PoolElement{}, err
	}
	return parsePoolElement(p)
}

func parsePoolElement(p tlv) (PoolElement, error) {
	var pe PoolElement
	bad := func(err error) (PoolElement, error) {
		return PoolElement{}, &ParamError{Type: ParamPoolElement, Param: p.raw, Err: err}
	}
	if p.typ != ParamPoolElement {
		return bad(fmt.Errorf("%w: %v", ErrMissingParam, p.typ))
	}
	if len(p.val) < 12 {
		return bad(ErrTruncated)
	}
	pe.ID = PEID(binary.BigEndian.Uint32(p.val))
	pe.Home = ServerID(binary.BigEndian.Uint32(p.val[4:]))
	// -1 is the infinite life; a life below it is invalid, and kept as
	// it is (negative) for the receiver to refuse.
	life := int32(binary.BigEndian.Uint32(p.val[8:]))
	if life == -1 {
		pe.Life = LifeInfinite
	} else {
		pe.Life = time.Duration(life) * time.Millisecond
	}
	w := params{rest: p.val[12:]}
	ut, ok, err := w.next()
	if err != nil {
		return PoolElement{}, err
	}
	if !ok || !ut.typ.isTransport() {
		return bad(fmt.Errorf("%w: user transport", ErrMissingParam))
	}
	pe.UserTransport, err = parseTransport(ut)
	if err = w.absorb(err); err != nil {
		return PoolElement{}, err
	}
	pp, err := w.expect(ParamPolicy)
	if err != nil {
		return PoolElement{}, err
	}
	if pe.Policy, err = parsePolicy(pp); err != nil {
		return PoolElement{}, err
	}
	at, ok, err := w.next()
	if err != nil {
		return PoolElement{}, err
	}
	if ok {
		if at.typ != ParamSCTPTransport {
			return bad(fmt.Errorf("%w: ASAP transport is %v, not SCTP", ErrInvalidValue, at.typ))
		}
		t, err := parseTransport(at)
		if err = w.absorb(err); err != nil {
			return PoolElement{}, err
		}
		pe.ASAPTransport = &t
	}
	return pe, w.done()
}

// ServerInformation is the server information parameter: a registrar's
// identifier and its ENRP transport.
type ServerInformation struct {
	Server    ServerID
	Transport Transport // SCTP
}

func (e *encoder) serverInfo(si *ServerInformation) error {
	s := e.begin(ParamServerInformation)
	e.u32(uint32(si.Server))
	if si.Transport.Kind != ParamSCTPTransport {
		return fmt.Errorf("%w: server information transport must be SCTP", ErrInvalidValue)
	}
	if err := e.transport(&si.Transport); err != nil {
		return err
	}
	e.end(s)
	return nil
}

// AppendServerInformation appends si as a server information parameter.
func AppendServerInformation(b []byte, si *ServerInformation) ([]byte, error) {
	e := encoder{b: b}
	err := e.serverInfo(si)
	return e.b, err
}

// ParseServerInformation decodes a whole server information parameter.
func ParseServerInformation(b []byte) (ServerInformation, error) {
	p, _, err := nextTLV(b)
	if err != nil {
		return ServerInformation{}, err
	}
	return parseServerInfo(p)
}

func parseServerInfo(p tlv) (ServerInformation, error) {
	var si ServerInformation
	if p.typ != ParamServerInformation {
		return si, &ParamError{Type: ParamServerInformation, Err: ErrMissingParam}
	}
	if len(p.val) < 4 {
		return si, &ParamError{Type: p.typ, Param: p.raw, Err: ErrTruncated}
	}
	si.Server = ServerID(binary.BigEndian.Uint32(p.val))
	w := params{rest: p.val[4:]}
	t, err := w.expect(ParamSCTPTransport)
	if err != nil {
		return si, err
	}
	si.Transport, err = parseTransport(t)
	if err = w.absorb(err); err != nil {
		return si, err
	}
	return si, w.done()
}

func (e *encoder) causes(cs []Cause) error {
	s := e.begin(ParamOperationError)
	for _, c := range cs {
		if len(c.Info) > 0xffff-4 {
			return fmt.Errorf("%w: cause info of %d bytes", ErrInvalidValue, len(c.Info))
		}
		cs := len(e.b)
		e.u16(uint16(c.Code))
		e.u16(uint16(4 + len(c.Info)))
		e.raw(c.Info)
		n := len(e.b) - cs
		e.b = append(e.b, make([]byte, pad4(n))...)
		e.lastPad = pad4(n)
	}
	e.end(s)
	return nil
}

// AppendOperationError appends an operation error parameter holding cs.
func AppendOperationError(b []byte, cs []Cause) ([]byte, error) {
	e := encoder{b: b}
	err := e.causes(cs)
	return e.b, err
}

func parseCauses(p tlv) ([]Cause, error) {
	var cs []Cause
	rest := p.val
	for len(rest) > 0 {
		if len(rest) < 4 {
			return nil, &ParamError{Type: p.typ, Param: p.raw, Err: ErrTruncated}
		}
		n := int(binary.BigEndian.Uint16(rest[2:]))
		if n < 4 || n > len(rest) {
			return nil, &ParamError{Type: p.typ, Param: p.raw, Err: fmt.Errorf("%w: cause length %d", ErrInvalidLength, n)}
		}
		cs = append(cs, Cause{Code: CauseCode(binary.BigEndian.Uint16(rest)), Info: rest[4:n:n]})
		rest = rest[min(n+pad4(n), len(rest)):]
	}
	if len(cs) == 0 {
		return nil, &ParamError{Type: p.typ, Param: p.raw, Err: fmt.Errorf("%w: no cause", ErrInvalidValue)}
	}
	return cs, nil
}

func parseU32(p tlv) (uint32, error) {
	if len(p.val) != 4 {
		return 0, &ParamError{Type: p.typ, Param: p.raw, Err: fmt.Errorf("%w: %d bytes", ErrInvalidLength, len(p.val))}
	}
	return binary.BigEndian.Uint32(p.val), nil
}

func (e *encoder) checksum(c uint16) {
	s := e.begin(ParamPEChecksum)
	e.u16(c)
	e.end(s)
}

func parseChecksum(p tlv) (uint16, error) {
	if len(p.val) != 2 {
		return 0, &ParamError{Type: p.typ, Param: p.raw, Err: fmt.Errorf("%w: %d bytes", ErrInvalidLength, len(p.val))}
	}
	return binary.BigEndian.Uint16(p.val), nil
}

// AppendPEChecksum appends a PE checksum parameter (length 6, two pad
// bytes).
func AppendPEChecksum(b []byte, c uint16) []byte {
	e := encoder{b: b}
	e.checksum(c)
	return e.b
}

// Cause helpers for a registrar.

// PolicyCause returns an "inconsistent pooling policy" cause carrying the
// pool's policy.
func PolicyCause(pool *policy.Policy) Cause {
	b, _ := AppendPolicy(nil, pool)
	return Cause{Code: CauseInconsistentPolicy, Info: b}
}

// TransportCause returns an "inconsistent transport type" cause carrying the
// pool's transport.
func TransportCause(pool *Transport) Cause {
	b, _ := AppendTransport(nil, pool)
	return Cause{Code: CauseInconsistentTransport, Info: b}
}

var causeNames = map[CauseCode]string{
	CauseUnspecified: "unspecified error", CauseUnrecognizedParameter: "unrecognized parameter",
	CauseUnrecognizedMessage: "unrecognized message", CauseInvalidValues: "invalid values",
	CauseNonUniquePEID: "non-unique PE identifier", CauseInconsistentPolicy: "inconsistent pooling policy",
	CauseLackOfResources: "lack of resources", CauseInconsistentTransport: "inconsistent transport type",
	CauseInconsistentDataControl: "inconsistent data/control configuration",
	CauseUnknownPoolHandle:       "unknown pool handle", CauseRejectedSecurity: "rejected due to security considerations",
}

// String names the cause.
func (c CauseCode) String() string {
	if n, ok := causeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("cause(%#04x)", uint16(c))
}

// Error makes a cause usable as an error.
func (c Cause) Error() string { return "asap: " + c.Code.String() }
