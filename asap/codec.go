package asap

import (
	"encoding/binary"
	"fmt"
)

// HeaderLen is the length of the common message header.
const HeaderLen = 4

// MessageLength returns the on-wire size of the message whose header starts
// hdr, padding included, for framing a byte stream.
func MessageLength(hdr []byte) (int, error) {
	if len(hdr) < HeaderLen {
		return 0, ErrTruncated
	}
	n := int(binary.BigEndian.Uint16(hdr[2:]))
	if n < HeaderLen {
		return 0, fmt.Errorf("%w: message length %d", ErrInvalidLength, n)
	}
	return n + pad4(n), nil
}

// beginMessage starts a message in e.
func (e *encoder) beginMessage(t MessageType, flags uint8) int {
	start := len(e.b)
	e.b = append(e.b, uint8(t), flags, 0, 0)
	e.lastPad = 0
	return start
}

// endMessage sets the message length: everything but the last padding.
func (e *encoder) endMessage(start int) error {
	n := len(e.b) - start - e.lastPad
	if n > 0xffff {
		return fmt.Errorf("%w: message of %d bytes", ErrInvalidLength, n)
	}
	binary.BigEndian.PutUint16(e.b[start+2:], uint16(n))
	return nil
}

// parseHeader checks a message's header against type t and returns its
// flags and body. It accepts a length with or without the final padding,
// and up to three padding bytes after the message.
func parseHeader(b []byte, t MessageType) (uint8, []byte, error) {
	if len(b) < HeaderLen {
		return 0, nil, ErrTruncated
	}
	if MessageType(b[0]) != t {
		return 0, nil, fmt.Errorf("%w: message type %#02x, want %#02x", ErrInvalidValue, b[0], uint8(t))
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if n < HeaderLen || n > len(b) {
		return 0, nil, fmt.Errorf("%w: message length %d of %d bytes", ErrInvalidLength, n, len(b))
	}
	if len(b)-n > 3 {
		return 0, nil, fmt.Errorf("%w: %d bytes after the message", ErrInvalidLength, len(b)-n)
	}
	return b[1], b[HeaderLen:n], nil
}

// Unmarshal decodes one ASAP message. b holds exactly the message, perhaps
// followed by its padding. The result is a pointer to one of the message
// types of this package (*Registration, *HandleResolution, ...).
//
// A message of an unknown type gives an *UnrecognizedMessageError. An unknown
// parameter is handled as its action bits say: the message is discarded
// (with an *UnrecognizedParamError), or the parameter is skipped; when
// skipped parameters are to be reported, Unmarshal returns the message and an
// *UnrecognizedParamError with Skipped set.
func Unmarshal(b []byte) (Message, error) {
	if len(b) < HeaderLen {
		return nil, ErrTruncated
	}
	var m interface {
		Message
		UnmarshalBinary([]byte) error
	}
	switch t := MessageType(b[0]); t {
	case TypeRegistration:
		m = new(Registration)
	case TypeDeregistration:
		m = new(Deregistration)
	case TypeRegistrationResponse:
		m = new(RegistrationResponse)
	case TypeDeregistrationResponse:
		m = new(DeregistrationResponse)
	case TypeHandleResolution:
		m = new(HandleResolution)
	case TypeHandleResolutionResponse:
		m = new(HandleResolutionResponse)
	case TypeEndpointKeepAlive:
		m = new(EndpointKeepAlive)
	case TypeEndpointKeepAliveAck:
		m = new(EndpointKeepAliveAck)
	case TypeEndpointUnreachable:
		m = new(EndpointUnreachable)
	case TypeServerAnnounce:
		m = new(ServerAnnounce)
	case TypeCookie:
		m = new(Cookie)
	case TypeCookieEcho:
		m = new(CookieEcho)
	case TypeBusinessCard:
		m = new(BusinessCard)
	case TypeError:
		m = new(Error)
	default:
		return nil, &UnrecognizedMessageError{Type: t, Report: t>>6 == 1}
	}
	err := m.UnmarshalBinary(b)
	if err != nil {
		if up, ok := err.(*UnrecognizedParamError); ok && up.Skipped {
			return m, err
		}
		return nil, err
	}
	return m, nil
}

var messageNames = map[MessageType]string{
	TypeRegistration: "ASAP_REGISTRATION", TypeDeregistration: "ASAP_DEREGISTRATION",
	TypeRegistrationResponse: "ASAP_REGISTRATION_RESPONSE", TypeDeregistrationResponse: "ASAP_DEREGISTRATION_RESPONSE",
	TypeHandleResolution: "ASAP_HANDLE_RESOLUTION", TypeHandleResolutionResponse: "ASAP_HANDLE_RESOLUTION_RESPONSE",
	TypeEndpointKeepAlive: "ASAP_ENDPOINT_KEEP_ALIVE", TypeEndpointKeepAliveAck: "ASAP_ENDPOINT_KEEP_ALIVE_ACK",
	TypeEndpointUnreachable: "ASAP_ENDPOINT_UNREACHABLE", TypeServerAnnounce: "ASAP_SERVER_ANNOUNCE",
	TypeCookie: "ASAP_COOKIE", TypeCookieEcho: "ASAP_COOKIE_ECHO", TypeBusinessCard: "ASAP_BUSINESS_CARD",
	TypeError: "ASAP_ERROR",
}

// String returns the message type's RFC name.
func (t MessageType) String() string {
	if n, ok := messageNames[t]; ok {
		return n
	}
	return fmt.Sprintf("ASAP(%#02x)", uint8(t))
}

func flag(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
