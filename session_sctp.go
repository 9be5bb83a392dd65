package rsp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/ulpack"
)

// Sessions over SCTP (spec/session.md, section 6). rsp's and rsplib's
// elements both register SCTP transport use "data plus control", so the
// registration cannot tell a pool user whether an element speaks rsp's
// session frames. SCTP's adaptation layer indication (RFC 5061) does,
// without a byte an rsplib application sees: rsp's session elements and
// pool users put ulpack.PPID ("RSP1") in their INIT and INIT-ACK. A pool
// user that reaches an element without it has a plain connection to it,
// and sends it nothing but the application's data and RFC 5352 messages
// on PPID 11.

// errNotSessionElement: an SCTP element that did not indicate rsp's
// session protocol when the association was set up (an rsplib element).
var errNotSessionElement = errors.New("rsp: the SCTP element does not speak rsp sessions")

// sessionAddress returns the network and address to dial to reach
// transport t for a session: "sctp" and "h1,h2:port" for SCTP, TCP of
// network's family and "host:port" otherwise.
func sessionAddress(network string, t asap.Transport) (string, string) {
	if t.Kind == asap.ParamSCTPTransport {
		return "sctp", sctpAddress(t)
	}
	return tcpNetwork(network), netip.AddrPortFrom(t.Addrs[0], t.Port).String()
}

// sctpConfig is the SCTP mapping's configuration for sessions: rsp's
// adaptation indication, and SCTP heartbeats on the session's interval
// with retransmission limits and RTO bounds that make a silent peer's
// association fail after about HeartbeatMisses intervals.
func (c SessionConfig) sctpConfig() mapping.Config {
	iv := c.HeartbeatInterval
	rto := max(iv/2, 10*time.Millisecond)
	return mapping.Config{
		MaxMessageSize: c.MaxMessageSize + ulpack.DataLen,
		SCTPLiveness: mapping.SCTPLiveness{
			HeartbeatInterval: iv,
			PathMaxRetrans:    max(1, c.HeartbeatMisses-1),
			AssocMaxRetrans:   max(1, c.HeartbeatMisses-1),
			RTOMin:            max(rto/4, 10*time.Millisecond),
			RTOMax:            rto,
			RTOInitial:        rto,
		},
		SCTPAdaptation: ulpack.PPID,
	}
}

// dialSessionConn connects to an element for a session: a TCP mapping
// connection over TCP; over SCTP an association, with session reporting
// whether the element indicated rsp's session protocol.
func (d *Dialer) dialSessionConn(ctx context.Context, cfg SessionConfig, network, addr string) (c mapping.BatchConn, session bool, err error) {
	if network == "sctp" {
		md := mapping.Dialer{Config: cfg.sctpConfig()}
		mc, err := md.DialContext(ctx, "sctp", addr)
		if err != nil {
			return nil, false, err
		}
		// A *mapping.SCTPConn, where the kernel has SCTP.
		bc := mapping.Batched(mc)
		pa, ok := mc.(interface{ PeerAdaptation() (uint32, bool) })
		if !ok {
			return bc, false, nil
		}
		ind, ok := pa.PeerAdaptation()
		return bc, ok && ind == ulpack.PPID, nil
	}
	dial := d.dial
	if dial == nil {
		nd := d.NetDialer
		if nd == nil {
			nd = &net.Dialer{}
		}
		dial = nd.DialContext
	}
	nc, err := dial(ctx, tcpNetwork(network), addr)
	if err != nil {
		return nil, false, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	return mapping.NewTCPConn(nc, cfg.mappingConfig()), true, nil
}

// sniffSCTP tells whether an accepted association opens a session: its
// first message is a HELLO on the session channel. Anything else, or
// nothing within SniffTimeout, makes it a plain connection, which reads
// that first message's data before what follows.
func (l *Listener) sniffSCTP(ms *msgStream) {
	buf := make([]byte, l.scfg.MaxMessageSize+ulpack.DataLen)
	ms.SetReadDeadline(time.Now().Add(l.scfg.SniffTimeout))
	n, ppid, err := ms.Conn.ReadMsg(buf)
	ms.SetReadDeadline(time.Time{})
	switch {
	case err != nil && !isTimeout(err):
		ms.Close()
		return
	case err == nil && ppid == ulpack.PPID && n > 0 && buf[0] == byte(ulpack.FrameHello):
		s, err := l.openSession(mapping.Batched(ms.Conn), buf[:n])
		if err != nil {
			l.log.Debug("session: refused", "remote", ms.RemoteAddr(), "err", err)
			return
		}
		select {
		case l.ready <- s:
		case <-l.done:
			s.GoAway() // never served here: the pool user fails over
		}
		return
	case err == nil && ppid != mapping.PPIDASAP:
		ms.ppid.Store(ppid)
		ms.rest = bytes.Clone(buf[:n])
	}
	l.handPlain(ms)
}

// hasStreams reports whether c carries SCTP streams and unordered
// delivery.
func hasStreams(c mapping.Conn) bool {
	_, ok := c.(mapping.MsgInfoConn)
	return ok
}

// checkStream reports whether the session's connection can send a message
// on stream (and unordered): an SCTP association with that outbound
// stream.
func (s *Session) checkStream(stream uint16) error {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	return checkStreamOn(c, stream)
}

// checkStreamOn reports whether c can send a message on stream (and
// unordered).
func checkStreamOn(c mapping.Conn, stream uint16) error {
	// A *mapping.SCTPConn, where the kernel has SCTP.
	sc, ok := c.(sctpInfoConn)
	if !ok {
		return fmt.Errorf("%w: SCTP streams and unordered delivery over the TCP mapping", ErrNotSupported)
	}
	if stream == 0 {
		return nil
	}
	in, err := sc.Info()
	if err != nil {
		return err
	}
	if int(stream) >= in.OutStreams {
		return fmt.Errorf("%w: stream %d of an association with %d outbound streams", ErrNotSupported, stream, in.OutStreams)
	}
	return nil
}

// streamOpt is the SCTP stream and ordering a message asked for.
type streamOpt struct {
	stream    uint16
	unordered bool
}

// setStreamLocked records the stream and ordering of message seq, for its
// sending and any replay. mu is held.
func (s *Session) setStreamLocked(seq uint64, stream uint16, unordered bool) {
	if s.streams == nil {
		s.streams = make(map[uint64]streamOpt)
	}
	s.streams[seq] = streamOpt{stream, unordered}
}

// forgetStreamsLocked forgets the options of messages acknowledged. mu is
// held.
func (s *Session) forgetStreamsLocked() {
	for seq := range s.streams {
		if seq <= s.snd.Acked() {
			delete(s.streams, seq)
		}
	}
}

// dataMsgLocked is the message that carries a DATA frame: on its stream
// and ordering where it asked for them and the connection has them. mu is
// held.
func (s *Session) dataMsgLocked(frame []byte) mapping.Msg {
	m := mapping.Msg{Buf: frame, PPID: ulpack.PPID}
	if len(s.streams) == 0 || len(frame) < 12 {
		return m
	}
	if o, ok := s.streams[binary.BigEndian.Uint64(frame[4:12])]; ok && hasStreams(s.conn) {
		m.Stream, m.Unordered = o.stream, o.unordered
	}
	return m
}

// sctpInfoConn is what a *mapping.SCTPConn tells of its association.
type sctpInfoConn interface {
	Info() (mapping.SCTPInfo, error)
}

// sctpPathInfo is PathInfo over SCTP: the smoothed RTT, the RTO and the
// path MTU of the association's primary path (SCTP_STATUS).
func (s *Session) sctpPathInfo(c sctpInfoConn) (PathInfo, error) {
	in, err := c.Info()
	if err != nil {
		return PathInfo{}, s.opError("pathinfo", err)
	}
	p := in.Primary
	return PathInfo{RTT: p.SRTT, RTO: p.RTO, PathMTU: p.MTU}, nil
}
