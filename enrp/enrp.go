// Package enrp encodes and decodes the messages of ENRP (RFC 5353), the
// protocol registrars use among themselves, sharing the parameter codec of
// package asap.
package enrp

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/rsp-go/rsp/asap"
)

// MessageType is an ENRP message type. The numbers overlap ASAP's; the
// transport (SCTP PPID 12) tells them apart.
type MessageType uint8

// ENRP message types of RFC 5353.
const (
	TypePresence            MessageType = 0x01
	TypeHandleTableRequest  MessageType = 0x02
	TypeHandleTableResponse MessageType = 0x03
	TypeHandleUpdate        MessageType = 0x04
	TypeListRequest         MessageType = 0x05
	TypeListResponse        MessageType = 0x06
	TypeInitTakeover        MessageType = 0x07
	TypeInitTakeoverAck     MessageType = 0x08
	TypeTakeoverServer      MessageType = 0x09
	TypeError               MessageType = 0x0a
)

var names = map[MessageType]string{
	TypePresence: "ENRP_PRESENCE", TypeHandleTableRequest: "ENRP_HANDLE_TABLE_REQUEST",
	TypeHandleTableResponse: "ENRP_HANDLE_TABLE_RESPONSE", TypeHandleUpdate: "ENRP_HANDLE_UPDATE",
	TypeListRequest: "ENRP_LIST_REQUEST", TypeListResponse: "ENRP_LIST_RESPONSE",
	TypeInitTakeover: "ENRP_INIT_TAKEOVER", TypeInitTakeoverAck: "ENRP_INIT_TAKEOVER_ACK",
	TypeTakeoverServer: "ENRP_TAKEOVER_SERVER", TypeError: "ENRP_ERROR",
}

// String returns the message type's RFC name.
func (t MessageType) String() string {
	if n, ok := names[t]; ok {
		return n
	}
	return fmt.Sprintf("ENRP(%#02x)", uint8(t))
}

// UpdateAction is the action of a handle update.
type UpdateAction uint16

// Handle update actions.
const (
	AddPE UpdateAction = 0
	DelPE UpdateAction = 1
)

// ErrInvalid is returned for ENRP messages that do not decode.
var ErrInvalid = errors.New("enrp: invalid message")

// Header is what every ENRP message carries after the common header: the
// sending and the receiving server's identifiers (receiver 0 for a
// group-cast).
type Header struct {
	Sender   asap.ServerID
	Receiver asap.ServerID
}

// Message is an ENRP message.
type Message interface {
	Type() MessageType
	AppendBinary(b []byte) ([]byte, error)
}

// Presence (ENRP_PRESENCE) announces a server, with its PE checksum and its
// information. ReplyRequired is the R flag.
type Presence struct {
	Header
	ReplyRequired bool
	Checksum      uint16
	Info          *asap.ServerInformation // nil when absent
}

// HandleTableRequest (ENRP_HANDLE_TABLE_REQUEST) asks for the handlespace;
// OwnChildrenOnly (the W flag) for the receiver's own pool elements only.
type HandleTableRequest struct {
	Header
	OwnChildrenOnly bool
}

// PoolEntry is a pool in a handle table response: its handle and elements.
type PoolEntry struct {
	Handle asap.PoolHandle
	PEs    []asap.PoolElement
}

// HandleTableResponse (ENRP_HANDLE_TABLE_RESPONSE) carries pools. Reject is
// the R flag (no entries then), More the M flag.
type HandleTableResponse struct {
	Header
	Reject bool
	More   bool
	Pools  []PoolEntry
}

// HandleUpdate (ENRP_HANDLE_UPDATE) adds or removes one pool element.
// TakeoverSuggested is rsplib's T flag.
type HandleUpdate struct {
	Header
	TakeoverSuggested bool
	Action            UpdateAction
	Handle            asap.PoolHandle
	PE                asap.PoolElement
}

// ListRequest (ENRP_LIST_REQUEST) asks for the peer list.
type ListRequest struct{ Header }

// ListResponse (ENRP_LIST_RESPONSE) lists the peers. Reject is the R flag.
type ListResponse struct {
	Header
	Reject  bool
	Servers []asap.ServerInformation
}

// InitTakeover (ENRP_INIT_TAKEOVER) starts the takeover of Target.
type InitTakeover struct {
	Header
	Target asap.ServerID
}

// InitTakeoverAck (ENRP_INIT_TAKEOVER_ACK) agrees to a takeover of Target.
type InitTakeoverAck struct {
	Header
	Target asap.ServerID
}

// TakeoverServer (ENRP_TAKEOVER_SERVER) completes the takeover of Target.
type TakeoverServer struct {
	Header
	Target asap.ServerID
}

// Error (ENRP_ERROR) reports an operation error.
type Error struct {
	Header
	Causes []asap.Cause
}

// Type returns the message type.
func (Presence) Type() MessageType            { return TypePresence }
func (HandleTableRequest) Type() MessageType  { return TypeHandleTableRequest }
func (HandleTableResponse) Type() MessageType { return TypeHandleTableResponse }
func (HandleUpdate) Type() MessageType        { return TypeHandleUpdate }
func (ListRequest) Type() MessageType         { return TypeListRequest }
func (ListResponse) Type() MessageType        { return TypeListResponse }
func (InitTakeover) Type() MessageType        { return TypeInitTakeover }
func (InitTakeoverAck) Type() MessageType     { return TypeInitTakeoverAck }
func (TakeoverServer) Type() MessageType      { return TypeTakeoverServer }
func (Error) Type() MessageType               { return TypeError }

func bit(b bool, mask uint8) uint8 {
	if b {
		return mask
	}
	return 0
}

// msg builds one message: header, server identifiers, fixed fields and
// parameters, with the RFC's length (last padding not counted).
type msg struct {
	b         []byte
	start     int
	lastParam int // start of the last parameter, or -1
}

func begin(b []byte, t MessageType, flags uint8, h Header) *msg {
	m := &msg{b: b, start: len(b), lastParam: -1}
	m.b = append(m.b, uint8(t), flags, 0, 0)
	m.b = binary.BigEndian.AppendUint32(m.b, uint32(h.Sender))
	m.b = binary.BigEndian.AppendUint32(m.b, uint32(h.Receiver))
	return m
}

func (m *msg) u32(v uint32) { m.b = binary.BigEndian.AppendUint32(m.b, v); m.lastParam = -1 }

func (m *msg) param(f func([]byte) ([]byte, error)) error {
	at := len(m.b)
	b, err := f(m.b)
	if err != nil {
		return err
	}
	m.b, m.lastParam = b, at
	return nil
}

func (m *msg) end() ([]byte, error) {
	n := len(m.b) - m.start
	if m.lastParam >= 0 {
		n = m.lastParam - m.start + asap.ParamLen(m.b[m.lastParam:])
	}
	if n > 0xffff {
		return nil, fmt.Errorf("%w: message of %d bytes", ErrInvalid, n)
	}
	binary.BigEndian.PutUint16(m.b[m.start+2:], uint16(n))
	return m.b, nil
}

// AppendBinary appends the message's wire form to b.
func (p Presence) AppendBinary(b []byte) ([]byte, error) {
	m := begin(b, TypePresence, bit(p.ReplyRequired, 1), p.Header)
	m.param(func(b []byte) ([]byte, error) { return asap.AppendPEChecksum(b, p.Checksum), nil })
	if p.Info != nil {
		if err := m.param(func(b []byte) ([]byte, error) { return asap.AppendServerInformation(b, p.Info) }); err != nil {
			return b, err
		}
	}
	return m.end()
}

// AppendBinary appends the message's wire form to b.
func (r HandleTableRequest) AppendBinary(b []byte) ([]byte, error) {
	return begin(b, TypeHandleTableRequest, bit(r.OwnChildrenOnly, 1), r.Header).end()
}

// AppendBinary appends the message's wire form to b.
func (r HandleTableResponse) AppendBinary(b []byte) ([]byte, error) {
	m := begin(b, TypeHandleTableResponse, bit(r.Reject, 1)|bit(r.More, 2), r.Header)
	for _, pool := range r.Pools {
		if len(pool.PEs) == 0 {
			return b, fmt.Errorf("%w: pool %q without elements", ErrInvalid, pool.Handle)
		}
		if err := m.param(func(b []byte) ([]byte, error) { return asap.AppendPoolHandle(b, pool.Handle) }); err != nil {
			return b, err
		}
		for i := range pool.PEs {
			if err := m.param(func(b []byte) ([]byte, error) { return asap.AppendPoolElement(b, &pool.PEs[i]) }); err != nil {
				return b, err
			}
		}
	}
	return m.end()
}

// AppendBinary appends the message's wire form to b.
func (u HandleUpdate) AppendBinary(b []byte) ([]byte, error) {
	m := begin(b, TypeHandleUpdate, bit(u.TakeoverSuggested, 1), u.Header)
	m.u32(uint32(u.Action) << 16)
	if err := m.param(func(b []byte) ([]byte, error) { return asap.AppendPoolHandle(b, u.Handle) }); err != nil {
		return b, err
	}
	if err := m.param(func(b []byte) ([]byte, error) { return asap.AppendPoolElement(b, &u.PE) }); err != nil {
		return b, err
	}
	return m.end()
}

// AppendBinary appends the message's wire form to b.
func (r ListRequest) AppendBinary(b []byte) ([]byte, error) {
	return begin(b, TypeListRequest, 0, r.Header).end()
}

// AppendBinary appends the message's wire form to b.
func (r ListResponse) AppendBinary(b []byte) ([]byte, error) {
	m := begin(b, TypeListResponse, bit(r.Reject, 1), r.Header)
	for i := range r.Servers {
		if err := m.param(func(b []byte) ([]byte, error) { return asap.AppendServerInformation(b, &r.Servers[i]) }); err != nil {
			return b, err
		}
	}
	return m.end()
}

func appendTarget(b []byte, t MessageType, h Header, target asap.ServerID) ([]byte, error) {
	m := begin(b, t, 0, h)
	m.u32(uint32(target))
	return m.end()
}

// AppendBinary appends the message's wire form to b.
func (t InitTakeover) AppendBinary(b []byte) ([]byte, error) {
	return appendTarget(b, TypeInitTakeover, t.Header, t.Target)
}

// AppendBinary appends the message's wire form to b.
func (t InitTakeoverAck) AppendBinary(b []byte) ([]byte, error) {
	return appendTarget(b, TypeInitTakeoverAck, t.Header, t.Target)
}

// AppendBinary appends the message's wire form to b.
func (t TakeoverServer) AppendBinary(b []byte) ([]byte, error) {
	return appendTarget(b, TypeTakeoverServer, t.Header, t.Target)
}

// AppendBinary appends the message's wire form to b.
func (e Error) AppendBinary(b []byte) ([]byte, error) {
	m := begin(b, TypeError, 0, e.Header)
	if err := m.param(func(b []byte) ([]byte, error) { return asap.AppendOperationError(b, e.Causes) }); err != nil {
		return b, err
	}
	return m.end()
}
