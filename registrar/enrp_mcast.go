package registrar

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/rsp-go/rsp/enrp"
	"github.com/rsp-go/rsp/internal/mcast"
	"github.com/rsp-go/rsp/internal/sctp"
)

// startMulticast opens the sockets of ENRPConfig.Announce and starts
// sending presences there and hearing the other registrars' (peer
// discovery by multicast, RFC 5353 §3.1).
func (e *enrpSide) startMulticast() error {
	r := e.r
	send, recv, err := mcast.Join(e.cfg.Announce, e.cfg.AnnounceInterface)
	if err != nil {
		return fmt.Errorf("registrar: ENRP presences by multicast: %w", err)
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		send.Close()
		recv.Close()
		return ErrRegistrarClosed
	}
	r.wg.Add(2)
	r.mu.Unlock()
	go e.castPresences(send, recv)
	go e.hearPresences(recv)
	r.cfg.Logger.Info("ENRP presences by multicast", "group", e.cfg.Announce, "interface", e.cfg.AnnounceInterface)
	return nil
}

// castPresences sends the registrar's presence to the group every
// heartbeat interval, once it has server information (an ENRP listener),
// until Close; then it closes both sockets.
func (e *enrpSide) castPresences(send *mcast.Sender, recv *net.UDPConn) {
	r := e.r
	defer r.wg.Done()
	defer send.Close()
	defer recv.Close()
	interval := e.cfg.HeartbeatInterval
	if interval <= 0 {
		interval = DefaultPeerHeartbeatInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var buf []byte
	for {
		r.mu.Lock()
		p := e.core.Presence(0, false)
		r.mu.Unlock()
		if p.Info != nil {
			var err error
			if buf, err = p.AppendBinary(buf[:0]); err == nil {
				err = send.Send(buf)
			}
			if err != nil && !errors.Is(err, net.ErrClosed) {
				r.cfg.Logger.Warn("sending ENRP presence by multicast failed", "group", e.cfg.Announce, "err", err)
			}
		}
		select {
		case <-r.done:
			return
		case <-t.C:
		}
	}
}

// hearPresences reads the group's presences and dials the registrars
// among them that are not yet peers.
func (e *enrpSide) hearPresences(recv *net.UDPConn) {
	r := e.r
	defer r.wg.Done()
	onErr := func(err error) { r.cfg.Logger.Debug("reading ENRP presences", "err", err) }
	mcast.Receive(recv, r.done, onErr, func(b []byte, src netip.AddrPort) {
		m, err := enrp.Unmarshal(b)
		p, ok := m.(*enrp.Presence)
		if err != nil || !ok || p.Sender == r.id {
			return
		}
		r.mu.Lock()
		e.core.Discovered(time.Now(), p, src.Addr())
		dials := e.core.TakeDials()
		r.mu.Unlock()
		if len(dials) == 0 {
			return
		}
		network := e.listenNetwork()
		for _, si := range dials {
			e.dialLearnt(network, si)
		}
	})
}

// listenNetwork is the network of the registrar's ENRP listeners:
// "sctp" if one is an SCTP listener (rsplib's registrars speak only
// SCTP), else "tcp".
func (e *enrpSide) listenNetwork() string {
	e.lmu.Lock()
	defer e.lmu.Unlock()
	for l := range e.listeners {
		if _, ok := l.Addr().(*sctp.Addr); ok {
			return "sctp"
		}
	}
	return "tcp"
}
