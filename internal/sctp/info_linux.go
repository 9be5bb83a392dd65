package sctp

import (
	"encoding/binary"
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// Socket options of association status and parameters (linux/sctp.h).
const (
	sctpRTOInfo         = 0
	sctpAssocInfo       = 1
	sctpPeerAddrParams  = 9
	sctpGetPeerAddrInfo = 15
	sctpAdaptationLayer = 7
)

// apply sets c's options on a socket before it connects or listens.
func (cfg Config) apply(fd int) error {
	if err := setLiveness(fd, cfg.Liveness); err != nil {
		return err
	}
	if cfg.Adaptation != 0 {
		b := binary.NativeEndian.AppendUint32(nil, cfg.Adaptation)
		if err := setsockoptBytes(fd, solSCTP, sctpAdaptationLayer, b); err != nil {
			return os.NewSyscallError("setsockopt SCTP_ADAPTATION_LAYER", err)
		}
	}
	return nil
}

// Info returns what the kernel knows of the association: its state, its
// send side and each path's round-trip time, retransmission timeout and
// MTU.
func (c *Conn) Info() (Info, error) {
	var in Info
	var err error
	if cerr := c.rc.Control(func(fd uintptr) { in, err = assocInfo(int(fd), 0) }); cerr != nil {
		err = cerr
	}
	if err != nil {
		return Info{}, c.opError("getsockopt", err)
	}
	return in, nil
}

// assocInfo reads SCTP_STATUS and SCTP_GET_PEER_ADDR_INFO of association
// id (0 on a one-to-one socket).
func assocInfo(fd int, id AssocID) (Info, error) {
	buf := make([]byte, sizeofStatus)
	binary.NativeEndian.PutUint32(buf, uint32(id))
	n, err := getsockoptBytes(fd, solSCTP, sctpStatus, buf)
	if err != nil {
		return Info{}, os.NewSyscallError("getsockopt", err)
	}
	in, err := parseStatus(buf[:n])
	if err != nil {
		return Info{}, err
	}
	addrs, err := rawPeerAddrs(fd, id)
	if err != nil {
		return Info{}, err
	}
	for _, sa := range addrs {
		pb := make([]byte, sizeofPaddrinfo)
		binary.NativeEndian.PutUint32(pb, uint32(id))
		copy(pb[4:4+sizeofSockaddrStorage], sa)
		n, err := getsockoptBytes(fd, solSCTP, sctpGetPeerAddrInfo, pb)
		if err != nil {
			return Info{}, os.NewSyscallError("getsockopt", err)
		}
		p, err := parsePaddrinfo(pb[:n])
		if err != nil {
			return Info{}, err
		}
		in.Paths = append(in.Paths, p)
	}
	return in, nil
}

// rawAddrs returns the local or peer addresses (opt) of association id as
// the kernel writes them (sockaddr_in or sockaddr_in6), to hand back to it.
func rawAddrs(fd, opt int, id AssocID) ([][]byte, error) {
	buf := make([]byte, 8+16*sizeofSockaddrIn6)
	binary.NativeEndian.PutUint32(buf, uint32(id))
	n, err := getsockoptBytes(fd, solSCTP, opt, buf)
	if err != nil {
		return nil, err
	}
	if n < 8 {
		return nil, errors.New("sctp: short address list")
	}
	count := int(binary.NativeEndian.Uint32(buf[4:]))
	var out [][]byte
	p := buf[8:n]
	for range count {
		l := 0
		if len(p) >= 2 {
			switch binary.NativeEndian.Uint16(p) {
			case unix.AF_INET:
				l = sizeofSockaddrIn
			case unix.AF_INET6:
				l = sizeofSockaddrIn6
			}
		}
		if l == 0 || len(p) < l {
			return nil, errors.New("sctp: bad address list")
		}
		out = append(out, p[:l])
		p = p[l:]
	}
	return out, nil
}

// rawPeerAddrs is rawAddrs of the peer's addresses.
func rawPeerAddrs(fd int, id AssocID) ([][]byte, error) {
	raw, err := rawAddrs(fd, sctpGetPeerAddrs, id)
	if err != nil {
		return nil, os.NewSyscallError("getsockopt", err)
	}
	return raw, nil
}

// SetLiveness sets the association's heartbeat interval, retransmission
// limits and RTO bounds (SCTP_PEER_ADDR_PARAMS on every path,
// SCTP_ASSOCINFO, SCTP_RTOINFO), so that a peer that stops answering is
// detected as quickly as l says: the association is then aborted, and
// reads and writes fail.
func (c *Conn) SetLiveness(l Liveness) error {
	var err error
	if cerr := c.rc.Control(func(fd uintptr) {
		if err = setLiveness(int(fd), l); err == nil && l.HeartbeatInterval > 0 {
			err = heartbeatNow(int(fd))
		}
	}); cerr != nil {
		err = cerr
	}
	return c.opError("setsockopt", err)
}

func setLiveness(fd int, l Liveness) error {
	if l.AssocMaxRetrans < 0 || l.AssocMaxRetrans > 1<<16-1 {
		return errLiveness
	}
	rto, err := appendRTOInfo(l)
	if err != nil {
		return err
	}
	pp, err := appendPaddrparams(l)
	if err != nil {
		return err
	}
	if l.RTOMin > 0 || l.RTOMax > 0 || l.RTOInitial > 0 {
		if err := setsockoptBytes(fd, solSCTP, sctpRTOInfo, rto); err != nil {
			return os.NewSyscallError("setsockopt SCTP_RTOINFO", err)
		}
	}
	if l.HeartbeatInterval > 0 || l.PathMaxRetrans > 0 {
		if err := setsockoptBytes(fd, solSCTP, sctpPeerAddrParams, pp); err != nil {
			return os.NewSyscallError("setsockopt SCTP_PEER_ADDR_PARAMS", err)
		}
	}
	if l.AssocMaxRetrans > 0 {
		// struct sctp_assocparams: only sasoc_asocmaxrxt is set; the
		// kernel leaves the zero fields as they are.
		b := make([]byte, 20)
		binary.NativeEndian.PutUint16(b[4:], uint16(l.AssocMaxRetrans))
		if err := setsockoptBytes(fd, solSCTP, sctpAssocInfo, b); err != nil {
			return os.NewSyscallError("setsockopt SCTP_ASSOCINFO", err)
		}
	}
	return nil
}

// heartbeatNow sends a heartbeat on every path of the association, which
// also restarts each path's heartbeat timer on the interval now set (the
// kernel keeps a timer armed on the old one otherwise).
func heartbeatNow(fd int) error {
	addrs, err := rawPeerAddrs(fd, 0)
	if err != nil {
		return err
	}
	for _, sa := range addrs {
		b := make([]byte, sizeofPaddrparams)
		copy(b[4:4+sizeofSockaddrStorage], sa)
		binary.NativeEndian.PutUint32(b[4+sizeofSockaddrStorage+14:], sppHBDemand)
		if err := setsockoptBytes(fd, solSCTP, sctpPeerAddrParams, b); err != nil {
			return os.NewSyscallError("setsockopt SCTP_PEER_ADDR_PARAMS", err)
		}
	}
	return nil
}
