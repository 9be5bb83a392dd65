package rsp

import (
	"net/netip"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/internal/sctp"
)

// SCTPSupported reports whether the kernel provides SCTP, which pools of
// SCTP pool elements (such as rsplib's) need.
func SCTPSupported() bool { return sctp.Supported() }

// sctpTransport describes an SCTP listening address as a pool element's
// user transport.
func sctpTransport(a *sctp.Addr) asap.Transport {
	addrs := a.IPs
	if len(addrs) == 0 {
		addrs = []netip.Addr{netip.IPv4Unspecified()}
	}
	return asap.Transport{Kind: asap.ParamSCTPTransport, Port: uint16(a.Port), Use: asap.DataOnly, Addrs: addrs}
}
