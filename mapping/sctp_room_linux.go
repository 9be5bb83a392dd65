package mapping

import (
	"bytes"
	"weak"

	"github.com/rsp-go/rsp/internal/sctp"
)

// An SCTP association delivers one message, or a piece of one, per
// message header of a recvmmsg: a message longer than the room it is read
// into takes another system call for its rest (and a copy to join the
// pieces). An SCTPConn that shares its reads (ShareReads) therefore reads
// into slots of a leased read buffer (the TCP mapping's Lease), all of one
// size that follows the messages coming in, so that the messages of a bulk
// stream come whole, several to a system call, and stay where the kernel
// put them until the caller releases them. It holds no read buffer while
// it waits for the socket, and packs the messages of consecutive reads
// into one buffer as long as messages in it are held.

const (
	// minSlot is the smallest slot: room for a batch of small messages.
	minSlot = 2 << 10
	// slotAlign is what slot sizes and the start of the free room in a
	// read buffer are rounded up to.
	slotAlign = 512
	// shrinkAfter is how many reads in a row whose messages would all
	// fit a smaller slot make the slot smaller.
	shrinkAfter = 16
)

// sctpRoom is the room an SCTPConn that shares its reads reads into; it
// is the reader's (rmu of the sctp.Conn is held while it is used).
type sctpRoom struct {
	lease *Lease
	off   int // the free room of lease starts here
	slot  int // the size of a slot; 0 before the first read
	k     int // slots the last Fill gave
	// While the connection waits it holds no lease: held is the one it
	// read into last, which it reads on into, from off, if messages in it
	// are still held when the next message comes, so that messages that
	// trickle in one at a time share a buffer.
	held    weak.Pointer[Lease]
	heldGen uint32
	// Reads in a row whose messages would all fit a slot of smallMax.
	smaller  int
	smallMax int
	limit    int
}

// Fill points ms at slots of the read buffer.
func (r *sctpRoom) Fill(ms []sctp.Message) int {
	if r.slot == 0 {
		r.slot = min(minSlot, r.limit)
	}
	if r.lease == nil {
		r.resume()
	}
	if len(r.lease.b)-r.off < r.slot {
		r.lease.Release()
		r.lease, r.off = newReadBuf(), 0
	}
	k := min(len(ms), (len(r.lease.b)-r.off)/r.slot)
	for i := range ms[:k] {
		at := r.off + i*r.slot
		ms[i].Buf = r.lease.b[at : at+r.slot : at+r.slot]
	}
	r.k = k
	return k
}

// Idle gives the read buffer up while the connection waits.
func (r *sctpRoom) Idle() {
	if r.lease == nil {
		return
	}
	r.held, r.heldGen = weak.Make(r.lease), r.lease.gen.Load()
	r.lease.Release()
	r.lease = nil
}

// resume takes the buffer read into before the connection waited, if
// messages in it are still held, or a new one.
func (r *sctpRoom) resume() {
	if l := r.held.Value(); l != nil {
		r.held = weak.Pointer[Lease]{}
		for {
			n := l.refs.Load()
			if n <= 0 {
				break
			}
			if l.refs.CompareAndSwap(n, n+1) {
				if l.gen.Load() == r.heldGen {
					r.lease = l // off is where it was
					return
				}
				// Back in the pool and out again since: another's.
				l.Release()
				break
			}
		}
	}
	r.lease, r.off = newReadBuf(), 0
}

// slotOf returns which of the k slots of the last Fill b is, or -1 (a
// message longer than its slot comes in a Buf of its own).
func (r *sctpRoom) slotOf(b []byte) int {
	if len(b) == 0 || r.lease == nil {
		return -1
	}
	for i := range r.k {
		if &b[0] == &r.lease.b[r.off+i*r.slot] {
			return i
		}
	}
	return -1
}

// readShared is ReadBatch for a connection that shares its reads: into the
// slots of a read buffer, handing the messages longer than their Buf in ms
// out in it with a Lease; shorter ones are copied into their Buf.
func (c *SCTPConn) readShared(ms []Msg, limit int) (int, error) {
	r := &c.room
	r.limit = limit
	if cap(c.rb) < len(ms) {
		c.rb = make([]sctp.Message, len(ms))
	}
	rb := c.rb[:len(ms)]
	n, err := c.Conn.ReadBatchInto(rb, limit, r)
	end, longest := r.off, 0
	for i := range rb[:n] {
		m, dst := &rb[i], &ms[i]
		if dst.Lease != nil {
			dst.Buf, dst.Lease = nil, nil // the caller's now
		}
		dst.N, dst.PPID, dst.Stream, dst.Unordered, dst.Err = m.N, m.PPID, m.Stream, m.Unordered, nil
		longest = max(longest, m.N)
		if m.Err != nil {
			dst.N, dst.Err = 0, ErrMessageTooLong
			longest = max(longest, limit)
			continue
		}
		switch j := r.slotOf(m.Buf); {
		case m.N <= len(dst.Buf):
			copy(dst.Buf, m.Buf[:m.N])
		case j < 0:
			dst.Buf = m.Buf // longer than its slot: a Buf of its own
		case r.lease == nil:
			dst.Buf = bytes.Clone(m.Buf[:m.N]) // not reached: read with a lease
		default:
			r.lease.refs.Add(1)
			dst.Buf, dst.Lease = m.Buf[:m.N:m.N], r.lease
			end = max(end, r.off+j*r.slot+m.N)
		}
	}
	clear(rb)
	if r.lease != nil {
		r.off = min((end+slotAlign-1)/slotAlign*slotAlign, len(r.lease.b))
	}
	if n > 0 {
		r.adapt(longest)
	}
	return n, err
}

// adapt sizes the slots for the next read after one whose longest
// message was longest bytes: at once up to it, and down only after
// shrinkAfter reads in a row that a smaller slot would have held.
func (r *sctpRoom) adapt(longest int) {
	want := min(max(minSlot, (longest+slotAlign-1)/slotAlign*slotAlign), r.limit, 2*readBufSize)
	switch {
	case want > r.slot:
		r.slot, r.smaller = want, 0
	case want < r.slot:
		if r.smaller == 0 || want > r.smallMax {
			r.smallMax = want
		}
		r.smaller++
		if r.smaller >= shrinkAfter {
			r.slot, r.smaller = r.smallMax, 0
		}
	default:
		r.smaller = 0
	}
}
