package sctp

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Linux SCTP socket options and ancillary data types (linux/sctp.h).
const (
	solSCTP           = 132
	sctpNoDelay       = 3
	sctpRecvRcvInfo   = 32
	sctpGetPeerAddrs  = 108
	sctpGetLocalAddrs = 109
	sctpBindxAdd      = 100
	sctpEvents        = 11 // struct sctp_event_subscribe, one byte per event type
	snAssocChange     = 0x8001
	assocCommUp       = 0
	assocRestart      = 2
	cmsgSndInfo       = 2
	flagUnordered     = 1 // SCTP_UNORDERED, in sinfo_flags and rcv_flags
	cmsgRcvInfo       = 3
	msgNotification   = 0x8000
	sizeofSndInfo     = 16
	sizeofRcvInfo     = 28
	sizeofSockaddrIn  = 16
	sizeofSockaddrIn6 = 28
)

var (
	supportedOnce sync.Once
	supported     bool
)

// Supported reports whether the kernel provides SCTP sockets.
func Supported() bool {
	supportedOnce.Do(func() {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
		if err == nil {
			unix.Close(fd)
			supported = true
		}
	})
	return supported
}

func family(network string, addrs ...*Addr) int {
	if network == "sctp4" {
		return unix.AF_INET
	}
	if network == "sctp6" {
		return unix.AF_INET6
	}
	for _, a := range addrs {
		if a == nil {
			continue
		}
		for _, ip := range a.IPs {
			if ip.Is4() {
				return unix.AF_INET
			}
		}
	}
	return unix.AF_INET6
}

func sockaddr(fam int, ip netip.Addr, port int) unix.Sockaddr {
	if fam == unix.AF_INET {
		return &unix.SockaddrInet4{Port: port, Addr: ip.As4()}
	}
	if ip.Is4() {
		ip = netip.AddrFrom16(ip.As16())
	}
	return &unix.SockaddrInet6{Port: port, Addr: ip.As16()}
}

func socket(fam int) (int, error) {
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if err := unix.SetsockoptInt(fd, solSCTP, sctpRecvRcvInfo, 1); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("setsockopt", err)
	}
	// A message is queued whole: with the default send buffer (16 KiB
	// on some systems) a larger message waits until everything before it
	// is acknowledged, a delayed SACK at a time. Ask for room for several
	// (accepted sockets inherit it); the kernel grants at most its
	// wmem_max and rmem_max.
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, connBuffer)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, connBuffer)
	return fd, nil
}

// connBuffer is the send and receive buffer size one-to-one sockets ask
// for.
const connBuffer = 1 << 20

// bind binds fd to every address of a (all addresses when it has none).
func bind(fd, fam int, a *Addr) error {
	if a == nil {
		return nil
	}
	if len(a.IPs) == 0 {
		any := netip.IPv6Unspecified()
		if fam == unix.AF_INET {
			any = netip.IPv4Unspecified()
		}
		return os.NewSyscallError("bind", unix.Bind(fd, sockaddr(fam, any, a.Port)))
	}
	if err := unix.Bind(fd, sockaddr(fam, a.IPs[0], a.Port)); err != nil {
		return os.NewSyscallError("bind", err)
	}
	if len(a.IPs) > 1 {
		port := a.Port
		if port == 0 {
			sa, err := unix.Getsockname(fd)
			if err != nil {
				return os.NewSyscallError("getsockname", err)
			}
			port = portOf(sa)
		}
		var buf []byte
		for _, ip := range a.IPs[1:] {
			buf = appendRawSockaddr(buf, fam, ip, port)
		}
		if err := setsockoptBytes(fd, solSCTP, sctpBindxAdd, buf); err != nil {
			return os.NewSyscallError("sctp_bindx", err)
		}
	}
	return nil
}

func appendRawSockaddr(b []byte, fam int, ip netip.Addr, port int) []byte {
	if fam == unix.AF_INET {
		var sa [sizeofSockaddrIn]byte
		binary.NativeEndian.PutUint16(sa[0:], unix.AF_INET)
		binary.BigEndian.PutUint16(sa[2:], uint16(port))
		a4 := ip.As4()
		copy(sa[4:], a4[:])
		return append(b, sa[:]...)
	}
	var sa [sizeofSockaddrIn6]byte
	binary.NativeEndian.PutUint16(sa[0:], unix.AF_INET6)
	binary.BigEndian.PutUint16(sa[2:], uint16(port))
	a16 := ip.As16()
	copy(sa[8:], a16[:])
	return append(b, sa[:]...)
}

func setsockoptBytes(fd, level, opt int, b []byte) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0)
	if e != 0 {
		return e
	}
	return nil
}

func getsockoptBytes(fd, level, opt int, b []byte) (int, error) {
	n := uint32(len(b))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&n)), 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func portOf(sa unix.Sockaddr) int {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return sa.Port
	case *unix.SockaddrInet6:
		return sa.Port
	}
	return 0
}

func ipOf(sa unix.Sockaddr) netip.Addr {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(sa.Addr)
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(sa.Addr).Unmap()
	}
	return netip.Addr{}
}

// Conn is an SCTP association. It is a net.Conn whose Read returns one
// message's data and whose Write sends one message with PPID 0; ReadMsg and
// WriteMsg carry PPIDs.
type Conn struct {
	f      *os.File
	rc     syscall.RawConn
	fd     int
	laddr  *Addr
	raddr  *Addr
	rmu    sync.Mutex
	sk     sock         // for the batch functions, made once
	rb     batchScratch // ReadBatch's and ReadMsg's; guarded by rmu
	one    [1]Message   // ReadMsg's batch; guarded by rmu
	none   [1]byte      // ReadMsg's room when given none
	wmu    sync.Mutex
	wb     batchScratch // WriteBatch's; guarded by wmu
	closed sync.Once
	isDone atomic.Bool // Close was called
	// The adaptation layer indication the peer sent when the association
	// was set up (dialed associations).
	peerAdaptation    uint32
	hasPeerAdaptation bool
}

// PeerAdaptation returns the adaptation layer indication (RFC 5061) the
// peer sent when the association was set up, on an association this end
// dialed; ok is false when the peer sent none.
func (c *Conn) PeerAdaptation() (ind uint32, ok bool) {
	return c.peerAdaptation, c.hasPeerAdaptation
}

func newConn(fd int, laddr, raddr *Addr) (*Conn, error) {
	f := os.NewFile(uintptr(fd), "sctp")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	c := &Conn{f: f, rc: rc, fd: fd, laddr: laddr, raddr: raddr}
	c.sk = sock{rc, c.opError}
	unix.SetsockoptInt(fd, solSCTP, sctpNoDelay, 1)
	unix.SetsockoptInt(fd, solSCTP, sctpRecvRcvInfo, 1) // not inherited by accepted sockets everywhere
	c.laddr = c.addrs(sctpGetLocalAddrs, laddr)
	c.raddr = c.addrs(sctpGetPeerAddrs, raddr)
	return c, nil
}

func (c *Conn) opError(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	if c.isDone.Load() || errors.Is(err, os.ErrClosed) {
		// The poller reports its own "use of closed file"; net.Conn
		// users expect net.ErrClosed.
		err = net.ErrClosed
	}
	var se *os.SyscallError
	if !errors.As(err, &se) {
		if errno, ok := err.(syscall.Errno); ok {
			err = os.NewSyscallError(op, errno)
		}
	}
	return &net.OpError{Op: op, Net: "sctp", Source: c.laddr, Addr: c.raddr, Err: err}
}

// ReadMsg reads one whole message into b: the kernel's pieces of a
// message (up to its end, MSG_EOR) are joined, never returned one by one. A
// message longer than b is discarded with ErrMessageTooLong. At the end of
// the association it returns io.EOF.
func (c *Conn) ReadMsg(b []byte) (int, RcvInfo, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	ms := c.one[:]
	ms[0] = Message{Buf: b}
	if len(b) == 0 {
		// Room for nothing: any message with data is too long.
		ms[0].Buf = c.none[:]
	}
	_, err := readBatch(c.sk, &c.rb, ms, len(b), false, nil)
	m := ms[0]
	ms[0] = Message{}
	info := RcvInfo{PPID: m.PPID, Stream: m.Stream, Unordered: m.Unordered}
	if err != nil {
		return 0, info, err
	}
	if m.Err != nil || m.N > len(b) {
		return 0, info, c.opError("read", ErrMessageTooLong)
	}
	return m.N, info, nil
}

func parseRcvInfo(oob []byte) (RcvInfo, bool) {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return RcvInfo{}, false
		}
		data := oob[unix.CmsgLen(0):l]
		if h.Level == solSCTP && h.Type == cmsgRcvInfo && len(data) >= sizeofRcvInfo {
			return RcvInfo{
				Stream:    binary.NativeEndian.Uint16(data[0:]),
				Unordered: binary.NativeEndian.Uint16(data[4:])&flagUnordered != 0,
				PPID:      binary.BigEndian.Uint32(data[8:]),
				Assoc:     AssocID(binary.NativeEndian.Uint32(data[24:])),
			}, true
		}
		l = unix.CmsgSpace(l - unix.CmsgLen(0))
		if l > len(oob) {
			break
		}
		oob = oob[l:]
	}
	return RcvInfo{}, false
}

// recvmsg receives into p and oob without asking for the sender's address:
// the association has one peer, and unix.Recvmsg would spend a getsockopt
// system call on every message telling what kind of IPv4 socket filled it
// in.
func recvmsg(fd int, p, oob []byte) (n, oobn, flags int, err error) {
	return recvmsgFlags(fd, p, oob, 0)
}

// recvmsgFlags is recvmsg with flags such as MSG_PEEK.
func recvmsgFlags(fd int, p, oob []byte, inFlags int) (n, oobn, flags int, err error) {
	var iov unix.Iovec
	if len(p) > 0 {
		iov.Base = &p[0]
		iov.SetLen(len(p))
	}
	var msg unix.Msghdr
	msg.Iov = &iov
	msg.SetIovlen(1)
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	r, _, errno := unix.Syscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), uintptr(inFlags))
	if errno != 0 {
		return 0, 0, 0, errno
	}
	return int(r), int(msg.Controllen), int(msg.Flags), nil
}

// WriteMsg sends b as one message.
func (c *Conn) WriteMsg(b []byte, info SndInfo) error {
	oob := make([]byte, unix.CmsgSpace(sizeofSndInfo))
	putSndInfo(oob, info)
	var werr error
	err := c.rc.Write(func(fd uintptr) bool {
		for {
			_, werr = unix.SendmsgN(int(fd), b, oob, nil, 0)
			if werr != unix.EINTR {
				return werr != unix.EAGAIN
			}
		}
	})
	if err == nil {
		err = werr
	}
	return c.opError("write", err)
}

// putSndInfo writes an SCTP_SNDINFO control message for info into oob,
// which has room for exactly one.
func putSndInfo(oob []byte, info SndInfo) {
	clear(oob)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level = solSCTP
	h.Type = cmsgSndInfo
	h.SetLen(unix.CmsgLen(sizeofSndInfo))
	data := oob[unix.CmsgLen(0):]
	binary.NativeEndian.PutUint16(data[0:], info.Stream)
	flags := info.Flags
	if info.Unordered {
		flags |= flagUnordered
	}
	binary.NativeEndian.PutUint16(data[2:], flags)
	binary.BigEndian.PutUint32(data[4:], info.PPID)
	binary.NativeEndian.PutUint32(data[12:], uint32(info.Assoc))
}

// Read reads one message's data into b (the rest of a longer message is
// lost, with ErrMessageTooLong).
func (c *Conn) Read(b []byte) (int, error) {
	n, _, err := c.ReadMsg(b)
	return n, err
}

// Write sends b as one message with PPID 0.
func (c *Conn) Write(b []byte) (int, error) {
	if err := c.WriteMsg(b, SndInfo{}); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Close closes the association. A blocked read or write returns
// net.ErrClosed.
func (c *Conn) Close() error {
	err := net.ErrClosed
	c.closed.Do(func() {
		c.isDone.Store(true)
		err = c.f.Close()
	})
	return c.opError("close", err)
}

// LocalAddr returns the local addresses.
func (c *Conn) LocalAddr() net.Addr { return c.laddr }

// RemoteAddr returns the peer's addresses.
func (c *Conn) RemoteAddr() net.Addr { return c.raddr }

// SetDeadline sets the read and write deadlines, as net.Conn does.
func (c *Conn) SetDeadline(t time.Time) error { return c.f.SetDeadline(t) }

// SetReadDeadline sets the read deadline, as net.Conn does.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.f.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline, as net.Conn does.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }

// PeerAddrs returns the peer's addresses in the association.
func (c *Conn) PeerAddrs() ([]netip.Addr, error) {
	return c.raddr.IPs, nil
}

// addrs reads the association's local or peer addresses, falling back to
// def.
func (c *Conn) addrs(opt int, def *Addr) *Addr {
	var a *Addr
	var err error
	c.rc.Control(func(fd uintptr) {
		if a, err = getAddrs(int(fd), opt, 0); err == nil || opt != sctpGetLocalAddrs {
			return
		}
		// An endpoint bound to no address lists none: the socket's
		// name still tells the address and port in use.
		var sa unix.Sockaddr
		if sa, err = unix.Getsockname(int(fd)); err == nil {
			a = &Addr{IPs: []netip.Addr{ipOf(sa)}, Port: portOf(sa)}
		}
	})
	if err != nil || a == nil || a.Port == 0 {
		return def
	}
	return a
}

// getAddrs returns the local or peer addresses (opt) of association id (0
// on a one-to-one socket).
func getAddrs(fd, opt int, id AssocID) (*Addr, error) {
	raw, err := rawAddrs(fd, opt, id)
	if err != nil {
		return nil, err
	}
	a := &Addr{}
	for _, sa := range raw {
		ap := parseRawSockaddr(sa)
		a.Port = int(ap.Port())
		a.IPs = append(a.IPs, ap.Addr())
	}
	if len(a.IPs) == 0 {
		return nil, errors.New("sctp: no address")
	}
	return a, nil
}

// Dial connects to raddr (its first address; the others are the peer's
// alternatives) from laddr (nil: any), with the kernel's defaults.
func Dial(ctx context.Context, network string, raddr, laddr *Addr) (*Conn, error) {
	return Config{}.Dial(ctx, network, raddr, laddr)
}

// Dial connects to raddr (its first address; the others are the peer's
// alternatives) from laddr (nil: any), with c's settings from the start.
func (cfg Config) Dial(ctx context.Context, network string, raddr, laddr *Addr) (*Conn, error) {
	if raddr == nil || len(raddr.IPs) == 0 {
		return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("sctp: no remote address")}
	}
	fam := family(network, raddr, laddr)
	fd, err := socket(fam)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Addr: raddr, Err: err}
	}
	// SO_REUSEADDR lets a listener bind the port the association gets
	// (Linux allows it only when both sockets set it and the dialed one
	// does not listen), so that a program can take associations at the
	// transport address its peer sees, as a pool element does for the
	// home keep-alives of a registrar that takes it over.
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := bind(fd, fam, laddr); err != nil {
		unix.Close(fd)
		return nil, &net.OpError{Op: "dial", Net: network, Addr: raddr, Err: err}
	}
	if err := cfg.apply(fd); err != nil {
		unix.Close(fd)
		return nil, &net.OpError{Op: "dial", Net: network, Addr: raddr, Err: err}
	}
	// The association's fate comes as an SCTP_ASSOC_CHANGE notification:
	// an SCTP socket is not writable until its association is up, and an
	// association aborted while it is set up (as by a peer whose accept
	// backlog is full) sets no socket error and wakes no poller. The
	// notification is the only signal of either.
	if err := setsockoptBytes(fd, solSCTP, sctpEvents, []byte{0, 1, 0, 0, 0, 0, 0, 1}); err != nil {
		unix.Close(fd)
		return nil, &net.OpError{Op: "dial", Net: network, Addr: raddr, Err: os.NewSyscallError("setsockopt", err)}
	}
	cerr := unix.Connect(fd, sockaddr(fam, raddr.IPs[0], raddr.Port))
	if cerr != nil && cerr != unix.EINPROGRESS {
		unix.Close(fd)
		return nil, &net.OpError{Op: "dial", Net: network, Addr: raddr, Err: os.NewSyscallError("connect", cerr)}
	}
	c, err := newConn(fd, laddr, raddr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.f.SetReadDeadline(time.Unix(1, 0)) })
	err = c.awaitEstablished()
	stop()
	if err == nil && ctx.Err() == nil {
		err = setsockoptBytes(fd, solSCTP, sctpEvents, []byte{0, 0, 0, 0, 0, 0, 0, 0})
		if err != nil {
			err = os.NewSyscallError("setsockopt", err)
		}
	}
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		c.Close()
		return nil, &net.OpError{Op: "dial", Net: network, Addr: raddr, Err: err}
	}
	c.f.SetReadDeadline(time.Time{})
	c.laddr = c.addrs(sctpGetLocalAddrs, laddr)
	c.raddr = c.addrs(sctpGetPeerAddrs, raddr)
	return c, nil
}

// awaitEstablished waits for the outcome of a connect on a socket
// subscribed to association events: nil once the association is up, an
// error when it could not be set up. Data from the peer, which it can only
// send on an established association, stays queued for the reader.
//
// The peer's adaptation layer indication, if it sent one, comes as a
// notification right after the association's: it is read too.
func (c *Conn) awaitEstablished() error {
	var result error
	up := false
	peek := make([]byte, 16)
	note := make([]byte, 256)
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			n, _, flags, rerr := recvmsgFlags(int(fd), peek, nil, unix.MSG_PEEK)
			switch {
			case rerr == unix.EINTR:
				continue
			case rerr == unix.EAGAIN && up:
				// Up, and no adaptation indication follows.
				return true
			case rerr == unix.EAGAIN:
				// Nothing yet; a socket error (such as an ICMP
				// report) ends the wait too.
				if soErr, gerr := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR); gerr == nil && soErr != 0 {
					result = os.NewSyscallError("connect", syscall.Errno(soErr))
					return true
				}
				return false
			case rerr != nil:
				result = os.NewSyscallError("connect", rerr)
				return true
			case flags&msgNotification == 0:
				if !up && n == 0 && flags&unix.MSG_EOR == 0 {
					result = os.NewSyscallError("connect", unix.ECONNREFUSED)
				}
				return true
			}
			// A notification: consume it whole.
			var m int
			for {
				got, _, f, rerr := recvmsgFlags(int(fd), note[min(m, len(note)):], nil, 0)
				if rerr == unix.EINTR {
					continue
				}
				if rerr != nil {
					result = os.NewSyscallError("connect", rerr)
					return true
				}
				m += got
				if f&unix.MSG_EOR != 0 || got == 0 {
					break
				}
			}
			nb := note[:min(m, len(note))]
			if ind, ok := parseAdaptation(nb); ok {
				c.peerAdaptation, c.hasPeerAdaptation = ind, true
				return true
			}
			if isUp, errno, ok := parseAssocChange(nb); ok && !up {
				if !isUp {
					result = os.NewSyscallError("connect", errno)
					return true
				}
				up = true
			}
			// Some other notification: keep waiting.
		}
	})
	if err != nil {
		return err
	}
	return result
}

// parseAssocEvent reads an SCTP_ASSOC_CHANGE notification: the
// association and whether it is up. ok is false for other notifications.
func parseAssocEvent(b []byte) (id AssocID, up bool, ok bool) {
	if len(b) < 20 {
		return 0, false, false
	}
	up, _, ok = parseAssocChange(b)
	return AssocID(binary.NativeEndian.Uint32(b[16:])), up, ok
}

// parseAssocChange reads an SCTP_ASSOC_CHANGE notification: whether the
// association came up and, if not, why. ok is false for other
// notifications.
func parseAssocChange(b []byte) (up bool, errno syscall.Errno, ok bool) {
	if len(b) < 12 || binary.NativeEndian.Uint16(b[0:]) != snAssocChange {
		return false, 0, false
	}
	switch binary.NativeEndian.Uint16(b[8:]) {
	case assocCommUp, assocRestart:
		return true, 0, true
	}
	// For an association that could not be set up the kernel puts the
	// reason, an errno, in sac_error.
	errno = syscall.Errno(binary.NativeEndian.Uint16(b[10:]))
	if errno == 0 {
		errno = unix.ECONNREFUSED
	}
	return false, errno, true
}

// Listener accepts SCTP associations.
type Listener struct {
	done atomic.Bool
	f    *os.File
	rc   syscall.RawConn
	addr *Addr
	once sync.Once
}

// Listen listens on laddr (nil or no IPs: every address), with the
// kernel's defaults.
func Listen(network string, laddr *Addr) (*Listener, error) {
	return Config{}.Listen(network, laddr)
}

// Listen listens on laddr (nil or no IPs: every address); the associations
// it accepts have c's settings from the start.
func (cfg Config) Listen(network string, laddr *Addr) (*Listener, error) {
	if laddr == nil {
		laddr = &Addr{}
	}
	fam := family(network, laddr)
	fd, err := socket(fam)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: laddr, Err: err}
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := bind(fd, fam, laddr); err != nil {
		unix.Close(fd)
		return nil, &net.OpError{Op: "listen", Net: network, Addr: laddr, Err: err}
	}
	if err := cfg.apply(fd); err != nil {
		unix.Close(fd)
		return nil, &net.OpError{Op: "listen", Net: network, Addr: laddr, Err: err}
	}
	if err := unix.Listen(fd, listenBacklog()); err != nil {
		unix.Close(fd)
		return nil, &net.OpError{Op: "listen", Net: network, Addr: laddr, Err: os.NewSyscallError("listen", err)}
	}
	f := os.NewFile(uintptr(fd), "sctp-listener")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	l := &Listener{f: f, rc: rc, addr: laddr}
	if sa, err := unix.Getsockname(fd); err == nil {
		l.addr = &Addr{IPs: laddr.IPs, Port: portOf(sa)}
	}
	return l, nil
}

// listenBacklog is the accept backlog of listeners: the system's limit,
// as package net uses. A full backlog makes the kernel abort associations
// while they are set up, as when many pool elements hunt for a registrar
// at once after one fails.
var listenBacklog = sync.OnceValue(func() int {
	b, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		return unix.SOMAXCONN
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n <= 0 {
		return unix.SOMAXCONN
	}
	return min(n, 1<<16-1)
})

// Accept waits for the next association. After Close it returns an error
// wrapping net.ErrClosed.
func (l *Listener) Accept() (*Conn, error) {
	var nfd int
	var sa unix.Sockaddr
	var aerr error
	err := l.rc.Read(func(fd uintptr) bool {
		for {
			nfd, sa, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			// Interrupted, or an association that ended before it was
			// accepted: try again, as package net does.
			if aerr != unix.EINTR && aerr != unix.ECONNABORTED {
				return aerr != unix.EAGAIN
			}
		}
	})
	if err == nil {
		err = aerr
	}
	if err != nil {
		if l.done.Load() || errors.Is(err, os.ErrClosed) {
			err = net.ErrClosed
		} else if errno, ok := err.(syscall.Errno); ok {
			err = os.NewSyscallError("accept", errno)
		}
		return nil, &net.OpError{Op: "accept", Net: "sctp", Addr: l.addr, Err: err}
	}
	return newConn(nfd, l.addr, &Addr{IPs: []netip.Addr{ipOf(sa)}, Port: portOf(sa)})
}

// Close stops listening.
func (l *Listener) Close() error {
	err := net.ErrClosed
	l.once.Do(func() {
		l.done.Store(true)
		err = l.f.Close()
	})
	if err != nil {
		return &net.OpError{Op: "close", Net: "sctp", Addr: l.addr, Err: err}
	}
	return nil
}

// Addr returns the listening address.
func (l *Listener) Addr() net.Addr { return l.addr }
