package sctp

import (
	"io"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchScratch holds the kernel-facing arrays of one batch direction, kept
// across calls.
type batchScratch struct {
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	oob  []byte
	rest []byte // readRest's room, made on first use
}

// restSize is the room readRest reads the rest of a long message into:
// one system call for most messages.
const restSize = 64 << 10

// oobSize is the room for one message's ancillary data.
var oobSize = unix.CmsgSpace(sizeofRcvInfo) + 64

func (s *batchScratch) grow(n int) {
	if len(s.hdrs) >= n {
		return
	}
	s.hdrs = make([]unix.Mmsghdr, n)
	s.iovs = make([]unix.Iovec, n)
	s.oob = make([]byte, n*oobSize)
}

// set points entry i at buf and the ancillary data room oob.
func (s *batchScratch) set(i int, buf, oob []byte) {
	s.iovs[i] = unix.Iovec{}
	if len(buf) > 0 {
		s.iovs[i].Base = &buf[0]
		s.iovs[i].SetLen(len(buf))
	}
	h := &s.hdrs[i]
	*h = unix.Mmsghdr{}
	h.Hdr.Iov = &s.iovs[i]
	h.Hdr.SetIovlen(1)
	h.Hdr.Control = &oob[0]
	h.Hdr.SetControllen(len(oob))
}

// ReadBatch waits for at least one message and reads those that are ready,
// up to len(ms), with one system call (recvmmsg). Each ms[i].Buf is the room
// for one message; ReadBatch may exchange the Bufs among ms. It returns the
// number of messages read into ms[:n]. A message longer than its Buf comes
// in a new Buf when it is at most limit bytes long; a longer one is
// discarded and takes a slot with Err set to ErrMessageTooLong. At the end
// of the association it returns io.EOF (after the messages before it).
func (c *Conn) ReadBatch(ms []Message, limit int) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return readBatch(c.sk, &c.rb, ms, limit, false, nil)
}

// Room gives ReadBatchInto the buffers it reads into, so that a reader can
// lend out the room it reads into and hold none while it waits.
type Room interface {
	// Fill points ms[i].Buf at the room for message i, for the first
	// k of ms (at least one), and returns k. It is called before every
	// attempt to read.
	Fill(ms []Message) (k int)
	// Idle is called when an attempt found nothing to read, before
	// ReadBatchInto waits for the socket: the room Fill gave is not used
	// again before the next Fill.
	Idle()
}

// ReadBatchInto is ReadBatch with the room for the messages from r rather
// than from the Bufs of ms (whose Bufs it overwrites). A message longer
// than its room comes in a new Buf, as with ReadBatch.
func (c *Conn) ReadBatchInto(ms []Message, limit int, r Room) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return readBatch(c.sk, &c.rb, ms, limit, false, r)
}

// sock is what the batch functions need of a socket.
type sock struct {
	rc      syscall.RawConn
	opError func(op string, err error) error
}

// readBatch is ReadBatch for any SCTP socket; with events set, association
// changes come as messages too; with room set, the messages are read into
// the room it gives. The caller holds the read lock.
func readBatch(sk sock, s *batchScratch, ms []Message, limit int, events bool, room Room) (int, error) {
	s.grow(len(ms))
	for {
		k := len(ms)
		fill := func() {
			if room != nil {
				k = min(max(room.Fill(ms), 1), len(ms))
			}
			for i := range ms[:k] {
				s.set(i, ms[i].Buf, s.oob[i*oobSize:(i+1)*oobSize])
			}
		}
		var got int
		var rerr error
		err := sk.rc.Read(func(fd uintptr) bool {
			fill()
			for {
				r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[0])), uintptr(k), 0, 0, 0)
				got, rerr = int(r), nil
				if errno != 0 {
					got, rerr = 0, errno
				}
				if rerr == unix.EAGAIN && room != nil {
					room.Idle()
				}
				if rerr != unix.EINTR {
					return rerr != unix.EAGAIN
				}
			}
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return 0, sk.opError("read", err)
		}
		n, eof, err := collect(sk, s, ms[:k], got, limit, events)
		if err != nil {
			return n, err
		}
		if n > 0 {
			return n, nil
		}
		if eof {
			return 0, io.EOF
		}
		// Only notifications: wait for more.
	}
}

// collect turns the got entries recvmmsg filled into messages at the front
// of ms, dropping notifications and joining the pieces of a message longer
// than its buffer. It reports whether the association ended.
func collect(sk sock, s *batchScratch, ms []Message, got, limit int, events bool) (n int, eof bool, err error) {
	var long []byte  // a message longer than its buffer, so far
	inLong := false  // within such a message
	tooLong := false // and it is longer than limit
	note := false    // within a notification
	var longInfo RcvInfo
	finish := func() {
		ms[n].N, ms[n].Err, ms[n].PPID, ms[n].Stream, ms[n].Assoc, ms[n].Event = 0, ErrMessageTooLong, longInfo.PPID, longInfo.Stream, longInfo.Assoc, 0
		ms[n].Unordered = longInfo.Unordered
		if !tooLong {
			ms[n].Buf, ms[n].N, ms[n].Err = long, len(long), nil
		}
		n++
		long, inLong, tooLong = nil, false, false
	}
	add := func(piece []byte) {
		if tooLong {
			return
		}
		if len(long)+len(piece) > limit {
			long, tooLong = nil, true
			return
		}
		long = append(long, piece...)
	}
	for j := range got {
		h := &s.hdrs[j]
		l, flags := int(h.Len), int(h.Hdr.Flags)
		eor := flags&unix.MSG_EOR != 0
		switch {
		case note || flags&msgNotification != 0:
			if !note && eor && events {
				if id, up, ok := parseAssocEvent(ms[j].Buf[:l]); ok {
					ms[n].Buf, ms[j].Buf = ms[j].Buf, ms[n].Buf
					ms[n].N, ms[n].Err, ms[n].PPID, ms[n].Stream, ms[n].Assoc = 0, nil, 0, 0, id
					ms[n].Unordered = false
					ms[n].Event = AssocDown
					if up {
						ms[n].Event = AssocUp
					}
					n++
				}
			}
			note = !eor
			continue
		case inLong:
			add(ms[j].Buf[:l])
			if eor {
				finish()
			}
			continue
		case l == 0 && !eor && h.Hdr.Controllen == 0:
			return n, true, nil
		}
		info, _ := parseRcvInfo(s.oob[j*oobSize : j*oobSize+int(h.Hdr.Controllen)])
		if !eor {
			inLong, longInfo = true, info
			add(ms[j].Buf[:l])
			continue
		}
		ms[n].Buf, ms[j].Buf = ms[j].Buf, ms[n].Buf
		ms[n].N, ms[n].Err, ms[n].PPID, ms[n].Stream, ms[n].Assoc, ms[n].Event = l, nil, info.PPID, info.Stream, info.Assoc, 0
		ms[n].Unordered = info.Unordered
		n++
	}
	if inLong || note {
		// The rest of the message is still to come: read it to its end.
		var add2 func([]byte)
		if inLong {
			add2 = add
		}
		if s.rest == nil {
			s.rest = make([]byte, restSize)
		}
		if err := readRest(sk, s.rest, add2); err != nil {
			return n, false, err
		}
		if inLong {
			finish()
		}
	}
	return n, false, nil
}

// readRest reads the rest of a message into scratch, a piece at a time,
// passing each piece to add (nil: dropping them). The read lock is held.
func readRest(sk sock, scratch []byte, add func([]byte)) error {
	for {
		var got, flags int
		var rerr error
		err := sk.rc.Read(func(fd uintptr) bool {
			for {
				got, _, flags, rerr = recvmsg(int(fd), scratch, nil)
				if rerr != unix.EINTR {
					return rerr != unix.EAGAIN
				}
			}
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return sk.opError("read", err)
		}
		if add != nil {
			add(scratch[:got])
		}
		if flags&unix.MSG_EOR != 0 {
			return nil
		}
		if got == 0 {
			return sk.opError("read", io.ErrUnexpectedEOF)
		}
	}
}

// WriteBatch sends ms[i].Buf, each as one message with its PPID and
// stream, in order, with as few system calls (sendmmsg) as the socket's
// buffer allows. It returns the number of messages sent; fewer than
// len(ms) only with an error.
func (c *Conn) WriteBatch(ms []Message) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return writeBatch(c.sk, &c.wb, ms, true)
}

// WriteBatchNow is WriteBatch that does not wait for room in the socket's
// buffer: it sends, in order, the messages the socket takes at once and
// returns how many (fewer than len(ms) without an error when the buffer
// is full; the rest are not sent). A message goes whole or not at all.
func (c *Conn) WriteBatchNow(ms []Message) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return writeBatch(c.sk, &c.wb, ms, false)
}

// writeBatch is WriteBatch for any SCTP socket, each message to its
// association on a one-to-many socket; without wait it stops at a full
// buffer. The caller holds the write lock.
func writeBatch(sk sock, s *batchScratch, ms []Message, wait bool) (int, error) {
	s.grow(len(ms))
	for i := range ms {
		oob := s.oob[i*oobSize : i*oobSize+unix.CmsgSpace(sizeofSndInfo)]
		putSndInfo(oob, SndInfo{PPID: ms[i].PPID, Stream: ms[i].Stream, Unordered: ms[i].Unordered, Assoc: ms[i].Assoc})
		s.set(i, ms[i].Buf, oob)
	}
	sent := 0
	var werr error
	err := sk.rc.Write(func(fd uintptr) bool {
		for sent < len(ms) {
			r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[sent])), uintptr(len(ms)-sent), 0, 0, 0)
			switch errno {
			case 0:
				sent += int(r)
			case unix.EINTR:
			case unix.EAGAIN:
				return !wait
			default:
				werr = errno
				return true
			}
		}
		return true
	})
	if err == nil {
		err = werr
	}
	return sent, sk.opError("write", err)
}
