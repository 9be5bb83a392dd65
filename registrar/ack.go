package registrar

import (
	"encoding/binary"

	"github.com/rsp-go/rsp/asap"
)

// plainKeepAliveAck returns the pool handle and the identifier of an
// ASAP_ENDPOINT_KEEP_ALIVE_ACK in its plain form, a header, a pool handle
// parameter and a PE identifier parameter and nothing else, as every pool
// element sends it, without decoding it into a message: at 10^6 elements
// the decoded acknowledgements were most of what the registrar allocated,
// and so most of its garbage collection. ok is false for any other
// message, which asap.Unmarshal decodes and judges.
func plainKeepAliveAck(b []byte) (handle []byte, id asap.PEID, ok bool) {
	if len(b) < asap.HeaderLen || asap.MessageType(b[0]) != asap.TypeEndpointKeepAliveAck ||
		int(binary.BigEndian.Uint16(b[2:])) != len(b) {
		return nil, 0, false
	}
	p := b[asap.HeaderLen:]
	if len(p) < 4 || asap.ParamType(binary.BigEndian.Uint16(p)) != asap.ParamPoolHandle {
		return nil, 0, false
	}
	hl := int(binary.BigEndian.Uint16(p[2:]))
	padded := (hl + 3) &^ 3
	if hl <= 4 || padded > len(p) {
		return nil, 0, false
	}
	handle, p = p[4:hl], p[padded:]
	if len(p) != 8 || asap.ParamType(binary.BigEndian.Uint16(p)) != asap.ParamPEIdentifier || binary.BigEndian.Uint16(p[2:]) != 8 {
		return nil, 0, false
	}
	return handle, asap.PEID(binary.BigEndian.Uint32(p[4:])), true
}

// ackHandle returns the pool handle h as a string, the one of the last
// acknowledgement when equal: the acknowledgements of a connection mostly
// name one pool, and need no string each. Reader only.
func (pc *peerConn) ackHandle(h []byte) asap.PoolHandle {
	if string(h) != string(pc.lastAck) {
		pc.lastAck = asap.PoolHandle(h)
	}
	return pc.lastAck
}
