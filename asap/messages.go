package asap

import "github.com/rsp-go/rsp/policy"

// MessageType is an ASAP message type. ASAP and ENRP type numbers overlap;
// the transport (SCTP PPID 11 or 12, or the port) tells them apart.
type MessageType uint8

// ASAP message types of RFC 5352.
const (
	TypeRegistration             MessageType = 0x01
	TypeDeregistration           MessageType = 0x02
	TypeRegistrationResponse     MessageType = 0x03
	TypeDeregistrationResponse   MessageType = 0x04
	TypeHandleResolution         MessageType = 0x05
	TypeHandleResolutionResponse MessageType = 0x06
	TypeEndpointKeepAlive        MessageType = 0x07
	TypeEndpointKeepAliveAck     MessageType = 0x08
	TypeEndpointUnreachable      MessageType = 0x09
	TypeServerAnnounce           MessageType = 0x0a
	TypeCookie                   MessageType = 0x0b
	TypeCookieEcho               MessageType = 0x0c
	TypeBusinessCard             MessageType = 0x0d
	TypeError                    MessageType = 0x0e
)

// Message is an ASAP message.
type Message interface {
	// Type is the message's type code.
	Type() MessageType
	// AppendBinary appends the message's wire form (header, fields, padded
	// parameters) to b.
	AppendBinary(b []byte) ([]byte, error)
}

// Registration (ASAP_REGISTRATION) asks a registrar to add or update a pool
// element.
type Registration struct {
	Handle PoolHandle
	PE     PoolElement
}

// Deregistration (ASAP_DEREGISTRATION) asks the home registrar to remove a
// pool element.
type Deregistration struct {
	Handle PoolHandle
	ID     PEID
}

// RegistrationResponse (ASAP_REGISTRATION_RESPONSE) answers a registration.
// Reject is the R flag; Causes explain a rejection, or warn without one.
type RegistrationResponse struct {
	Reject bool
	Handle PoolHandle
	ID     PEID
	Causes []Cause
}

// DeregistrationResponse (ASAP_DEREGISTRATION_RESPONSE) answers a
// deregistration, or tells a pool element its registration expired. Causes
// mean it failed.
type DeregistrationResponse struct {
	Handle PoolHandle
	ID     PEID
	Causes []Cause
}

// HandleResolution (ASAP_HANDLE_RESOLUTION) asks for the pool elements of a
// pool. Subscribe is the S flag. Items is the handle resolution option: how
// many elements the requester wants (0: the option is absent, the registrar
// chooses; 0xFFFFFFFF: all).
type HandleResolution struct {
	Subscribe bool
	Handle    PoolHandle
	Items     uint32
}

// HandleResolutionResponse (ASAP_HANDLE_RESOLUTION_RESPONSE) answers a handle
// resolution: the pool's policy and its selected elements, or Causes (such
// as CauseUnknownPoolHandle) and no elements. Accepted is the A flag.
type HandleResolutionResponse struct {
	Accepted bool
	Handle   PoolHandle
	Policy   *policy.Policy // the pool's overall policy; nil when absent
	PEs      []PoolElement
	Causes   []Cause
}

// EndpointKeepAlive (ASAP_ENDPOINT_KEEP_ALIVE) checks that a pool element is
// alive. Home is the H flag: adopt the sender as home registrar. ID is the
// pool element identifier rsplib appends (0: absent).
type EndpointKeepAlive struct {
	Home   bool
	Server ServerID
	Handle PoolHandle
	ID     PEID
}

// EndpointKeepAliveAck (ASAP_ENDPOINT_KEEP_ALIVE_ACK) answers a keep-alive.
type EndpointKeepAliveAck struct {
	Handle PoolHandle
	ID     PEID
}

// EndpointUnreachable (ASAP_ENDPOINT_UNREACHABLE) reports a pool element that
// could not be reached.
type EndpointUnreachable struct {
	Handle PoolHandle
	ID     PEID
}

// ServerAnnounce (ASAP_SERVER_ANNOUNCE) announces a registrar; Transports
// (SCTP or TCP only) say where it takes ASAP, none meaning the source
// address and the ASAP port over SCTP.
type ServerAnnounce struct {
	Server     ServerID
	Transports []Transport
}

// Cookie (ASAP_COOKIE) carries state from a pool element to a pool user.
type Cookie struct {
	Cookie []byte
}

// CookieEcho (ASAP_COOKIE_ECHO) returns the last cookie to a new pool element
// after failover.
type CookieEcho struct {
	Cookie []byte
}

// BusinessCard (ASAP_BUSINESS_CARD) tells the peer the pool and the preferred
// failover order. Policy is the policy rsplib puts after the handle (nil when
// absent).
type BusinessCard struct {
	Handle PoolHandle
	Policy *policy.Policy
	PEs    []PoolElement
}

// Error (ASAP_ERROR) reports an operation error to the sender of a bad
// message.
type Error struct {
	Causes []Cause
}
