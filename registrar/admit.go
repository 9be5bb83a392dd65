package registrar

import (
	"net/netip"

	"github.com/rsp-go/rsp/mapping"
)

// connAddr is the address a connection's limits count it under: the
// first of an SCTP association's peer addresses, or TCP's remote address.
func connAddr(c mapping.Conn) netip.Addr {
	if m, ok := c.(interface {
		PeerAddrs() ([]netip.Addr, error)
	}); ok {
		if addrs, err := m.PeerAddrs(); err == nil && len(addrs) > 0 {
			return addrs[0].Unmap()
		}
	}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// admitLocked adds pc to the connections served, unless that would exceed
// MaxConns or MaxConnsPerAddr. r.mu is held.
func (r *Registrar) admitLocked(pc *peerConn) bool {
	n := r.perAddr[pc.addr]
	if (r.cfg.MaxConns > 0 && len(r.conns) >= r.cfg.MaxConns) ||
		(r.cfg.MaxConnsPerAddr > 0 && n >= r.cfg.MaxConnsPerAddr) {
		if r.refusedLog.allow() {
			r.cfg.Logger.Warn("connection over the limits refused", "peer", pc.c.RemoteAddr(),
				"conns", len(r.conns), "max_conns", r.cfg.MaxConns, "from_addr", n, "max_conns_per_addr", r.cfg.MaxConnsPerAddr)
		}
		return false
	}
	r.conns[pc] = struct{}{}
	r.perAddr[pc.addr] = n + 1
	return true
}

// forgetLocked removes pc from the connections served. r.mu is held.
func (r *Registrar) forgetLocked(pc *peerConn) {
	if _, ok := r.conns[pc]; !ok {
		return
	}
	delete(r.conns, pc)
	if n := r.perAddr[pc.addr] - 1; n > 0 {
		r.perAddr[pc.addr] = n
	} else {
		delete(r.perAddr, pc.addr)
	}
}
