package ulpack

import (
	"errors"
	"fmt"
	"iter"
)

// Defaults of SenderConfig and ReceiverConfig.
const (
	DefaultMaxCount = 1024
	DefaultMaxBytes = 1 << 20
	DefaultWindow   = 1024
)

// Errors of the send side.
var (
	// ErrFull: the buffer of unacknowledged messages has no room for the
	// message now; an acknowledgement will make some.
	ErrFull = errors.New("ulpack: unacknowledged buffer full")
	// ErrTooLarge: the message is larger than the whole byte bound and can
	// never be sent.
	ErrTooLarge = errors.New("ulpack: message larger than the unacknowledged buffer")
	// ErrAckBeyond: the peer acknowledged a sequence number never sent, a
	// protocol error.
	ErrAckBeyond = errors.New("ulpack: acknowledgement beyond the last message sent")
)

// SenderConfig bounds a Sender. The zero value uses the defaults.
type SenderConfig struct {
	// MaxCount is the most messages kept unacknowledged (default
	// DefaultMaxCount). The peer's window (SetWindow) may lower it.
	MaxCount int
	// MaxBytes is the most bytes kept unacknowledged, counting whole DATA
	// frames (DataLen bytes of header each); default DefaultMaxBytes.
	MaxBytes int
}

// Sender is the send side of one direction of a session: it numbers
// messages from 1, encodes them as DATA frames, and keeps each frame until
// the peer acknowledges it. What it keeps is the replay set: after
// failover, Replay gives it back in order. Frames live in one ring buffer
// that grows as needed, to at most MaxBytes and the longest frame, so that Push
// allocates only while the buffer grows.
type Sender struct {
	maxCount, maxBytes int
	window             int // the peer's, 0 until SetWindow

	acked  uint64 // cumulative acknowledgement received
	next   uint64 // sequence number of the next Push
	reqOut uint64 // last sequence number sent with an ack request (A or N)

	ents  []entry // ring of the unacknowledged frames, oldest at head
	head  int
	count int
	bytes int // sum of the frames' lengths

	buf      []byte // ring of frame bytes: live from ents[head].off to tail
	tail     int    // where the next frame goes
	maxFrame int    // the longest frame pushed
}

type entry struct{ off, n int }

// NewSender returns a Sender whose first message has sequence number 1.
func NewSender(cfg SenderConfig) *Sender {
	if cfg.MaxCount <= 0 {
		cfg.MaxCount = DefaultMaxCount
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	return &Sender{maxCount: cfg.MaxCount, maxBytes: cfg.MaxBytes, next: 1}
}

// SetWindow applies the peer's Window (from HELLO or HELLO_ACK): at most
// that many messages unacknowledged, if fewer than MaxCount. 0 lifts it.
func (s *Sender) SetWindow(w uint32) {
	s.window = int(min(uint64(w), uint64(s.maxCount)))
}

func (s *Sender) limit() int {
	if s.window > 0 {
		return s.window
	}
	return s.maxCount
}

// Fits reports whether a message of n payload bytes fits now. A message that
// does not fit waits for an acknowledgement, unless it is larger than
// MaxBytes altogether.
func (s *Sender) Fits(n int) bool {
	return s.count < s.limit() && s.bytes+DataLen+n <= s.maxBytes
}

// Push numbers the message, encodes it as a DATA frame and keeps the frame
// until it is acknowledged. ackRequest is the application's ack request
// (FlagAckRequest); Push itself sets FlagAckNow when the buffer reaches
// half its bound and no request is outstanding. It returns the message's
// sequence number and its frame, which the caller sends; the frame stays
// valid and unchanged until the message is acknowledged. When the message
// does not fit it returns ErrFull (wait for an acknowledgement) or
// ErrTooLarge.
func (s *Sender) Push(ppid uint32, payload []byte, ackRequest bool) (seq uint64, frame []byte, err error) {
	n := DataLen + len(payload)
	if n > s.maxBytes {
		return 0, nil, fmt.Errorf("%w: %d bytes, bound %d", ErrTooLarge, n, s.maxBytes)
	}
	if !s.Fits(len(payload)) {
		return 0, nil, ErrFull
	}
	seq = s.next
	var flags uint8
	if ackRequest {
		flags |= FlagAckRequest
	} else if s.reqOut <= s.acked && (2*(s.count+1) >= s.limit() || 2*(s.bytes+n) >= s.maxBytes) {
		flags |= FlagAckNow
	}
	if flags != 0 {
		s.reqOut = seq
	}
	off := s.alloc(n)
	b := AppendDataHeader(s.buf[off:off], seq, flags, ppid)
	b = append(b, payload...)
	if len(s.ents) == s.count {
		s.growEnts()
	}
	s.ents[(s.head+s.count)%len(s.ents)] = entry{off, n}
	s.count++
	s.bytes += n
	s.next++
	return seq, b[:n:n], nil
}

// alloc finds room for n contiguous bytes in the ring and returns where.
// With frames live, they run from the oldest's offset to tail, wrapped
// when tail is at or below that offset.
func (s *Sender) alloc(n int) int {
	if s.count == 0 {
		s.tail = 0
		if n <= len(s.buf) {
			s.tail = n
			return 0
		}
	} else if h := s.ents[s.head].off; s.tail > h { // not wrapped: room after tail, then before h
		if s.tail+n <= len(s.buf) {
			s.tail += n
			return s.tail - n
		}
		if n <= h {
			s.tail = n
			return 0
		}
	} else if s.tail+n <= h { // wrapped: room between tail and h
		s.tail += n
		return s.tail - n
	}
	s.grow(n)
	s.tail += n
	return s.tail - n
}

// grow moves the live frames to the start of a larger buffer with room for
// n more bytes. A ring of maxBytes and the longest frame always has room
// for the next frame, however the frames fall: unwrapped, the room after
// tail and before the oldest frame add up to at least two frames' worth;
// wrapped, the end a frame skipped wastes less than that frame, which is
// live, so the room between tail and the oldest holds the next. So the
// ring grows (doubling) to that size at most, not to twice the live
// bytes it would (for a bulk sender's full window, twice MaxBytes of
// memory touched for the first time, a page fault a page).
func (s *Sender) grow(n int) {
	s.maxFrame = max(s.maxFrame, n)
	size := max(min(max(2*len(s.buf), 4096), 3*s.maxBytes), 2*(s.bytes+n))
	if c := s.maxBytes + s.maxFrame; size > c {
		size = max(c, s.bytes+n)
	}
	nb := make([]byte, size)
	off := 0
	for i := range s.count {
		e := &s.ents[(s.head+i)%len(s.ents)]
		copy(nb[off:], s.buf[e.off:e.off+e.n])
		e.off = off
		off += e.n
	}
	s.buf, s.tail = nb, off
}

func (s *Sender) growEnts() {
	ne := make([]entry, max(2*len(s.ents), 16))
	for i := range s.count {
		ne[i] = s.ents[(s.head+i)%len(s.ents)]
	}
	s.ents, s.head = ne, 0
}

// Ack applies a cumulative acknowledgement: it frees every message up to
// upTo and returns how many it freed. A stale acknowledgement (at or below
// one already applied) frees nothing; one beyond the last message pushed is
// ErrAckBeyond.
func (s *Sender) Ack(upTo uint64) (int, error) {
	if upTo >= s.next {
		return 0, fmt.Errorf("%w: %d, last sent %d", ErrAckBeyond, upTo, s.next-1)
	}
	if upTo <= s.acked {
		return 0, nil
	}
	k := int(upTo - s.acked)
	for range k {
		s.bytes -= s.ents[s.head].n
		s.ents[s.head] = entry{}
		s.head = (s.head + 1) % len(s.ents)
	}
	s.count -= k
	s.acked = upTo
	return k, nil
}

// Replay yields the unacknowledged messages' sequence numbers and frames,
// oldest first: the replay set, to resend after failover. Push and Ack
// must not be called during the iteration; the frames stay valid after it
// until acknowledged, so a caller may collect them and write them later.
func (s *Sender) Replay() iter.Seq2[uint64, []byte] {
	return func(yield func(uint64, []byte) bool) {
		for i := range s.count {
			e := s.ents[(s.head+i)%len(s.ents)]
			if !yield(s.acked+1+uint64(i), s.buf[e.off:e.off+e.n:e.off+e.n]) {
				return
			}
		}
	}
}

// Acked is the cumulative acknowledgement received: every message up to it
// is acknowledged. Acked()+1 is the HELLO's Next after failover.
func (s *Sender) Acked() uint64 { return s.acked }

// Next is the sequence number the next Push will use.
func (s *Sender) Next() uint64 { return s.next }

// Len returns how many messages, and how many bytes of DATA frames, wait
// for an acknowledgement.
func (s *Sender) Len() (count, bytes int) { return s.count, s.bytes }
