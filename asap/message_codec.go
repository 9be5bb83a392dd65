package asap

import (
	"encoding/binary"
	"fmt"

	"github.com/rsp-go/rsp/policy"
)

// Each message type has Type, AppendBinary and UnmarshalBinary. AppendBinary
// encodes as RFC 5354 says (exact lengths, padding not counted);
// UnmarshalBinary decodes one whole message into the receiver, which a
// server may reuse.

// Type returns TypeRegistration.
func (Registration) Type() MessageType { return TypeRegistration }

// AppendBinary appends the message's wire form to b.
func (m Registration) AppendBinary(b []byte) ([]byte, error) {
	e := encoder{b: b}
	s := e.beginMessage(TypeRegistration, 0)
	if err := e.handle(m.Handle); err != nil {
		return b, err
	}
	if err := e.poolElement(&m.PE); err != nil {
		return b, err
	}
	return e.b, e.endMessage(s)
}

// UnmarshalBinary decodes an ASAP_REGISTRATION.
func (m *Registration) UnmarshalBinary(b []byte) error {
	_, body, err := parseHeader(b, TypeRegistration)
	if err != nil {
		return err
	}
	w := params{rest: body}
	*m = Registration{}
	if err := handleThen(&w, &m.Handle); err != nil {
		return err
	}
	p, err := w.expect(ParamPoolElement)
	if err != nil {
		return err
	}
	m.PE, err = parsePoolElement(p)
	if err = w.absorb(err); err != nil {
		return err
	}
	return finish(&w)
}

// handleThen reads the pool handle parameter that starts most messages.
func handleThen(w *params, h *PoolHandle) error {
	p, err := w.expect(ParamPoolHandle)
	if err != nil {
		return err
	}
	*h, err = parseHandle(p)
	return err
}

// finish skips what follows the mandatory parameters (known parameters in
// excess are ignored; unknown ones per their action bits).
func finish(w *params) error {
	for {
		_, ok, err := w.next()
		if err != nil {
			return err
		}
		if !ok {
			return w.done()
		}
	}
}

// idMessage encodes the messages made of a pool handle and a PE identifier.
func idMessage(b []byte, t MessageType, flags uint8, h PoolHandle, id PEID, causes []Cause) ([]byte, error) {
	e := encoder{b: b}
	s := e.beginMessage(t, flags)
	if err := e.handle(h); err != nil {
		return b, err
	}
	e.u32Param(ParamPEIdentifier, uint32(id))
	if len(causes) > 0 {
		if err := e.causes(causes); err != nil {
			return b, err
		}
	}
	return e.b, e.endMessage(s)
}

// parseIDMessage decodes the messages made of a pool handle, a PE
// identifier and perhaps an operation error.
func parseIDMessage(b []byte, t MessageType, h *PoolHandle, id *PEID, causes *[]Cause) (uint8, error) {
	flags, body, err := parseHeader(b, t)
	if err != nil {
		return 0, err
	}
	w := params{rest: body}
	if err := handleThen(&w, h); err != nil {
		return 0, err
	}
	p, err := w.expect(ParamPEIdentifier)
	if err != nil {
		return 0, err
	}
	v, err := parseU32(p)
	if err != nil {
		return 0, err
	}
	*id = PEID(v)
	for {
		p, ok, err := w.next()
		if err != nil {
			return 0, err
		}
		if !ok {
			return flags, w.done()
		}
		if p.typ == ParamOperationError && causes != nil {
			if *causes, err = parseCauses(p); err != nil {
				return 0, err
			}
		}
	}
}

// Type returns TypeDeregistration.
func (Deregistration) Type() MessageType { return TypeDeregistration }

// AppendBinary appends the message's wire form to b.
func (m Deregistration) AppendBinary(b []byte) ([]byte, error) {
	return idMessage(b, TypeDeregistration, 0, m.Handle, m.ID, nil)
}

// UnmarshalBinary decodes an ASAP_DEREGISTRATION.
func (m *Deregistration) UnmarshalBinary(b []byte) error {
	*m = Deregistration{}
	_, err := parseIDMessage(b, TypeDeregistration, &m.Handle, &m.ID, nil)
	return err
}

// Type returns TypeRegistrationResponse.
func (RegistrationResponse) Type() MessageType { return TypeRegistrationResponse }

// AppendBinary appends the message's wire form to b.
func (m RegistrationResponse) AppendBinary(b []byte) ([]byte, error) {
	return idMessage(b, TypeRegistrationResponse, flag(m.Reject), m.Handle, m.ID, m.Causes)
}

// UnmarshalBinary decodes an ASAP_REGISTRATION_RESPONSE.
func (m *RegistrationResponse) UnmarshalBinary(b []byte) error {
	*m = RegistrationResponse{}
	flags, err := parseIDMessage(b, TypeRegistrationResponse, &m.Handle, &m.ID, &m.Causes)
	m.Reject = flags&1 != 0
	return err
}

// Type returns TypeDeregistrationResponse.
func (DeregistrationResponse) Type() MessageType { return TypeDeregistrationResponse }

// AppendBinary appends the message's wire form to b.
func (m DeregistrationResponse) AppendBinary(b []byte) ([]byte, error) {
	return idMessage(b, TypeDeregistrationResponse, 0, m.Handle, m.ID, m.Causes)
}

// UnmarshalBinary decodes an ASAP_DEREGISTRATION_RESPONSE.
func (m *DeregistrationResponse) UnmarshalBinary(b []byte) error {
	*m = DeregistrationResponse{}
	_, err := parseIDMessage(b, TypeDeregistrationResponse, &m.Handle, &m.ID, &m.Causes)
	return err
}

// Type returns TypeHandleResolution.
func (HandleResolution) Type() MessageType { return TypeHandleResolution }

// AppendBinary appends the message's wire form to b.
func (m HandleResolution) AppendBinary(b []byte) ([]byte, error) {
	e := encoder{b: b}
	s := e.beginMessage(TypeHandleResolution, flag(m.Subscribe))
	if err := e.handle(m.Handle); err != nil {
		return b, err
	}
	if m.Items != 0 {
		e.u32Param(ParamHandleResolutionOption, m.Items)
	}
	return e.b, e.endMessage(s)
}

// UnmarshalBinary decodes an ASAP_HANDLE_RESOLUTION.
func (m *HandleResolution) UnmarshalBinary(b []byte) error {
	flags, body, err := parseHeader(b, TypeHandleResolution)
	if err != nil {
		return err
	}
	*m = HandleResolution{Subscribe: flags&1 != 0}
	w := params{rest: body}
	if err := handleThen(&w, &m.Handle); err != nil {
		return err
	}
	for {
		p, ok, err := w.next()
		if err != nil {
			return err
		}
		if !ok {
			return w.done()
		}
		if p.typ == ParamHandleResolutionOption {
			if m.Items, err = parseU32(p); err != nil {
				return err
			}
		}
	}
}

// Type returns TypeHandleResolutionResponse.
func (HandleResolutionResponse) Type() MessageType { return TypeHandleResolutionResponse }

// AppendBinary appends the message's wire form to b.
func (m HandleResolutionResponse) AppendBinary(b []byte) ([]byte, error) {
	return appendPoolList(b, TypeHandleResolutionResponse, flag(m.Accepted), m.Handle, m.Policy, m.PEs, m.Causes)
}

func appendPoolList(b []byte, t MessageType, flags uint8, h PoolHandle, pol *policy.Policy, pes []PoolElement, causes []Cause) ([]byte, error) {
	e := encoder{b: b}
	s := e.beginMessage(t, flags)
	if err := e.handle(h); err != nil {
		return b, err
	}
	if len(causes) > 0 {
		if err := e.causes(causes); err != nil {
			return b, err
		}
		return e.b, e.endMessage(s)
	}
	if pol != nil {
		if err := e.policy(pol); err != nil {
			return b, err
		}
	}
	for i := range pes {
		if err := e.poolElement(&pes[i]); err != nil {
			return b, err
		}
	}
	return e.b, e.endMessage(s)
}

// UnmarshalBinary decodes an ASAP_HANDLE_RESOLUTION_RESPONSE. It reuses the
// capacity of m.PEs.
func (m *HandleResolutionResponse) UnmarshalBinary(b []byte) error {
	flags, body, err := parseHeader(b, TypeHandleResolutionResponse)
	if err != nil {
		return err
	}
	*m = HandleResolutionResponse{Accepted: flags&1 != 0, PEs: m.PEs[:0]}
	return parsePoolList(body, &m.Handle, &m.Policy, &m.PEs, &m.Causes)
}

func parsePoolList(body []byte, h *PoolHandle, pol **policy.Policy, pes *[]PoolElement, causes *[]Cause) error {
	w := params{rest: body}
	if err := handleThen(&w, h); err != nil {
		return err
	}
	for {
		p, ok, err := w.next()
		if err != nil {
			return err
		}
		if !ok {
			return w.done()
		}
		switch p.typ {
		case ParamPolicy:
			v, err := parsePolicy(p)
			if err != nil {
				return err
			}
			*pol = &v
		case ParamPoolElement:
			pe, err := parsePoolElement(p)
			if err = w.absorb(err); err != nil {
				return err
			}
			*pes = append(*pes, pe)
		case ParamOperationError:
			if causes == nil {
				continue
			}
			if *causes, err = parseCauses(p); err != nil {
				return err
			}
		}
	}
}

// Type returns TypeEndpointKeepAlive.
func (EndpointKeepAlive) Type() MessageType { return TypeEndpointKeepAlive }

// AppendBinary appends the message's wire form to b. The PE identifier is
// appended, as rsplib does, when ID is not zero.
func (m EndpointKeepAlive) AppendBinary(b []byte) ([]byte, error) {
	e := encoder{b: b}
	s := e.beginMessage(TypeEndpointKeepAlive, flag(m.Home))
	e.u32(uint32(m.Server))
	if err := e.handle(m.Handle); err != nil {
		return b, err
	}
	if m.ID != 0 {
		e.u32Param(ParamPEIdentifier, uint32(m.ID))
	}
	return e.b, e.endMessage(s)
}

// UnmarshalBinary decodes an ASAP_ENDPOINT_KEEP_ALIVE.
func (m *EndpointKeepAlive) UnmarshalBinary(b []byte) error {
	flags, body, err := parseHeader(b, TypeEndpointKeepAlive)
	if err != nil {
		return err
	}
	if len(body) < 4 {
		return ErrTruncated
	}
	*m = EndpointKeepAlive{Home: flags&1 != 0, Server: ServerID(binary.BigEndian.Uint32(body))}
	w := params{rest: body[4:]}
	if err := handleThen(&w, &m.Handle); err != nil {
		return err
	}
	for {
		p, ok, err := w.next()
		if err != nil {
			return err
		}
		if !ok {
			return w.done()
		}
		if p.typ == ParamPEIdentifier {
			v, err := parseU32(p)
			if err != nil {
				return err
			}
			m.ID = PEID(v)
		}
	}
}

// Type returns TypeEndpointKeepAliveAck.
func (EndpointKeepAliveAck) Type() MessageType { return TypeEndpointKeepAliveAck }

// AppendBinary appends the message's wire form to b.
func (m EndpointKeepAliveAck) AppendBinary(b []byte) ([]byte, error) {
	return idMessage(b, TypeEndpointKeepAliveAck, 0, m.Handle, m.ID, nil)
}

// UnmarshalBinary decodes an ASAP_ENDPOINT_KEEP_ALIVE_ACK.
func (m *EndpointKeepAliveAck) UnmarshalBinary(b []byte) error {
	*m = EndpointKeepAliveAck{}
	_, err := parseIDMessage(b, TypeEndpointKeepAliveAck, &m.Handle, &m.ID, nil)
	return err
}

// Type returns TypeEndpointUnreachable.
func (EndpointUnreachable) Type() MessageType { return TypeEndpointUnreachable }

// AppendBinary appends the message's wire form to b.
func (m EndpointUnreachable) AppendBinary(b []byte) ([]byte, error) {
	return idMessage(b, TypeEndpointUnreachable, 0, m.Handle, m.ID, nil)
}

// UnmarshalBinary decodes an ASAP_ENDPOINT_UNREACHABLE.
func (m *EndpointUnreachable) UnmarshalBinary(b []byte) error {
	*m = EndpointUnreachable{}
	_, err := parseIDMessage(b, TypeEndpointUnreachable, &m.Handle, &m.ID, nil)
	return err
}

// Type returns TypeServerAnnounce.
func (ServerAnnounce) Type() MessageType { return TypeServerAnnounce }

// AppendBinary appends the message's wire form to b.
func (m ServerAnnounce) AppendBinary(b []byte) ([]byte, error) {
	e := encoder{b: b}
	s := e.beginMessage(TypeServerAnnounce, 0)
	e.u32(uint32(m.Server))
	for i := range m.Transports {
		t := &m.Transports[i]
		if t.Kind != ParamSCTPTransport && t.Kind != ParamTCPTransport {
			return b, fmt.Errorf("%w: announced transport %v", ErrInvalidValue, t.Kind)
		}
		if err := e.transport(t); err != nil {
			return b, err
		}
	}
	return e.b, e.endMessage(s)
}

// UnmarshalBinary decodes an ASAP_SERVER_ANNOUNCE.
func (m *ServerAnnounce) UnmarshalBinary(b []byte) error {
	_, body, err := parseHeader(b, TypeServerAnnounce)
	if err != nil {
		return err
	}
	if len(body) < 4 {
		return ErrTruncated
	}
	*m = ServerAnnounce{Server: ServerID(binary.BigEndian.Uint32(body))}
	w := params{rest: body[4:]}
	for {
		p, ok, err := w.next()
		if err != nil {
			return err
		}
		if !ok {
			return w.done()
		}
		if p.typ == ParamSCTPTransport || p.typ == ParamTCPTransport {
			t, err := parseTransport(p)
			if err = w.absorb(err); err != nil {
				return err
			}
			m.Transports = append(m.Transports, t)
		}
	}
}

func appendCookie(b []byte, t MessageType, c []byte) ([]byte, error) {
	if len(c) == 0 {
		return b, fmt.Errorf("%w: empty cookie", ErrInvalidValue)
	}
	e := encoder{b: b}
	s := e.beginMessage(t, 0)
	e.bytesParam(ParamCookie, c)
	return e.b, e.endMessage(s)
}

func parseCookie(b []byte, t MessageType) ([]byte, error) {
	_, body, err := parseHeader(b, t)
	if err != nil {
		return nil, err
	}
	w := params{rest: body}
	p, err := w.expect(ParamCookie)
	if err != nil {
		return nil, err
	}
	if len(p.val) == 0 {
		return nil, &ParamError{Type: ParamCookie, Param: p.raw, Err: fmt.Errorf("%w: empty cookie", ErrInvalidValue)}
	}
	return p.val, finish(&w)
}

// Type returns TypeCookie.
func (Cookie) Type() MessageType { return TypeCookie }

// AppendBinary appends the message's wire form to b.
func (m Cookie) AppendBinary(b []byte) ([]byte, error) { return appendCookie(b, TypeCookie, m.Cookie) }

// UnmarshalBinary decodes an ASAP_COOKIE. The cookie aliases b.
func (m *Cookie) UnmarshalBinary(b []byte) (err error) {
	m.Cookie, err = parseCookie(b, TypeCookie)
	return err
}

// Type returns TypeCookieEcho.
func (CookieEcho) Type() MessageType { return TypeCookieEcho }

// AppendBinary appends the message's wire form to b.
func (m CookieEcho) AppendBinary(b []byte) ([]byte, error) {
	return appendCookie(b, TypeCookieEcho, m.Cookie)
}

// UnmarshalBinary decodes an ASAP_COOKIE_ECHO. The cookie aliases b.
func (m *CookieEcho) UnmarshalBinary(b []byte) (err error) {
	m.Cookie, err = parseCookie(b, TypeCookieEcho)
	return err
}

// Type returns TypeBusinessCard.
func (BusinessCard) Type() MessageType { return TypeBusinessCard }

// AppendBinary appends the message's wire form to b: the handle, the policy
// when set (as rsplib sends it), and the pool elements, of which there must
// be at least one (RFC 5352 section 2.2.13; rsplib refuses a card without).
func (m BusinessCard) AppendBinary(b []byte) ([]byte, error) {
	if len(m.PEs) == 0 {
		return b, fmt.Errorf("%w: business card without pool elements", ErrInvalidValue)
	}
	return appendPoolList(b, TypeBusinessCard, 0, m.Handle, m.Policy, m.PEs, nil)
}

// UnmarshalBinary decodes an ASAP_BUSINESS_CARD, with or without rsplib's
// policy parameter after the handle. A card without pool elements is
// refused, as rsplib refuses it: it names no failover order.
func (m *BusinessCard) UnmarshalBinary(b []byte) error {
	_, body, err := parseHeader(b, TypeBusinessCard)
	if err != nil {
		return err
	}
	*m = BusinessCard{PEs: m.PEs[:0]}
	if err := parsePoolList(body, &m.Handle, &m.Policy, &m.PEs, nil); err != nil {
		return err
	}
	if len(m.PEs) == 0 {
		return fmt.Errorf("%w: business card without pool elements", ErrInvalidValue)
	}
	return nil
}

// Type returns TypeError.
func (Error) Type() MessageType { return TypeError }

// AppendBinary appends the message's wire form to b.
func (m Error) AppendBinary(b []byte) ([]byte, error) {
	e := encoder{b: b}
	s := e.beginMessage(TypeError, 0)
	if err := e.causes(m.Causes); err != nil {
		return b, err
	}
	return e.b, e.endMessage(s)
}

// UnmarshalBinary decodes an ASAP_ERROR.
func (m *Error) UnmarshalBinary(b []byte) error {
	_, body, err := parseHeader(b, TypeError)
	if err != nil {
		return err
	}
	w := params{rest: body}
	p, err := w.expect(ParamOperationError)
	if err != nil {
		return err
	}
	if m.Causes, err = parseCauses(p); err != nil {
		return err
	}
	return finish(&w)
}
