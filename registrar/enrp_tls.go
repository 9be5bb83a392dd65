package registrar

import (
	"net"

	"github.com/rsp-go/rsp/mapping"
)

// enrpDialer dials peers, over TLS when ENRPConfig.TLSConfig is set.
func (e *enrpSide) enrpDialer() mapping.Dialer {
	return mapping.Dialer{TLSConfig: e.cfg.TLSConfig}
}

// enrpListenConfig listens for peers, over TLS when ENRPConfig.TLSConfig
// is set, logging failed handshakes.
func (e *enrpSide) enrpListenConfig() mapping.ListenConfig {
	lc := mapping.ListenConfig{TLSConfig: e.cfg.TLSConfig}
	if lc.TLSConfig != nil {
		lc.HandshakeError = func(remote net.Addr, err error) {
			e.r.cfg.Logger.Warn("ENRP TLS handshake failed", "peer", remote, "err", err)
		}
	}
	return lc
}

// peerAllowed applies ENRPConfig.AuthorizePeer to a new ENRP connection,
// logging a refusal.
func (e *enrpSide) peerAllowed(c mapping.Conn) bool {
	if e.cfg.AuthorizePeer == nil {
		return true
	}
	p := peerFor(c)
	if e.cfg.AuthorizePeer(p) {
		return true
	}
	e.r.cfg.Logger.Warn("ENRP peer refused by the authorisation rule", "peer", c.RemoteAddr(), "identities", p.Identities())
	return false
}

// PeerIdentities returns an ENRPConfig.AuthorizePeer rule that allows the
// peers with one of the identities (see Peer.Identities) that patterns
// match (a name, or a prefix and "*", as in Rule).
func PeerIdentities(patterns ...string) func(Peer) bool {
	return func(p Peer) bool {
		for _, id := range p.Identities() {
			for _, pat := range patterns {
				if matches(pat, id) {
					return true
				}
			}
		}
		return false
	}
}
