package rsp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The session protocol's frames (spec/session.md). They travel as messages
// of the mapping with the tag (PPID) SessionPPID; RFC 5352 control messages
// (ASAP_COOKIE, ASAP_COOKIE_ECHO, ASAP_BUSINESS_CARD) travel beside them
// with PPID 11. Every frame starts with a 4-byte header, in network byte
// order: Type (1 byte), Flags (1 byte), Version (2 bytes, 1).

// SessionPPID is the PPID (over TCP: the mapping's channel tag) of rsp's
// session frames: "RSP" and 1 in ASCII, outside the values IANA assigned
// to protocols rsplib speaks.
const SessionPPID uint32 = 0x52535001

const sessionVersion = 1

// Frame types.
const (
	frameHello    = 1 // PU→PE: session id, first sequence number, flags
	frameHelloAck = 2 // PE→PU: flags
	frameData     = 3 // sequence number, ack request, application PPID, payload
	frameAck      = 4 // cumulative acknowledgement
	frameClose    = 5 // the sender closed the session
)

// Flags.
const (
	flagResume     = 1 << 0 // HELLO: the session failed over to this element
	flagCookie     = 1 << 1 // HELLO: an ASAP_COOKIE_ECHO follows
	flagStateless  = 1 << 0 // HELLO_ACK: each message stands alone
	flagAckRequest = 1 << 0 // DATA: acknowledge as soon as processed
)

// Frame lengths.
const (
	helloLen      = 4 + 16 + 8
	helloAckLen   = 4
	dataHeaderLen = 4 + 4 + 8
	ackLen        = 4 + 8
	closeLen      = 4
)

// errBadSessionFrame: a peer sent a session frame that does not decode.
var errBadSessionFrame = errors.New("rsp: bad session frame")

// sessionFrame is a decoded session frame. For DATA, Payload aliases the
// decoded bytes.
type sessionFrame struct {
	Type    uint8
	Flags   uint8
	ID      [16]byte // HELLO
	Seq     uint64   // HELLO: first sequence number; DATA: its number; ACK: up to
	PPID    uint32   // DATA
	Payload []byte   // DATA
}

func appendFrameHeader(b []byte, typ, flags uint8) []byte {
	return append(b, typ, flags, 0, sessionVersion)
}

func appendHello(b []byte, id [16]byte, first uint64, flags uint8) []byte {
	b = appendFrameHeader(b, frameHello, flags)
	b = append(b, id[:]...)
	return binary.BigEndian.AppendUint64(b, first)
}

func appendHelloAck(b []byte, flags uint8) []byte {
	return appendFrameHeader(b, frameHelloAck, flags)
}

// appendDataHeader appends a DATA frame's header; the payload follows it.
func appendDataHeader(b []byte, seq uint64, ppid uint32, flags uint8) []byte {
	b = appendFrameHeader(b, frameData, flags)
	b = binary.BigEndian.AppendUint32(b, ppid)
	return binary.BigEndian.AppendUint64(b, seq)
}

func appendAck(b []byte, upTo uint64) []byte {
	b = appendFrameHeader(b, frameAck, 0)
	return binary.BigEndian.AppendUint64(b, upTo)
}

func appendClose(b []byte) []byte { return appendFrameHeader(b, frameClose, 0) }

// parseSessionFrame decodes a session frame. Unknown types are an error;
// longer fixed frames than their type needs are an error too.
func parseSessionFrame(b []byte) (sessionFrame, error) {
	if len(b) < 4 {
		return sessionFrame{}, fmt.Errorf("%w: %d bytes", errBadSessionFrame, len(b))
	}
	f := sessionFrame{Type: b[0], Flags: b[1]}
	if v := binary.BigEndian.Uint16(b[2:]); v != sessionVersion {
		return f, fmt.Errorf("%w: version %d", errBadSessionFrame, v)
	}
	want := 0
	switch f.Type {
	case frameHello:
		want = helloLen
	case frameHelloAck:
		want = helloAckLen
	case frameAck:
		want = ackLen
	case frameClose:
		want = closeLen
	case frameData:
		if len(b) < dataHeaderLen {
			return f, fmt.Errorf("%w: DATA of %d bytes", errBadSessionFrame, len(b))
		}
		f.PPID = binary.BigEndian.Uint32(b[4:])
		f.Seq = binary.BigEndian.Uint64(b[8:])
		f.Payload = b[dataHeaderLen:]
		return f, nil
	default:
		return f, fmt.Errorf("%w: type %d", errBadSessionFrame, f.Type)
	}
	if len(b) != want {
		return f, fmt.Errorf("%w: type %d of %d bytes, want %d", errBadSessionFrame, f.Type, len(b), want)
	}
	switch f.Type {
	case frameHello:
		copy(f.ID[:], b[4:20])
		f.Seq = binary.BigEndian.Uint64(b[20:])
	case frameAck:
		f.Seq = binary.BigEndian.Uint64(b[4:])
	}
	return f, nil
}
