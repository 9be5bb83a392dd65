package mapping

import "strings"

// networks are the transport names SplitAddress knows, as in
// "sctp:10.0.0.1:3863".
var networks = []string{"tcp", "tcp4", "tcp6", "tls", "tls4", "tls6", "sctp", "sctp4", "sctp6", "udp", "udp4", "udp6", "udplite", "dccp"}

// SplitAddress splits a transport address written "proto:host:port" (proto
// tcp, tcp4, tcp6, tls, tls4, tls6, sctp, sctp4, sctp6, udp, udplite or dccp,
// in any case)
// into the network, in lower case, and the rest. Without a known proto it
// returns "tcp", the whole string and false. This is the one parser of
// such addresses in the module: registrar lists, listen addresses and the
// transports of registrations all use it.
func SplitAddress(s string) (network, address string, ok bool) {
	s = strings.TrimSpace(s)
	if proto, rest, found := strings.Cut(s, ":"); found {
		for _, n := range networks {
			if strings.EqualFold(proto, n) {
				return n, rest, true
			}
		}
	}
	return "tcp", s, false
}
