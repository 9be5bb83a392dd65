package asap

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/rsp-go/rsp/policy"
)

// PoolHandle names a pool. It is a byte string compared exactly; the wire
// carries no terminator.
type PoolHandle string

// PEID identifies a pool element. It is random and non-zero.
type PEID uint32

// LogValue logs a pool element identifier as rsp's tools print it, in
// eight hex digits.
func (id PEID) LogValue() slog.Value { return slog.StringValue(fmt.Sprintf("%08x", uint32(id))) }

// ServerID identifies a registrar (an ENRP server). It is random and
// non-zero; 0 means "none".
type ServerID uint32

// LogValue logs a registrar identifier in eight hex digits.
func (id ServerID) LogValue() slog.Value { return slog.StringValue(fmt.Sprintf("%08x", uint32(id))) }

// ParamType is a parameter type of RFC 5354. Its top two bits tell a
// receiver what to do with a type it does not know.
type ParamType uint16

// Parameter types of RFC 5354 and the handle resolution option.
const (
	ParamIPv4Address            ParamType = 0x0001
	ParamIPv6Address            ParamType = 0x0002
	ParamDCCPTransport          ParamType = 0x0003
	ParamSCTPTransport          ParamType = 0x0004
	ParamTCPTransport           ParamType = 0x0005
	ParamUDPTransport           ParamType = 0x0006
	ParamUDPLiteTransport       ParamType = 0x0007
	ParamPolicy                 ParamType = 0x0008
	ParamPoolHandle             ParamType = 0x0009
	ParamPoolElement            ParamType = 0x000a
	ParamServerInformation      ParamType = 0x000b
	ParamOperationError         ParamType = 0x000c
	ParamCookie                 ParamType = 0x000d
	ParamPEIdentifier           ParamType = 0x000e
	ParamPEChecksum             ParamType = 0x000f
	ParamOpaqueTransport        ParamType = 0x0010
	ParamHandleResolutionOption ParamType = 0x803f
)

// TransportUse says whether a transport carries ASAP control messages besides
// data.
type TransportUse uint16

// Transport use values.
const (
	DataOnly        TransportUse = 0
	DataPlusControl TransportUse = 1
)

// Transport is a transport parameter: where and how a pool element is
// reached. Kind is one of the transport parameter types (DCCP, SCTP, TCP, UDP,
// UDP-Lite, Opaque).
type Transport struct {
	Kind        ParamType
	Port        uint16
	Use         TransportUse // SCTP; also bytes 6-7 of TCP as rsplib reads them
	ServiceCode uint32       // DCCP only
	Addrs       []netip.Addr // one for every kind but SCTP, which may have several; none for Opaque
	Opaque      []byte       // Opaque only
}

// LifeInfinite is the registration life that never expires.
const LifeInfinite time.Duration = -1

// PoolElement is the pool element parameter. Life travels in milliseconds,
// as rsplib and Wireshark read it (RFC 5354 says seconds).
type PoolElement struct {
	ID            PEID
	Home          ServerID
	Life          time.Duration // LifeInfinite for infinite; other negative values are invalid (a wire value below -1)
	UserTransport Transport
	Policy        policy.Policy
	ASAPTransport *Transport // nil when absent
}

// CauseCode is an error cause code of an operation error.
type CauseCode uint16

// Error cause codes of RFC 5354.
const (
	CauseUnspecified             CauseCode = 0x0
	CauseUnrecognizedParameter   CauseCode = 0x1
	CauseUnrecognizedMessage     CauseCode = 0x2
	CauseInvalidValues           CauseCode = 0x3
	CauseNonUniquePEID           CauseCode = 0x4
	CauseInconsistentPolicy      CauseCode = 0x5
	CauseLackOfResources         CauseCode = 0x6
	CauseInconsistentTransport   CauseCode = 0x7
	CauseInconsistentDataControl CauseCode = 0x8
	CauseUnknownPoolHandle       CauseCode = 0x9
	CauseRejectedSecurity        CauseCode = 0xa
)

// Cause is one error cause: its code and its cause-specific information
// (for example the unrecognized parameter, or the pool's policy parameter).
type Cause struct {
	Code CauseCode
	Info []byte
}
