// Package sctp is kernel SCTP for Go on Linux, on non-blocking sockets
// through the runtime poller: one-to-one (SOCK_STREAM) associations with
// message boundaries, payload protocol identifiers (PPIDs), multi-homed
// addresses, and the deadlines and errors of net.Conn.
package sctp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// ErrMessageTooLong is returned by ReadMsg for a message longer than its
// buffer; the message was discarded and the association stays usable.
var ErrMessageTooLong = errors.New("sctp: message longer than the buffer")

// Addr is an SCTP transport address: a port and one or more IP addresses.
type Addr struct {
	IPs  []netip.Addr
	Port int
}

// Network returns "sctp".
func (a *Addr) Network() string { return "sctp" }

// String returns "host:port", or "[h1,h2]:port" for several addresses.
func (a *Addr) String() string {
	if a == nil {
		return "<nil>"
	}
	var hs []string
	for _, ip := range a.IPs {
		hs = append(hs, ip.String())
	}
	switch len(hs) {
	case 0:
		return ":" + strconv.Itoa(a.Port)
	case 1:
		return netip.AddrPortFrom(a.IPs[0], uint16(a.Port)).String()
	}
	return "[" + strings.Join(hs, ",") + "]:" + strconv.Itoa(a.Port)
}

// ResolveAddr parses "host:port", where host may be a comma-separated list
// of IP addresses or empty (any address), into an Addr. network is "sctp",
// "sctp4" or "sctp6".
func ResolveAddr(network, address string) (*Addr, error) {
	switch network {
	case "sctp", "sctp4", "sctp6":
	default:
		return nil, net.UnknownNetworkError(network)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	p, err := net.LookupPort("tcp", port)
	if err != nil {
		return nil, err
	}
	a := &Addr{Port: p}
	if host == "" {
		return a, nil
	}
	for _, h := range strings.Split(strings.Trim(host, "[]"), ",") {
		ip, err := netip.ParseAddr(h)
		if err != nil {
			ips, lerr := net.DefaultResolver.LookupNetIP(context.Background(), "ip", h)
			if lerr != nil || len(ips) == 0 {
				return nil, fmt.Errorf("sctp: address %q: %w", h, err)
			}
			ip = ips[0]
		}
		ip = ip.Unmap()
		if network == "sctp4" && !ip.Is4() || network == "sctp6" && ip.Is4() {
			continue
		}
		a.IPs = append(a.IPs, ip)
	}
	if len(a.IPs) == 0 {
		return nil, fmt.Errorf("sctp: no %s address in %q", network, address)
	}
	return a, nil
}

// RcvInfo describes a received message.
type RcvInfo struct {
	PPID   uint32
	Stream uint16
	// Unordered is set for a message the peer sent for unordered
	// delivery.
	Unordered bool
	Assoc     AssocID // on a one-to-many socket
}

// Message is one message of a batch (Conn.ReadBatch, Conn.WriteBatch).
type Message struct {
	// Buf holds the message to send, or is the room for one received.
	Buf []byte
	// N is the length of a received message.
	N int
	// PPID and Stream: those of the message.
	PPID   uint32
	Stream uint16
	// Unordered: the message is (to be) delivered as soon as it arrives,
	// not in its stream's order.
	Unordered bool
	// Err is ErrMessageTooLong for a received message over the limit,
	// which was discarded.
	Err error
	// Assoc is the message's association on a one-to-many socket
	// (PacketConn).
	Assoc AssocID
	// Event, in a message a PacketConn reads, reports that association
	// Assoc came up or went away; such a message has no data.
	Event AssocEvent
}

// AssocID identifies an association of a one-to-many socket.
type AssocID int32

// AssocEvent is a change of an association's state.
type AssocEvent uint8

// Association events.
const (
	AssocData AssocEvent = iota // no event: a message
	AssocUp                     // the association is up (or restarted)
	AssocDown                   // the association is gone
)

// SndInfo describes a message to send.
type SndInfo struct {
	PPID   uint32
	Stream uint16 // below the association's OutStreams (Info)
	// Unordered asks for delivery as soon as the message arrives,
	// regardless of the stream's order.
	Unordered bool
	Assoc     AssocID // on a one-to-many socket
	Flags     uint16  // other SCTP_SNDINFO flags, such as abort
}
