package registrar

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/internal/mcast"
	"github.com/rsp-go/rsp/internal/sctp"
)

// announcer sends the registrar's ASAP_SERVER_ANNOUNCE to the multicast
// group and listens there for other registrars' announces, which stretch
// its period (RFC 5352 §3.6).
type announcer struct {
	send *mcast.Sender
	recv *net.UDPConn
	v4   bool // the group is IPv4
	// peers maps the other registrars heard to when they were heard;
	// guarded by the registrar's mu.
	peers map[asap.ServerID]time.Time
}

// startAnnouncing opens the announce sockets and starts sending, once; it
// is called by Serve, so that a registrar that cannot announce fails to
// serve.
func (r *Registrar) startAnnouncing() error {
	if r.cfg.Announce == "" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrRegistrarClosed
	}
	if r.ann != nil {
		return nil
	}
	send, recv, err := mcast.Join(r.cfg.Announce, r.cfg.AnnounceInterface)
	if err != nil {
		return fmt.Errorf("registrar: announcing: %w", err)
	}
	g, _ := netip.ParseAddrPort(r.cfg.Announce) // Join parsed it already
	r.ann = &announcer{send: send, recv: recv, v4: g.Addr().Unmap().Is4(), peers: make(map[asap.ServerID]time.Time)}
	r.wg.Add(2)
	go r.announceLoop(r.ann)
	go r.hearAnnounces(r.ann)
	r.cfg.Logger.Info("announcing", "group", r.cfg.Announce, "interface", r.cfg.AnnounceInterface)
	return nil
}

// closeAnnouncer stops announcing; called by Close with mu held.
func (r *Registrar) closeAnnouncerLocked() {
	if r.ann != nil {
		r.ann.send.Close()
		r.ann.recv.Close()
	}
}

// announceLoop sends an announce every (N+1) intervals until Close.
func (r *Registrar) announceLoop(a *announcer) {
	defer r.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	var buf []byte
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
		}
		r.mu.Lock()
		m := asap.ServerAnnounce{Server: r.id, Transports: r.announcedTransportsLocked(a.v4)}
		now := time.Now()
		for id, heard := range a.peers {
			if now.Sub(heard) > r.cfg.AnnounceTimeout {
				delete(a.peers, id)
			}
		}
		n := len(a.peers)
		r.mu.Unlock()
		var err error
		if buf, err = m.AppendBinary(buf[:0]); err == nil {
			err = a.send.Send(buf)
		}
		if err != nil && !errors.Is(err, net.ErrClosed) {
			r.cfg.Logger.Warn("sending announce failed", "group", r.cfg.Announce, "err", err)
		}
		t.Reset(time.Duration(n+1) * r.cfg.AnnounceInterval)
	}
}

// hearAnnounces counts the other registrars announcing in the group.
func (r *Registrar) hearAnnounces(a *announcer) {
	defer r.wg.Done()
	onErr := func(err error) { r.cfg.Logger.Debug("reading announces", "err", err) }
	mcast.Receive(a.recv, r.done, onErr, func(b []byte, _ netip.AddrPort) {
		var m asap.ServerAnnounce
		if err := m.UnmarshalBinary(b); err != nil || m.Server == r.id {
			return
		}
		r.mu.Lock()
		if _, ok := a.peers[m.Server]; !ok {
			r.cfg.Logger.Debug("heard registrar announce", "id", fmt.Sprintf("%08x", uint32(m.Server)))
		}
		a.peers[m.Server] = time.Now()
		r.mu.Unlock()
	})
}

// announcedTransportsLocked describes the registrar's listeners as
// transport parameters: TCP and SCTP, those on unspecified addresses with
// the announce interface's addresses of the group's family (v4: IPv4)
// where it has some.
func (r *Registrar) announcedTransportsLocked(v4 bool) []asap.Transport {
	var ts []asap.Transport
	for l := range r.listeners {
		var t asap.Transport
		switch a := l.Addr().(type) {
		case *net.TCPAddr:
			ap := a.AddrPort()
			t = asap.Transport{Kind: asap.ParamTCPTransport, Port: ap.Port(), Addrs: []netip.Addr{ap.Addr().Unmap()}}
		case *sctp.Addr:
			t = asap.Transport{Kind: asap.ParamSCTPTransport, Port: uint16(a.Port), Addrs: append([]netip.Addr(nil), a.IPs...)}
			if len(t.Addrs) == 0 {
				t.Addrs = []netip.Addr{netip.IPv4Unspecified()}
			}
		default:
			continue
		}
		if len(t.Addrs) == 1 && t.Addrs[0].IsUnspecified() {
			// Announce the family of the group: a dual-stack listener
			// ("[::]:3863") serves both.
			t.Addrs = []netip.Addr{netip.IPv6Unspecified()}
			if v4 {
				t.Addrs = []netip.Addr{netip.IPv4Unspecified()}
			}
		}
		if len(t.Addrs) == 1 && t.Addrs[0].IsUnspecified() && r.cfg.AnnounceInterface != "" {
			if own := mcast.InterfaceAddrs(r.cfg.AnnounceInterface, t.Addrs[0].Is4()); len(own) > 0 {
				t.Addrs = own
				if t.Kind != asap.ParamSCTPTransport {
					t.Addrs = own[:1]
				}
			}
		}
		ts = append(ts, t)
	}
	return ts
}
