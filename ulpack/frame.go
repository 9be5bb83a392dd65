package ulpack

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// PPID is the payload protocol identifier of the session channel: the SCTP
// PPID, or the TCP mapping's frame tag, of every session frame. It spells
// "RSP1" in ASCII. IANA has not assigned it (the registry's values are small
// numbers), and it differs from rsplib's pre-RFC 0xFAEEB5D1 and 0xFAEEB5D2.
// Only two rsp ends use it; toward rsplib only RFC 5352 messages flow, on
// PPID 11.
const PPID uint32 = 0x52535031

// Version is the session protocol version this package speaks.
const Version uint16 = 1

// FrameType is a session frame's type.
type FrameType uint8

// Frame types. A receiver ignores a frame of an unknown type whose top bit
// is set and treats any other unknown type as a protocol error.
const (
	FrameHello    FrameType = 0x01
	FrameHelloAck FrameType = 0x02
	FrameData     FrameType = 0x03
	FrameAck      FrameType = 0x04
	FramePing     FrameType = 0x05
	FrameGoAway   FrameType = 0x06
	FrameClose    FrameType = 0x07
)

var frameNames = [...]string{
	FrameHello: "HELLO", FrameHelloAck: "HELLO_ACK", FrameData: "DATA", FrameAck: "ACK",
	FramePing: "PING", FrameGoAway: "GOAWAY", FrameClose: "CLOSE",
}

func (t FrameType) String() string {
	if int(t) < len(frameNames) && frameNames[t] != "" {
		return frameNames[t]
	}
	return fmt.Sprintf("FrameType(%#02x)", uint8(t))
}

// Flags of the frames' flag byte.
const (
	FlagResume     uint8 = 0x01 // HELLO: resume the session after failover
	FlagCookie     uint8 = 0x02 // HELLO: an ASAP_COOKIE_ECHO follows on PPID 11
	FlagResumed    uint8 = 0x01 // HELLO_ACK: the element knew the session's state
	FlagStateless  uint8 = 0x02 // HELLO_ACK: each message stands alone
	FlagAckRequest uint8 = 0x01 // DATA: the application asks for an acknowledgement
	FlagAckNow     uint8 = 0x02 // DATA: the sender needs room; acknowledge without delay
	FlagReply      uint8 = 0x01 // PING: this is the answer
)

// Frame lengths: the common header and each frame's fixed part (header
// included). A HELLO_ACK that announces the element's MaxMessageSize is
// HelloAckLimitLen long.
const (
	HeaderLen        = 4
	HelloLen         = 36
	HelloAckLimitLen = 40
	DataLen          = 16 // before the payload
	AckLen           = 12
	PingLen          = 12
	GoAwayLen        = 16 // before the reason
	CloseLen         = 8  // before the reason
	MaxReasonLen     = 256
)

// SessionIDLen is the length of a session identifier.
const SessionIDLen = 16

// SessionID identifies a session across failovers. The pool user chooses
// it at random; all zeros is not valid.
type SessionID [SessionIDLen]byte

// Code says why a session ends (CLOSE) or an element stops serving it
// (GOAWAY).
type Code uint32

// Codes of CLOSE and GOAWAY.
const (
	CodeNormal        Code = 0 // the application closed the session
	CodeProtocolError Code = 1 // the peer broke this protocol
	CodeInternal      Code = 2 // the sender failed for a reason of its own
	CodeRefused       Code = 3 // the HELLO is refused (version, resume, or no sessions here)
	CodeShutdown      Code = 4 // the element is shutting down (GOAWAY)
)

var codeNames = [...]string{"NORMAL", "PROTOCOL_ERROR", "INTERNAL_ERROR", "REFUSED", "SHUTDOWN"}

func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("Code(%d)", uint32(c))
}

// Errors of the codec.
var (
	// ErrMalformed: a frame is shorter than its fixed part or has an
	// invalid field (sequence number 0, session identifier 0, version 0).
	ErrMalformed = errors.New("ulpack: malformed frame")
	// ErrUnknownFrame: a frame of an unknown type without the top bit.
	ErrUnknownFrame = errors.New("ulpack: unknown frame type")
)

// Frame is a session frame. Every frame type of this package implements it
// with a pointer receiver for its type and a value receiver for
// AppendBinary.
type Frame interface {
	// Type is the frame's type.
	Type() FrameType
	// AppendBinary appends the frame's wire form to b.
	AppendBinary(b []byte) ([]byte, error)
}

// Hello (HELLO) opens a session, pool user to element. Resume says that the
// session existed before, with another element; Next is the first PU→PE
// sequence number the user will send (1 for a new session, else the first
// unacknowledged one). Cookie says that an ASAP_COOKIE_ECHO follows on
// PPID 11, which the element reads before any DATA. Window is how many
// PE→PU messages beyond its cumulative acknowledgement the user accepts (0:
// DefaultWindow). Version is the highest version the user speaks (0:
// Version).
//
// MaxMessageSize is the longest DATA payload the user accepts, in bytes;
// 0 says nothing (a user that predates the field sends 0). It travels in
// 1024-byte units in the 16 bits after Version, so that the HELLO stays
// 36 bytes long (older elements recognise a session over TCP by a HELLO of
// that length): the encoding rounds it down to a multiple of 1024, at most
// MaxHelloMessageSize, and a size under 1024 goes as 0.
type Hello struct {
	Version        uint16
	Resume         bool
	Cookie         bool
	Window         uint32
	ID             SessionID
	Next           uint64
	MaxMessageSize uint32
}

// MaxHelloMessageSize is the largest Hello.MaxMessageSize a HELLO can
// carry: 65535 units of 1024 bytes. A larger one is sent as this.
const MaxHelloMessageSize = 0xffff << 10

// HelloAck (HELLO_ACK) accepts a session, element to pool user. Version is
// the version chosen, at most the HELLO's. Ack acknowledges PU→PE messages
// up to it (at least the HELLO's Next - 1); Resumed says the element knew
// the session's state, so that Ack is what it has processed. Stateless
// says that each message stands alone (an echo or lookup service): the
// session may fail over to any element of the pool without a cookie.
// Window is how many PU→PE messages beyond its cumulative acknowledgement
// it accepts (0: DefaultWindow). Version 0 means Version.
//
// MaxMessageSize is the longest DATA payload the element accepts, in
// bytes, or 0 when it says nothing: a HELLO_ACK with it non-zero is
// HelloAckLimitLen bytes long, one without it has the 36 bytes an element
// that predates the field sends (and a pool user that predates it ignores
// the 4 bytes more).
type HelloAck struct {
	Version        uint16
	Resumed        bool
	Stateless      bool
	Window         uint32
	ID             SessionID
	Ack            uint64
	MaxMessageSize uint32
}

// Data (DATA) carries one application message. Seq is its sequence number
// in its direction (from 1). PPID is the application's payload protocol
// identifier. AckRequest is the application's ack request; AckNow the
// sender's own request for an acknowledgement without delay.
type Data struct {
	Seq        uint64
	AckRequest bool
	AckNow     bool
	PPID       uint32
	Payload    []byte
}

// Ack (ACK) acknowledges every message of the other direction up to and
// including UpTo: the receiving application has processed them.
type Ack struct {
	UpTo uint64
}

// Ping (PING) asks the peer to answer with the same Opaque value and Reply
// set.
type Ping struct {
	Reply  bool
	Opaque uint64
}

// GoAway (GOAWAY) says that the element stops serving the session: the
// pool user should fail over. Ack acknowledges PU→PE messages up to it.
type GoAway struct {
	Code   Code
	Ack    uint64
	Reason string
}

// Close (CLOSE) ends the session for good: no failover follows.
type Close struct {
	Code   Code
	Reason string
}

// Unknown is a frame of an unknown type whose top bit is set; a receiver
// ignores it. Body is the frame after the common header.
type Unknown struct {
	FrameType FrameType
	Flags     uint8
	Body      []byte
}

func (*Hello) Type() FrameType     { return FrameHello }
func (*HelloAck) Type() FrameType  { return FrameHelloAck }
func (*Data) Type() FrameType      { return FrameData }
func (*Ack) Type() FrameType       { return FrameAck }
func (*Ping) Type() FrameType      { return FramePing }
func (*GoAway) Type() FrameType    { return FrameGoAway }
func (*Close) Type() FrameType     { return FrameClose }
func (u *Unknown) Type() FrameType { return u.FrameType }

func flag(set bool, f uint8) uint8 {
	if set {
		return f
	}
	return 0
}

func header(b []byte, t FrameType, flags uint8) []byte {
	return append(b, byte(t), flags, 0, 0)
}

// appendHello appends a HELLO or HELLO_ACK; units goes after the version
// (a HELLO's MaxMessageSize in 1024-byte units).
func appendHello(b []byte, t FrameType, flags uint8, v, units uint16, win uint32, id *SessionID, seq uint64) []byte {
	if v == 0 {
		v = Version
	}
	if win == 0 {
		win = DefaultWindow
	}
	b = header(b, t, flags)
	b = binary.BigEndian.AppendUint16(b, v)
	b = binary.BigEndian.AppendUint16(b, units)
	b = binary.BigEndian.AppendUint32(b, win)
	b = append(b, id[:]...)
	return binary.BigEndian.AppendUint64(b, seq)
}

// AppendBinary appends the frame's wire form to b.
func (h Hello) AppendBinary(b []byte) ([]byte, error) {
	flags := flag(h.Resume, FlagResume) | flag(h.Cookie, FlagCookie)
	units := uint16(min(h.MaxMessageSize, MaxHelloMessageSize) >> 10)
	return appendHello(b, FrameHello, flags, h.Version, units, h.Window, &h.ID, h.Next), nil
}

// AppendBinary appends the frame's wire form to b.
func (h HelloAck) AppendBinary(b []byte) ([]byte, error) {
	flags := flag(h.Resumed, FlagResumed) | flag(h.Stateless, FlagStateless)
	b = appendHello(b, FrameHelloAck, flags, h.Version, 0, h.Window, &h.ID, h.Ack)
	if h.MaxMessageSize != 0 {
		b = binary.BigEndian.AppendUint32(b, h.MaxMessageSize)
	}
	return b, nil
}

// AppendDataHeader appends a DATA frame's fixed part; the payload follows
// it. flags is a combination of FlagAckRequest and FlagAckNow.
func AppendDataHeader(b []byte, seq uint64, flags uint8, ppid uint32) []byte {
	b = header(b, FrameData, flags)
	b = binary.BigEndian.AppendUint64(b, seq)
	return binary.BigEndian.AppendUint32(b, ppid)
}

func (d *Data) flags() uint8 { return flag(d.AckRequest, FlagAckRequest) | flag(d.AckNow, FlagAckNow) }

// AppendBinary appends the frame's wire form to b.
func (d Data) AppendBinary(b []byte) ([]byte, error) {
	return append(AppendDataHeader(b, d.Seq, d.flags(), d.PPID), d.Payload...), nil
}

// AppendAck appends an ACK frame acknowledging up to upTo.
func AppendAck(b []byte, upTo uint64) []byte {
	return binary.BigEndian.AppendUint64(header(b, FrameAck, 0), upTo)
}

// AppendBinary appends the frame's wire form to b.
func (a Ack) AppendBinary(b []byte) ([]byte, error) { return AppendAck(b, a.UpTo), nil }

// AppendBinary appends the frame's wire form to b.
func (p Ping) AppendBinary(b []byte) ([]byte, error) {
	return binary.BigEndian.AppendUint64(header(b, FramePing, flag(p.Reply, FlagReply)), p.Opaque), nil
}

func reason(b []byte, r string) []byte {
	if len(r) > MaxReasonLen {
		r = r[:MaxReasonLen]
	}
	return append(b, r...)
}

// AppendBinary appends the frame's wire form to b. A reason longer than
// MaxReasonLen bytes is cut there.
func (g GoAway) AppendBinary(b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint32(header(b, FrameGoAway, 0), uint32(g.Code))
	return reason(binary.BigEndian.AppendUint64(b, g.Ack), g.Reason), nil
}

// AppendBinary appends the frame's wire form to b. A reason longer than
// MaxReasonLen bytes is cut there.
func (c Close) AppendBinary(b []byte) ([]byte, error) {
	return reason(binary.BigEndian.AppendUint32(header(b, FrameClose, 0), uint32(c.Code)), c.Reason), nil
}

// AppendBinary appends the frame's wire form to b.
func (u Unknown) AppendBinary(b []byte) ([]byte, error) {
	return append(header(b, u.FrameType, u.Flags), u.Body...), nil
}

// PeekType returns the type of the frame in b without decoding it.
func PeekType(b []byte) (FrameType, error) {
	if len(b) < HeaderLen {
		return 0, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	return FrameType(b[0]), nil
}

func short(t FrameType, n, want int) error {
	return fmt.Errorf("%w: %v of %d bytes, want %d", ErrMalformed, t, n, want)
}

func parseHello(b []byte, t FrameType) (flags uint8, v uint16, win uint32, id SessionID, seq uint64, err error) {
	if len(b) < HelloLen {
		return 0, 0, 0, id, 0, short(t, len(b), HelloLen)
	}
	v = binary.BigEndian.Uint16(b[4:])
	copy(id[:], b[12:28])
	if v == 0 {
		return 0, 0, 0, id, 0, fmt.Errorf("%w: %v version 0", ErrMalformed, t)
	}
	if id == (SessionID{}) {
		return 0, 0, 0, id, 0, fmt.Errorf("%w: %v session identifier 0", ErrMalformed, t)
	}
	win = binary.BigEndian.Uint32(b[8:])
	if win == 0 {
		return 0, 0, 0, id, 0, fmt.Errorf("%w: %v window 0", ErrMalformed, t)
	}
	return b[1], v, win, id, binary.BigEndian.Uint64(b[28:]), nil
}

// ParseData decodes a DATA frame. The payload aliases b.
func ParseData(b []byte) (Data, error) {
	if len(b) < DataLen {
		return Data{}, short(FrameData, len(b), DataLen)
	}
	if b[0] != byte(FrameData) {
		return Data{}, fmt.Errorf("%w: %v, want DATA", ErrMalformed, FrameType(b[0]))
	}
	d := Data{
		Seq:        binary.BigEndian.Uint64(b[4:]),
		AckRequest: b[1]&FlagAckRequest != 0,
		AckNow:     b[1]&FlagAckNow != 0,
		PPID:       binary.BigEndian.Uint32(b[12:]),
		Payload:    b[DataLen:],
	}
	if d.Seq == 0 {
		return Data{}, fmt.Errorf("%w: DATA sequence number 0", ErrMalformed)
	}
	return d, nil
}

// Parser decodes frames into frames of its own, so that parsing allocates
// nothing. The zero value is ready; a Parser is not safe for concurrent use.
type Parser struct {
	hello    Hello
	helloAck HelloAck
	data     Data
	ack      Ack
	ping     Ping
	goAway   GoAway
	close    Close
	unknown  Unknown
}

// Parse decodes the frame in b. The frame it returns belongs to p and is
// valid until the next call; byte fields (Data.Payload, Unknown.Body) alias
// b. Fixed-length frames may be longer than their fixed part (later
// versions may add fields); the extra bytes are ignored. A frame of an
// unknown type with the top bit set comes back as *Unknown; other unknown
// types are ErrUnknownFrame.
func (p *Parser) Parse(b []byte) (Frame, error) {
	t, err := PeekType(b)
	if err != nil {
		return nil, err
	}
	switch t {
	case FrameHello, FrameHelloAck:
		flags, v, win, id, seq, err := parseHello(b, t)
		if err != nil {
			return nil, err
		}
		if t == FrameHello {
			p.hello = Hello{Version: v, Resume: flags&FlagResume != 0, Cookie: flags&FlagCookie != 0, Window: win, ID: id, Next: seq,
				MaxMessageSize: uint32(binary.BigEndian.Uint16(b[6:])) << 10}
			return &p.hello, nil
		}
		p.helloAck = HelloAck{Version: v, Resumed: flags&FlagResumed != 0, Stateless: flags&FlagStateless != 0, Window: win, ID: id, Ack: seq}
		if len(b) >= HelloAckLimitLen {
			p.helloAck.MaxMessageSize = binary.BigEndian.Uint32(b[HelloLen:])
		}
		return &p.helloAck, nil
	case FrameData:
		if p.data, err = ParseData(b); err != nil {
			return nil, err
		}
		return &p.data, nil
	case FrameAck:
		if len(b) < AckLen {
			return nil, short(t, len(b), AckLen)
		}
		p.ack = Ack{UpTo: binary.BigEndian.Uint64(b[4:])}
		return &p.ack, nil
	case FramePing:
		if len(b) < PingLen {
			return nil, short(t, len(b), PingLen)
		}
		p.ping = Ping{Reply: b[1]&FlagReply != 0, Opaque: binary.BigEndian.Uint64(b[4:])}
		return &p.ping, nil
	case FrameGoAway:
		if len(b) < GoAwayLen {
			return nil, short(t, len(b), GoAwayLen)
		}
		p.goAway = GoAway{
			Code:   Code(binary.BigEndian.Uint32(b[4:])),
			Ack:    binary.BigEndian.Uint64(b[8:]),
			Reason: string(b[GoAwayLen:]),
		}
		return &p.goAway, nil
	case FrameClose:
		if len(b) < CloseLen {
			return nil, short(t, len(b), CloseLen)
		}
		p.close = Close{Code: Code(binary.BigEndian.Uint32(b[4:])), Reason: string(b[CloseLen:])}
		return &p.close, nil
	}
	if t&0x80 == 0 {
		return nil, fmt.Errorf("%w: %v", ErrUnknownFrame, t)
	}
	p.unknown = Unknown{FrameType: t, Flags: b[1], Body: b[HeaderLen:]}
	return &p.unknown, nil
}

// ParseFrame decodes the frame in b with a Parser of its own; see
// Parser.Parse. A loop that parses many frames keeps one Parser instead.
func ParseFrame(b []byte) (Frame, error) { return new(Parser).Parse(b) }
