package sctp

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"
)

// Info is what the kernel knows of an association: its state and send
// side (SCTP_STATUS) and each path to the peer (SCTP_GET_PEER_ADDR_INFO).
type Info struct {
	// State is the association's state (SCTP_ESTABLISHED and so on, as
	// linux/sctp.h numbers them); AssocEstablished while it is up.
	State int32
	// PeerWindow is the peer's receive window as last advertised.
	PeerWindow int
	// Unacked is how many chunks of data the peer has not acknowledged;
	// Pending how many wait to be sent.
	Unacked, Pending int
	// InStreams and OutStreams are the numbers of streams negotiated in
	// each direction: a message can be sent on streams 0 to OutStreams-1.
	InStreams, OutStreams int
	// FragmentationPoint is the largest user message sent in one chunk.
	FragmentationPoint int
	// Primary is the path data is sent on.
	Primary PathInfo
	// Paths lists every path to the peer, one per peer address.
	Paths []PathInfo
}

// AssocEstablished is Info.State of an association that is up.
const AssocEstablished = 4

// PathInfo is what the kernel knows of one path (peer address) of an
// association.
type PathInfo struct {
	Addr  netip.AddrPort
	State PathState
	// Cwnd is the congestion window, in bytes.
	Cwnd int
	// SRTT is the smoothed round-trip time and RTO the retransmission
	// timeout, both measured by the kernel; MTU is the path MTU.
	SRTT, RTO time.Duration
	MTU       int
}

// PathState is the reachability of a path (spinfo_state).
type PathState int32

// Path states.
const (
	PathInactive    PathState = 0 // unreachable: too many retransmissions
	PathPF          PathState = 1 // potentially failed
	PathActive      PathState = 2
	PathUnconfirmed PathState = 3 // not yet confirmed by a heartbeat
)

// String names the state.
func (s PathState) String() string {
	switch s {
	case PathInactive:
		return "inactive"
	case PathPF:
		return "potentially-failed"
	case PathActive:
		return "active"
	case PathUnconfirmed:
		return "unconfirmed"
	}
	return "unknown"
}

// Sizes and offsets of struct sctp_status and struct sctp_paddrinfo
// (linux/sctp.h; sctp_paddrinfo is packed, with a 128-byte
// sockaddr_storage after the association identifier).
const (
	sizeofSockaddrStorage = 128
	sizeofPaddrinfo       = 4 + sizeofSockaddrStorage + 20
	offStatusPrimary      = 24
	sizeofStatus          = offStatusPrimary + sizeofPaddrinfo
	sizeofPaddrparams     = 156 // packed, aligned to 4
)

var errShortInfo = errors.New("sctp: short association status")

// parseStatus reads a struct sctp_status.
func parseStatus(b []byte) (Info, error) {
	if len(b) < sizeofStatus {
		return Info{}, errShortInfo
	}
	ne := binary.NativeEndian
	in := Info{
		State:              int32(ne.Uint32(b[4:])),
		PeerWindow:         int(ne.Uint32(b[8:])),
		Unacked:            int(ne.Uint16(b[12:])),
		Pending:            int(ne.Uint16(b[14:])),
		InStreams:          int(ne.Uint16(b[16:])),
		OutStreams:         int(ne.Uint16(b[18:])),
		FragmentationPoint: int(ne.Uint32(b[20:])),
	}
	p, err := parsePaddrinfo(b[offStatusPrimary:])
	in.Primary = p
	return in, err
}

// parsePaddrinfo reads a struct sctp_paddrinfo.
func parsePaddrinfo(b []byte) (PathInfo, error) {
	if len(b) < sizeofPaddrinfo {
		return PathInfo{}, errShortInfo
	}
	ne := binary.NativeEndian
	f := b[4+sizeofSockaddrStorage:]
	return PathInfo{
		Addr:  parseRawSockaddr(b[4 : 4+sizeofSockaddrStorage]),
		State: PathState(int32(ne.Uint32(f[0:]))),
		Cwnd:  int(ne.Uint32(f[4:])),
		SRTT:  time.Duration(ne.Uint32(f[8:])) * time.Millisecond,
		RTO:   time.Duration(ne.Uint32(f[12:])) * time.Millisecond,
		MTU:   int(ne.Uint32(f[16:])),
	}, nil
}

// Address families as the kernel writes them into a sockaddr.
const (
	afInet  = 2
	afInet6 = 10
)

// parseRawSockaddr reads a sockaddr_in or sockaddr_in6; the zero AddrPort
// for anything else.
func parseRawSockaddr(b []byte) netip.AddrPort {
	if len(b) < 2 {
		return netip.AddrPort{}
	}
	switch binary.NativeEndian.Uint16(b) {
	case afInet:
		if len(b) >= 8 {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:]))
		}
	case afInet6:
		if len(b) >= 24 {
			return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])).Unmap(), binary.BigEndian.Uint16(b[2:]))
		}
	}
	return netip.AddrPort{}
}

// Liveness sets how an association watches its peer: SCTP heartbeats on
// idle paths and retransmission limits. A path is marked inactive after
// PathMaxRetrans unanswered retransmissions or heartbeats in a row, and
// the association is aborted after AssocMaxRetrans: with a heartbeat every
// HeartbeatInterval (plus an RTO and a jitter), a peer that stops
// answering is detected within about AssocMaxRetrans+1 heartbeats. Zero
// fields leave the kernel's value (defaults: heartbeat 30 s, path 5,
// association 10 retransmissions, RTO 1 s to 60 s starting at 3 s).
//
// Set with Config, it applies from the association's start. Set on an
// established association (Conn.SetLiveness), the RTO bounds apply to a
// path from its next round-trip measurement, which the heartbeat that
// SetLiveness sends at once brings.
type Liveness struct {
	HeartbeatInterval time.Duration
	PathMaxRetrans    int
	AssocMaxRetrans   int
	// RTOMin, RTOMax and RTOInitial bound the retransmission timeout,
	// which also times each heartbeat's answer.
	RTOMin, RTOMax, RTOInitial time.Duration
}

// Config holds the settings of the associations a Dial makes or a Listen
// accepts. The zero value leaves the kernel's defaults.
type Config struct {
	// Liveness applies from the association's start: its first
	// heartbeat and its first retransmission timeout already follow it.
	Liveness Liveness
	// Adaptation, if not zero, is the adaptation layer indication (RFC
	// 5061) this end sends when an association is set up: a 32-bit code
	// that tells the peer which upper layer speaks here, read with
	// Conn.PeerAdaptation on the dialing side. Applications that do not
	// ask for it never see it.
	Adaptation uint32
}

// snAdaptationIndication is the type of an SCTP_ADAPTATION_INDICATION
// notification.
const snAdaptationIndication = 0x8007

// parseAdaptation reads an SCTP_ADAPTATION_INDICATION notification (struct
// sctp_adaptation_event): the peer's indication.
func parseAdaptation(b []byte) (uint32, bool) {
	if len(b) < 12 || binary.NativeEndian.Uint16(b) != snAdaptationIndication {
		return 0, false
	}
	return binary.NativeEndian.Uint32(b[8:]), true
}

// Flags of struct sctp_paddrparams.
const (
	sppHBEnable = 1
	sppHBDemand = 4
)

// errLiveness reports a Liveness value out of the kernel's ranges.
var errLiveness = errors.New("sctp: liveness value out of range")

// appendPaddrparams returns a struct sctp_paddrparams that sets l's
// heartbeat interval and path retransmission limit on every path of the
// association.
func appendPaddrparams(l Liveness) ([]byte, error) {
	b := make([]byte, sizeofPaddrparams)
	ne := binary.NativeEndian
	f := b[4+sizeofSockaddrStorage:]
	if l.HeartbeatInterval < 0 || l.HeartbeatInterval > time.Duration(1<<32-1)*time.Millisecond ||
		l.PathMaxRetrans < 0 || l.PathMaxRetrans > 1<<16-1 {
		return nil, errLiveness
	}
	if l.HeartbeatInterval > 0 {
		ms := max(1, l.HeartbeatInterval.Milliseconds())
		ne.PutUint32(f[0:], uint32(ms))
		ne.PutUint32(f[14:], sppHBEnable) // spp_flags
	}
	ne.PutUint16(f[4:], uint16(l.PathMaxRetrans))
	return b, nil
}

// appendRTOInfo returns a struct sctp_rtoinfo for l's RTO bounds.
func appendRTOInfo(l Liveness) ([]byte, error) {
	b := make([]byte, 16)
	ne := binary.NativeEndian
	for i, d := range []time.Duration{l.RTOInitial, l.RTOMax, l.RTOMin} {
		if d < 0 || d > time.Duration(1<<32-1)*time.Millisecond {
			return nil, errLiveness
		}
		if d > 0 {
			ne.PutUint32(b[4+4*i:], uint32(max(1, d.Milliseconds())))
		}
	}
	return b, nil
}
