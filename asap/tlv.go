package asap

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Decoding errors. Errors that name a parameter are *ParamError values
// wrapping one of these.
var (
	// ErrTruncated: the bytes end inside a header, parameter or field.
	ErrTruncated = errors.New("asap: truncated")
	// ErrInvalidLength: a length field is smaller than its header or
	// larger than what encloses it, or a fixed-size item has another size.
	ErrInvalidLength = errors.New("asap: invalid length")
	// ErrInvalidValue: a field holds a value the protocol does not allow.
	ErrInvalidValue = errors.New("asap: invalid value")
	// ErrMissingParam: a mandatory parameter is absent.
	ErrMissingParam = errors.New("asap: missing parameter")
)

// MaxPoolHandleLen is the longest pool handle accepted on either side, as in
// rsplib.
const MaxPoolHandleLen = 32

// ParamError is an error in one parameter. Param holds the whole parameter
// as received (for an "invalid values" error cause) when it could be
// delimited.
type ParamError struct {
	Type  ParamType
	Param []byte
	Err   error
}

func (e *ParamError) Error() string { return fmt.Sprintf("asap: parameter %v: %v", e.Type, e.Err) }
func (e *ParamError) Unwrap() error { return e.Err }

// UnrecognizedParamError reports a parameter of an unknown type whose action
// bits say to report it (01 and 11) or to stop (00 and 01). When Skipped is
// set the message was decoded anyway and Unmarshal returns it alongside this
// error; otherwise the message was discarded. Params holds each such
// parameter whole, for the "unrecognized parameter" error cause.
type UnrecognizedParamError struct {
	Params  [][]byte
	Report  bool
	Skipped bool
}

func (e *UnrecognizedParamError) Error() string {
	t := ParamType(0)
	if len(e.Params) > 0 && len(e.Params[0]) >= 2 {
		t = ParamType(binary.BigEndian.Uint16(e.Params[0]))
	}
	action := "message discarded"
	if e.Skipped {
		action = "skipped"
	}
	return fmt.Sprintf("asap: unrecognized parameter type %#04x (%s)", uint16(t), action)
}

// UnrecognizedMessageError reports a message of an unknown type. Report is
// set when its action bits (01) ask for an "unrecognized message" error.
type UnrecognizedMessageError struct {
	Type   MessageType
	Report bool
}

func (e *UnrecognizedMessageError) Error() string {
	return fmt.Sprintf("asap: unrecognized message type %#02x", uint8(e.Type))
}

func pad4(n int) int { return (4 - n&3) & 3 }

// encoder builds parameters with exact lengths and zero padding. lastPad is
// the padding after the most recent parameter, which an enclosing length
// does not count (RFC 5354).
type encoder struct {
	b       []byte
	lastPad int
}

func (e *encoder) begin(t ParamType) int {
	start := len(e.b)
	e.b = binary.BigEndian.AppendUint16(e.b, uint16(t))
	e.b = append(e.b, 0, 0)
	e.lastPad = 0
	return start
}

func (e *encoder) end(start int) {
	n := len(e.b) - start - e.lastPad
	binary.BigEndian.PutUint16(e.b[start+2:], uint16(n))
	p := pad4(n) - e.lastPad
	e.b = append(e.b, make([]byte, max(p, 0))...)
	e.lastPad = pad4(n)
}

func (e *encoder) u16(v uint16) { e.b = binary.BigEndian.AppendUint16(e.b, v); e.lastPad = 0 }
func (e *encoder) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v); e.lastPad = 0 }
func (e *encoder) raw(v []byte) { e.b = append(e.b, v...); e.lastPad = 0 }

func (e *encoder) bytesParam(t ParamType, v []byte) {
	s := e.begin(t)
	e.raw(v)
	e.end(s)
}

func (e *encoder) u32Param(t ParamType, v uint32) {
	s := e.begin(t)
	e.u32(v)
	e.end(s)
}

// tlv is one parameter as found on the wire.
type tlv struct {
	typ ParamType
	val []byte // value, without header or padding
	raw []byte // header and value
}

// nextTLV splits the first parameter off b. Padding after it is skipped when
// present; a last parameter may come without its padding.
func nextTLV(b []byte) (tlv, []byte, error) {
	if len(b) < 4 {
		return tlv{}, nil, ErrTruncated
	}
	t := ParamType(binary.BigEndian.Uint16(b))
	n := int(binary.BigEndian.Uint16(b[2:]))
	if n < 4 {
		return tlv{}, nil, &ParamError{Type: t, Err: fmt.Errorf("%w: %d", ErrInvalidLength, n)}
	}
	if n > len(b) {
		return tlv{}, nil, &ParamError{Type: t, Err: fmt.Errorf("%w: %d bytes, %d left", ErrTruncated, n, len(b))}
	}
	p := tlv{typ: t, val: b[4:n:n], raw: b[:n:n]}
	return p, b[min(n+pad4(n), len(b)):], nil
}

// known reports whether t is a parameter type of RFC 5354 or the handle
// resolution option.
func (t ParamType) known() bool {
	return t >= ParamIPv4Address && t <= ParamOpaqueTransport || t == ParamHandleResolutionOption
}

// params walks a sequence of parameters, applying the action bits to
// unknown ones (RFC 5354 §2.1).
type params struct {
	rest     []byte
	reported [][]byte // skipped unknown parameters to report
}

// next returns the next known parameter; ok is false at the end.
func (w *params) next() (p tlv, ok bool, err error) {
	for len(w.rest) > 0 {
		p, w.rest, err = nextTLV(w.rest)
		if err != nil {
			return p, false, err
		}
		if p.typ.known() {
			return p, true, nil
		}
		switch p.typ >> 14 {
		case 0:
			return p, false, &UnrecognizedParamError{Params: [][]byte{p.raw}}
		case 1:
			return p, false, &UnrecognizedParamError{Params: [][]byte{p.raw}, Report: true}
		case 3:
			w.reported = append(w.reported, p.raw)
		}
	}
	return tlv{}, false, nil
}

// expect returns the next known parameter, which must be of type t.
func (w *params) expect(t ParamType) (tlv, error) {
	p, ok, err := w.next()
	if err != nil {
		return p, err
	}
	if !ok {
		return p, &ParamError{Type: t, Err: ErrMissingParam}
	}
	if p.typ != t {
		return p, &ParamError{Type: t, Param: p.raw, Err: fmt.Errorf("%w: found %v instead", ErrMissingParam, p.typ)}
	}
	return p, nil
}

// absorb takes the skipped parameters to report out of a nested
// parameter's decoding error into w's own list, so that they are reported
// with the message's, and returns any other error.
func (w *params) absorb(err error) error {
	var up *UnrecognizedParamError
	if err != nil && errors.As(err, &up) && up.Skipped {
		w.reported = append(w.reported, up.Params...)
		return nil
	}
	return err
}

// done returns the error for skipped parameters that are to be reported.
func (w *params) done() error {
	if len(w.reported) == 0 {
		return nil
	}
	return &UnrecognizedParamError{Params: w.reported, Report: true, Skipped: true}
}

var paramNames = map[ParamType]string{
	ParamIPv4Address: "IPv4 address", ParamIPv6Address: "IPv6 address", ParamDCCPTransport: "DCCP transport",
	ParamSCTPTransport: "SCTP transport", ParamTCPTransport: "TCP transport", ParamUDPTransport: "UDP transport",
	ParamUDPLiteTransport: "UDP-Lite transport", ParamPolicy: "pool member selection policy",
	ParamPoolHandle: "pool handle", ParamPoolElement: "pool element", ParamServerInformation: "server information",
	ParamOperationError: "operation error", ParamCookie: "cookie", ParamPEIdentifier: "PE identifier",
	ParamPEChecksum: "PE checksum", ParamOpaqueTransport: "opaque transport",
	ParamHandleResolutionOption: "handle resolution option",
}

// String names the parameter type.
func (t ParamType) String() string {
	if n, ok := paramNames[t]; ok {
		return n
	}
	return fmt.Sprintf("parameter(%#04x)", uint16(t))
}
