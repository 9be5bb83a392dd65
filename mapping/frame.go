package mapping

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The TCP mapping's frame format. TCP is a byte stream; the mapping turns it
// into messages, each with a channel tag that plays the part of SCTP's
// payload protocol identifier (PPID 11 for ASAP, 12 for ENRP, others for
// applications), and adds heartbeats so that a silent peer is noticed.
// Every frame starts with a 12-byte header, in network byte order:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Type      |     Flags     |           Reserved            |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                        Payload Length                         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                              Tag                              |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                 Payload (Payload Length bytes)                |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Type is FrameData (1), a message whose Tag is its PPID; FrameHeartbeat
// (2), which the receiver answers with a FrameHeartbeatAck (3) carrying the
// same Tag and payload. A frame of an unknown type whose top bit is set is
// skipped; any other unknown type ends the connection. Flags and Reserved
// are sent as zero and ignored. The payload has no padding. A receiver
// refuses payloads over its maximum (Config.MaxMessageSize) by closing the
// connection, since a byte stream cannot skip what it cannot trust.
const FrameHeaderLen = 12

// Frame types.
const (
	FrameData         uint8 = 1
	FrameHeartbeat    uint8 = 2
	FrameHeartbeatAck uint8 = 3
)

// ErrFrameTooLarge is returned when a peer announces a frame longer than
// the receiver accepts; the connection is then unusable.
var ErrFrameTooLarge = errors.New("mapping: frame too large")

// ErrBadFrame is returned for a frame of an unknown, mandatory type.
var ErrBadFrame = errors.New("mapping: bad frame")

// FrameHeader is a decoded frame header.
type FrameHeader struct {
	Type   uint8
	Flags  uint8
	Length uint32
	Tag    uint32
}

// AppendFrameHeader appends h's wire form to b.
func AppendFrameHeader(b []byte, h FrameHeader) []byte {
	b = append(b, h.Type, h.Flags, 0, 0)
	b = binary.BigEndian.AppendUint32(b, h.Length)
	return binary.BigEndian.AppendUint32(b, h.Tag)
}

// ParseFrameHeader decodes a frame header and checks its length against
// maxPayload.
func ParseFrameHeader(b []byte, maxPayload int) (FrameHeader, error) {
	if len(b) < FrameHeaderLen {
		return FrameHeader{}, fmt.Errorf("%w: header of %d bytes", ErrBadFrame, len(b))
	}
	h := FrameHeader{
		Type:   b[0],
		Flags:  b[1],
		Length: binary.BigEndian.Uint32(b[4:]),
		Tag:    binary.BigEndian.Uint32(b[8:]),
	}
	if uint64(h.Length) > uint64(maxPayload) {
		return h, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, h.Length, maxPayload)
	}
	switch h.Type {
	case FrameData, FrameHeartbeat, FrameHeartbeatAck:
	default:
		if h.Type&0x80 == 0 {
			return h, fmt.Errorf("%w: type %#02x", ErrBadFrame, h.Type)
		}
	}
	return h, nil
}
