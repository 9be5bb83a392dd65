package ulpack

import (
	"errors"
	"fmt"
	"math/bits"
	"time"
)

// DefaultAckDelay is how long a Receiver holds back an acknowledgement that
// nobody asked for, to coalesce it with later ones.
const DefaultAckDelay = 10 * time.Millisecond

// Errors of the receive side.
var (
	// ErrOutOfWindow: a DATA frame beyond the receiver's window, a protocol
	// error (the sender exceeded the Window it was given).
	ErrOutOfWindow = errors.New("ulpack: sequence number beyond the window")
	// ErrNotReceived: Processed for a message that was not received.
	ErrNotReceived = errors.New("ulpack: message not received")
)

// ReceiverConfig configures a Receiver. The zero value uses the defaults.
type ReceiverConfig struct {
	// Window is how many sequence numbers beyond the cumulative
	// acknowledgement the receiver tracks, and so the Window it announces
	// (default DefaultWindow, rounded up to a multiple of 64).
	Window int
	// AckDelay is how long an acknowledgement nobody asked for may wait
	// (default DefaultAckDelay; negative: none, acknowledge at once).
	AckDelay time.Duration
}

// Receiver is the receive side of one direction of a session: it drops
// duplicates by sequence number, learns which messages the application has
// processed, and says what to acknowledge and when. Its state is the
// cumulative acknowledgement (every message up to it is processed) and a
// window above it of received, processed and ack-requested bits.
type Receiver struct {
	window int
	delay  time.Duration

	acked uint64 // every message up to it is processed
	top   uint64 // highest sequence number received
	recv  []uint64
	proc  []uint64
	req   []uint64 // received with A or N

	sent    uint64    // last cumulative acknowledgement taken
	urgent  bool      // a processed message in (sent, acked] asked for an acknowledgement
	pending time.Time // when acked first passed sent
}

// NewReceiver returns a Receiver whose cumulative acknowledgement is acked:
// 0 for a new session, the HELLO's Next - 1 on an element the session
// failed over to, or what the element knew of the session.
func NewReceiver(cfg ReceiverConfig, acked uint64) *Receiver {
	w := cfg.Window
	if w <= 0 {
		w = DefaultWindow
	}
	w = (w + 63) &^ 63
	d := cfg.AckDelay
	if d == 0 {
		d = DefaultAckDelay
	}
	words := w / 64
	bitsets := make([]uint64, 3*words)
	return &Receiver{
		window: w, delay: max(d, 0), acked: acked, top: acked, sent: acked,
		recv: bitsets[:words:words], proc: bitsets[words : 2*words : 2*words], req: bitsets[2*words:],
	}
}

// Window is the window to announce in HELLO or HELLO_ACK.
func (r *Receiver) Window() uint32 { return uint32(r.window) }

// bit returns where seq's bit is in the bitsets: they are rings of window
// bits, indexed by seq modulo the window.
func (r *Receiver) bit(seq uint64) (word int, shift uint) {
	i := seq % uint64(r.window)
	return int(i / 64), uint(i % 64)
}

func (r *Receiver) has(set []uint64, seq uint64) bool {
	w, sh := r.bit(seq)
	return set[w]>>sh&1 != 0
}

func (r *Receiver) set(set []uint64, seq uint64) {
	w, sh := r.bit(seq)
	set[w] |= 1 << sh
}

// Receive takes a DATA frame's sequence number and whether it asked for an
// acknowledgement (FlagAckRequest or FlagAckNow). It reports whether to
// deliver the message: false for a duplicate (at or below the cumulative
// acknowledgement, or received before within the window). A sequence number
// beyond the window is ErrOutOfWindow, and 0 is ErrMalformed.
func (r *Receiver) Receive(seq uint64, ackRequested bool) (bool, error) {
	switch {
	case seq == 0:
		return false, fmt.Errorf("%w: sequence number 0", ErrMalformed)
	case seq <= r.acked:
		return false, nil
	case seq-r.acked > uint64(r.window):
		return false, fmt.Errorf("%w: %d, acknowledged %d, window %d", ErrOutOfWindow, seq, r.acked, r.window)
	case r.has(r.recv, seq):
		return false, nil
	}
	r.set(r.recv, seq)
	if ackRequested {
		r.set(r.req, seq)
	}
	r.top = max(r.top, seq)
	return true, nil
}

// Processed records that the application has processed the message seq,
// at now. The cumulative acknowledgement advances over processed messages
// in order. Processing a message twice is harmless; one never received
// (or a duplicate's number that was not delivered) is ErrNotReceived.
func (r *Receiver) Processed(now time.Time, seq uint64) error {
	if seq <= r.acked {
		return nil
	}
	if seq-r.acked > uint64(r.window) || !r.has(r.recv, seq) {
		return fmt.Errorf("%w: %d", ErrNotReceived, seq)
	}
	r.set(r.proc, seq)
	if seq == r.acked+1 {
		r.advance(now)
	}
	return nil
}

// advance moves the cumulative acknowledgement over processed messages.
func (r *Receiver) advance(now time.Time) {
	before := r.acked
	for r.acked < r.top {
		// Advance over the run of processed bits from acked+1 to the end
		// of its word (seq numbers in a word are consecutive), and clear
		// them for the numbers a window later.
		w, sh := r.bit(r.acked + 1)
		run := bits.TrailingZeros64(^(r.proc[w] >> sh))
		if run == 0 {
			break
		}
		clear := ^uint64(0) >> (64 - run) << sh
		if r.req[w]&clear != 0 {
			r.urgent = true
		}
		r.recv[w] &^= clear
		r.proc[w] &^= clear
		r.req[w] &^= clear
		r.acked += uint64(run)
	}
	if before == r.sent && r.acked > r.sent {
		r.pending = now
	}
}

// Resume prepares the Receiver of an element that kept a session's state
// for the session's next connection (a HELLO with Resume whose Next is
// acked+1). What was received and not processed is forgotten, since the
// connection that brought it is gone and the sender replays it; what was
// processed stays, so that its replay is dropped as a duplicate. The
// cumulative acknowledgement becomes at least acked: the messages up to it
// were acknowledged elsewhere. Send Acked in the HELLO_ACK.
func (r *Receiver) Resume(acked uint64) {
	for i := range r.recv {
		r.recv[i] &= r.proc[i]
		r.req[i] &= r.proc[i]
	}
	if acked <= r.acked {
		return
	}
	if acked-r.acked >= uint64(r.window) {
		clear(r.recv)
		clear(r.proc)
		clear(r.req)
	} else {
		for seq := r.acked + 1; seq <= acked; seq++ {
			w, sh := r.bit(seq)
			r.recv[w] &^= 1 << sh
			r.proc[w] &^= 1 << sh
			r.req[w] &^= 1 << sh
		}
	}
	r.acked, r.top = acked, max(r.top, acked)
	r.sent, r.urgent, r.pending = acked, false, time.Time{}
	// Messages processed just above acked now continue the sequence.
	if r.acked < r.top && r.has(r.proc, r.acked+1) {
		r.advance(time.Time{})
	}
}

// Acked is the cumulative acknowledgement: every message up to it has been
// processed.
func (r *Receiver) Acked() uint64 { return r.acked }

// Deadline is when an acknowledgement is due, or the zero time when none
// is pending. A due acknowledgement's deadline may be in the past.
func (r *Receiver) Deadline() time.Time {
	switch {
	case r.acked == r.sent:
		return time.Time{}
	case r.urgent:
		return r.pending
	}
	return r.pending.Add(r.delay)
}

// AckDue reports whether an ACK should be sent at now: a processed message
// asked for one, or the oldest unacknowledged processed message has waited
// AckDelay.
func (r *Receiver) AckDue(now time.Time) bool {
	return r.acked > r.sent && (r.urgent || !now.Before(r.pending.Add(r.delay)))
}

// TakeAck returns the cumulative acknowledgement to send and records it as
// sent; ok is false when there is nothing new to acknowledge. Call it when
// AckDue, or whenever a frame goes out anyway (an acknowledgement rides
// along for free).
func (r *Receiver) TakeAck() (upTo uint64, ok bool) {
	if r.acked == r.sent {
		return r.acked, false
	}
	r.sent, r.urgent, r.pending = r.acked, false, time.Time{}
	return r.acked, true
}
