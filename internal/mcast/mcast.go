// Package mcast opens the UDP multicast sockets of registrar announces
// (ASAP_SERVER_ANNOUNCE, RFC 5352 §3.6): a receiver joined to a group and a
// sender bound to an interface, for IPv4 and IPv6 groups alike.
package mcast

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Listen joins the multicast group ("239.0.0.50:3863", "[ff05::133]:3863")
// on the interface named ifname ("" leaves the choice to the system) and
// returns a socket that receives the group's datagrams. Several sockets of
// one host may listen to the same group.
func Listen(group, ifname string) (*net.UDPConn, error) {
	ga, network, ifi, err := resolve(group, ifname)
	if err != nil {
		return nil, err
	}
	c, err := net.ListenMulticastUDP(network, ifi, net.UDPAddrFromAddrPort(ga))
	if err != nil {
		return nil, fmt.Errorf("mcast: joining %s: %w", group, err)
	}
	return c, nil
}

// Sender sends datagrams to a multicast group, with a hop limit of 1 (the
// link) and loopback on, so that listeners on the sending host hear them.
type Sender struct {
	c     *net.UDPConn
	group *net.UDPAddr
}

// NewSender returns a sender to group through the interface named ifname
// ("" leaves the choice to the system's routes).
func NewSender(group, ifname string) (*Sender, error) {
	ga, network, ifi, err := resolve(group, ifname)
	if err != nil {
		return nil, err
	}
	c, err := net.ListenUDP(network, nil)
	if err != nil {
		return nil, fmt.Errorf("mcast: %w", err)
	}
	if ga.Addr().Is4() {
		p := ipv4.NewPacketConn(c)
		err = errors.Join(p.SetMulticastTTL(1), p.SetMulticastLoopback(true))
		if ifi != nil {
			err = errors.Join(err, p.SetMulticastInterface(ifi))
		}
	} else {
		p := ipv6.NewPacketConn(c)
		err = errors.Join(p.SetMulticastHopLimit(1), p.SetMulticastLoopback(true))
		if ifi != nil {
			err = errors.Join(err, p.SetMulticastInterface(ifi))
		}
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("mcast: sender to %s: %w", group, err)
	}
	return &Sender{c: c, group: net.UDPAddrFromAddrPort(ga)}, nil
}

// Send sends b to the group as one datagram.
func (s *Sender) Send(b []byte) error {
	_, err := s.c.WriteToUDP(b, s.group)
	return err
}

// Close closes the sender's socket.
func (s *Sender) Close() error { return s.c.Close() }

// Join opens both sockets of a member that sends to the group and hears
// it (a registrar's): a sender through the interface named ifname, and a
// receiver joined to the group on it; on an error neither stays open.
func Join(group, ifname string) (*Sender, *net.UDPConn, error) {
	send, err := NewSender(group, ifname)
	if err != nil {
		return nil, nil, err
	}
	recv, err := Listen(group, ifname)
	if err != nil {
		send.Close()
		return nil, nil, err
	}
	return send, recv, nil
}

// Receive reads the datagrams that arrive at c and hands each to handle,
// whose b is valid only during the call, until c is closed or done is.
// After any other read error, which it hands to onErr if that is not nil,
// it waits a tenth of a second before reading again.
func Receive(c *net.UDPConn, done <-chan struct{}, onErr func(error), handle func(b []byte, src netip.AddrPort)) {
	buf := make([]byte, 65536)
	for {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if onErr != nil {
				onErr(err)
			}
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		handle(buf[:n], src)
	}
}

// resolve parses a group and an interface name, and names the UDP network
// of the group's family.
func resolve(group, ifname string) (ga netip.AddrPort, network string, ifi *net.Interface, err error) {
	ga, err = netip.ParseAddrPort(group)
	if err != nil {
		return ga, "", nil, fmt.Errorf("mcast: group %q: %w", group, err)
	}
	ga = netip.AddrPortFrom(ga.Addr().Unmap(), ga.Port())
	if !ga.Addr().IsMulticast() {
		return ga, "", nil, fmt.Errorf("mcast: %s is not a multicast address", ga.Addr())
	}
	network = "udp4"
	if ga.Addr().Is6() {
		network = "udp6"
	}
	if ifname != "" {
		if ifi, err = net.InterfaceByName(ifname); err != nil {
			return ga, "", nil, fmt.Errorf("mcast: interface %q: %w", ifname, err)
		}
	}
	return ga, network, ifi, nil
}

// InterfaceAddrs returns the unicast addresses of the interface named
// ifname, of IPv4 (v4 true) or IPv6.
func InterfaceAddrs(ifname string, v4 bool) []netip.Addr {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		if ip := p.Addr().Unmap(); ip.Is4() == v4 && !ip.IsMulticast() {
			out = append(out, ip)
		}
	}
	return out
}
