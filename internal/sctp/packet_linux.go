package sctp

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Linux SCTP constants of one-to-many sockets (linux/sctp.h).
const (
	sctpStatus = 14
	sndAbort   = 1 << 2 // SCTP_ABORT
)

// packetBuffer is the send and receive buffer size one-to-many sockets ask
// for; the kernel grants at most its wmem_max and rmem_max.
const packetBuffer = 4 << 20

// PacketConn is a one-to-many SCTP socket (SOCK_SEQPACKET): it takes
// associations from any number of peers without accepting them one by one,
// and each message it reads or writes names its association. One socket
// serves them all, so a reader can take the messages of many peers with one
// system call. Associations are set up without an accept queue, so a burst
// of new peers is not turned away.
type PacketConn struct {
	f      *os.File
	rc     syscall.RawConn
	sk     sock // for the batch functions, made once
	addr   *Addr
	rmu    sync.Mutex
	rb     batchScratch
	wmu    sync.Mutex
	wb     batchScratch
	closed sync.Once
	isDone atomic.Bool
}

// ListenPacket opens a one-to-many socket on laddr (nil or no IPs: every
// address) that takes associations.
func ListenPacket(network string, laddr *Addr) (*PacketConn, error) {
	if laddr == nil {
		laddr = &Addr{}
	}
	fam := family(network, laddr)
	fd, err := unix.Socket(fam, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: laddr, Err: os.NewSyscallError("socket", err)}
	}
	fail := func(op string, err error) (*PacketConn, error) {
		unix.Close(fd)
		return nil, &net.OpError{Op: "listen", Net: network, Addr: laddr, Err: os.NewSyscallError(op, err)}
	}
	for _, o := range []struct{ level, opt, v int }{
		{unix.SOL_SOCKET, unix.SO_REUSEADDR, 1},
		{solSCTP, sctpNoDelay, 1},
		{solSCTP, sctpRecvRcvInfo, 1},
		// All associations share the socket's buffers, whose defaults
		// (16 KiB to send) suit one association: ask for as much as the
		// system allows.
		{unix.SOL_SOCKET, unix.SO_SNDBUF, packetBuffer},
		{unix.SOL_SOCKET, unix.SO_RCVBUF, packetBuffer},
	} {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.v); err != nil {
			return fail("setsockopt", err)
		}
	}
	// Association changes, so that the owner knows when a peer goes.
	if err := setsockoptBytes(fd, solSCTP, sctpEvents, []byte{0, 1}); err != nil {
		return fail("setsockopt", err)
	}
	if err := bind(fd, fam, laddr); err != nil {
		unix.Close(fd)
		return nil, &net.OpError{Op: "listen", Net: network, Addr: laddr, Err: err}
	}
	if err := unix.Listen(fd, listenBacklog()); err != nil {
		return fail("listen", err)
	}
	f := os.NewFile(uintptr(fd), "sctp-packet")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	p := &PacketConn{f: f, rc: rc, addr: laddr}
	p.sk = sock{rc, p.opError}
	if sa, err := unix.Getsockname(fd); err == nil {
		p.addr = &Addr{IPs: laddr.IPs, Port: portOf(sa)}
	}
	return p, nil
}

func (p *PacketConn) opError(op string, err error) error {
	if err == nil {
		return nil
	}
	if p.isDone.Load() || errors.Is(err, os.ErrClosed) {
		err = net.ErrClosed
	}
	if errno, ok := err.(syscall.Errno); ok {
		err = os.NewSyscallError(op, errno)
	}
	return &net.OpError{Op: op, Net: "sctp", Addr: p.addr, Err: err}
}

// ReadBatch waits for at least one message and reads those that are ready,
// up to len(ms), as Conn.ReadBatch does. Each message names its
// association; an association that comes up or goes away takes a message
// of its own, with Event set and no data.
func (p *PacketConn) ReadBatch(ms []Message, limit int) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	p.rmu.Lock()
	defer p.rmu.Unlock()
	for {
		n, err := readBatch(p.sk, &p.rb, ms, limit, true, nil)
		if n > 0 || err != io.EOF {
			return n, err
		}
		// A one-to-many socket has no end of stream; a zero-length read
		// is nothing to report.
	}
}

// WriteBatch sends each message to its association, in order, as
// Conn.WriteBatch does.
func (p *PacketConn) WriteBatch(ms []Message) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return writeBatch(p.sk, &p.wb, ms, true)
}

// Abort aborts association id. It does not wait, whatever the socket's
// send buffer and write deadline: an abort takes no room in the buffer, and
// frees what the association held there.
func (p *PacketConn) Abort(id AssocID) error {
	oob := make([]byte, unix.CmsgSpace(sizeofSndInfo))
	putSndInfo(oob, SndInfo{Assoc: id, Flags: sndAbort})
	var err error
	if cerr := p.rc.Control(func(fd uintptr) {
		for {
			if _, err = unix.SendmsgN(int(fd), nil, oob, nil, unix.MSG_DONTWAIT); err != unix.EINTR {
				return
			}
		}
	}); cerr != nil {
		err = cerr
	}
	return p.opError("abort", err)
}

// PeerAddr returns the peer's addresses in association id and its port.
func (p *PacketConn) PeerAddr(id AssocID) (*Addr, error) {
	var a *Addr
	var err error
	if cerr := p.rc.Control(func(fd uintptr) { a, err = getAddrs(int(fd), sctpGetPeerAddrs, id) }); cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, p.opError("getsockopt", err)
	}
	return a, nil
}

// AssocStatus is the state of an association's send side.
type AssocStatus struct {
	// PeerWindow is the peer's receive window as last advertised: zero
	// when the peer does not read what it is sent.
	PeerWindow int
	// Unacked is how many chunks of data the peer has not acknowledged.
	Unacked int
}

// Status returns the send-side state of association id.
func (p *PacketConn) Status(id AssocID) (AssocStatus, error) {
	buf := make([]byte, 256)
	binary.NativeEndian.PutUint32(buf, uint32(id))
	var n int
	var err error
	if cerr := p.rc.Control(func(fd uintptr) { n, err = getsockoptBytes(int(fd), solSCTP, sctpStatus, buf) }); cerr != nil {
		err = cerr
	}
	if err != nil {
		return AssocStatus{}, p.opError("getsockopt", err)
	}
	if n < 16 {
		return AssocStatus{}, p.opError("getsockopt", errors.New("short SCTP_STATUS"))
	}
	return AssocStatus{
		PeerWindow: int(binary.NativeEndian.Uint32(buf[8:])),
		Unacked:    int(binary.NativeEndian.Uint16(buf[12:])),
	}, nil
}

// SetWriteDeadline sets the deadline of writes, as net.Conn's does.
func (p *PacketConn) SetWriteDeadline(t time.Time) error { return p.f.SetWriteDeadline(t) }

// Close closes the socket and with it every association. A blocked read
// or write returns net.ErrClosed.
func (p *PacketConn) Close() error {
	err := net.ErrClosed
	p.closed.Do(func() {
		p.isDone.Store(true)
		err = p.f.Close()
	})
	return p.opError("close", err)
}

// Addr returns the local address.
func (p *PacketConn) Addr() net.Addr { return p.addr }
