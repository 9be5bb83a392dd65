package mapping

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// FrameHeaderLen is the length of the TCP mapping's frame header. The
// frame format (framing, heartbeat, channel tag, and how retrieval of what
// was not delivered is served) is specified in spec/tcp-mapping.md at the
// root of the module. In short: a 12-byte header, Type u8 | Flags u8 |
// Reserved u16 | Payload Length u32 | Tag u32, in network byte order, then
// the payload without padding. FrameData's Tag is the message's PPID;
// FrameHeartbeat is answered with a FrameHeartbeatAck of the same Tag and
// payload; an unknown type with the top bit set is skipped, any other ends
// the connection, as does a payload over Config.MaxMessageSize.
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
