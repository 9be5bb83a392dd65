package ulpack

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// model runs one PU→PE direction of a session through random events:
// pushes, deliveries (in order, or out of order as SCTP's unordered
// delivery may), processing in any order, acknowledgements, lost
// connections and failovers to fresh elements or to elements that kept the
// session's cumulative acknowledgement. It checks the invariants of
// spec/session.md section 7 as it goes.
type model struct {
	t    *testing.T
	next func(n int) int // a random choice in [0, n)
	now  time.Time

	s    *Sender
	cfg  ReceiverConfig
	elem int // the element connected to
	r    *Receiver
	// per element: the Receiver it kept (nil: none), and how many times it
	// lost its state
	kept []*Receiver
	life []uint64
	conn int // connections so far

	wire  [][]byte // DATA frames in flight, PU → PE
	acks  [][]byte // ACK frames in flight, PE → PU
	queue []uint64 // delivered to the element's application, not processed

	pushed    uint64             // highest sequence number pushed
	delivered map[int][]bool     // per connection: delivered already
	processed map[[3]uint64]bool // (element, life, seq) processed
	times     map[uint64]int     // seq → how many times processed, all elements
	failovers map[uint64]int     // seq → failovers while unacknowledged
	replayed  int                // frames replayed
	dupsPerFO []int              // duplicates processed after each failover
	dupFO     map[uint64]int     // seq → failover index when last replayed
	parser    Parser
}

func newModel(t *testing.T, next func(int) int, scfg SenderConfig, rcfg ReceiverConfig) *model {
	m := &model{
		t: t, next: next, now: t0,
		s: NewSender(scfg), cfg: rcfg, kept: make([]*Receiver, 4),
		delivered: map[int][]bool{}, processed: map[[3]uint64]bool{}, life: make([]uint64, 4),
		times: map[uint64]int{}, failovers: map[uint64]int{}, dupFO: map[uint64]int{},
	}
	m.connect(0)
	return m
}

// connect opens a connection to element e: HELLO with Next = acked + 1,
// HELLO_ACK with what e knows, then the replay.
func (m *model) connect(e int) {
	t := m.t
	m.elem = e
	m.conn++
	if m.r = m.kept[e]; m.r != nil {
		m.r.Resume(m.s.Acked())
	} else {
		m.r = NewReceiver(m.cfg, m.s.Acked())
	}
	m.s.SetWindow(m.r.Window())
	ack, _ := m.r.TakeAck() // HELLO_ACK
	if ack < m.s.Acked() {
		t.Fatalf("HELLO_ACK %d below the HELLO's Next - 1 = %d", ack, m.s.Acked())
	}
	if _, err := m.s.Ack(ack); err != nil {
		t.Fatalf("HELLO_ACK %d: %v", ack, err)
	}
	want := m.s.Acked() + 1
	for seq, frame := range m.s.Replay() {
		if seq != want {
			t.Fatalf("replay yielded %d, want %d (acknowledged %d)", seq, want, m.s.Acked())
		}
		want++
		m.send(frame)
		m.replayed++
	}
	if want != m.s.Next() {
		t.Fatalf("replay ended before %d, want before %d", want, m.s.Next())
	}
}

// send puts a DATA frame on the wire, checking that it was not
// acknowledged.
func (m *model) send(frame []byte) {
	d, err := ParseData(frame)
	if err != nil {
		m.t.Fatal(err)
	}
	if d.Seq <= m.s.Acked() {
		m.t.Fatalf("sending %d, acknowledged up to %d", d.Seq, m.s.Acked())
	}
	m.wire = append(m.wire, frame)
}

func (m *model) step() {
	t := m.t
	m.now = m.now.Add(time.Duration(m.next(3)) * time.Millisecond)
	switch op := m.next(100); {
	case op < 30: // the application writes
		if m.s.Fits(8) {
			seq, frame, err := m.s.Push(1, []byte("payload!"), m.next(4) == 0)
			if err != nil {
				t.Fatalf("Push after Fits: %v", err)
			}
			if seq != m.pushed+1 {
				t.Fatalf("pushed %d after %d", seq, m.pushed)
			}
			m.pushed = seq
			m.send(frame)
		} else if _, _, err := m.s.Push(1, []byte("payload!"), false); err != ErrFull {
			t.Fatalf("Push when it does not fit: %v", err)
		}
	case op < 55: // a frame arrives, usually the first in flight
		if len(m.wire) == 0 {
			return
		}
		i := 0
		if m.next(5) == 0 {
			i = m.next(len(m.wire))
		}
		b := m.wire[i]
		m.wire = slices.Delete(m.wire, i, i+1)
		f, err := m.parser.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		d := f.(*Data)
		ok, err := m.r.Receive(d.Seq, d.AckRequest || d.AckNow)
		if err != nil {
			t.Fatalf("Receive(%d): %v (acknowledged %d)", d.Seq, err, m.r.Acked())
		}
		dl := m.delivered[m.conn]
		for uint64(len(dl)) <= d.Seq {
			dl = append(dl, false)
		}
		if ok {
			if dl[d.Seq] {
				t.Fatalf("message %d delivered twice on one connection", d.Seq)
			}
			dl[d.Seq] = true
			m.queue = append(m.queue, d.Seq)
		}
		m.delivered[m.conn] = dl
	case op < 75: // the application processes a message, usually the oldest
		if len(m.queue) == 0 {
			return
		}
		i := 0
		if m.next(4) == 0 {
			i = m.next(len(m.queue))
		}
		seq := m.queue[i]
		m.queue = slices.Delete(m.queue, i, i+1)
		key := [3]uint64{uint64(m.elem), m.life[m.elem], seq}
		if m.processed[key] {
			t.Fatalf("element %d processes message %d twice", m.elem, seq)
		}
		m.processed[key] = true
		m.times[seq]++
		if m.times[seq] > 1 {
			if fo, ok := m.dupFO[seq]; ok {
				m.dupsPerFO[fo]++
			}
		}
		if err := m.r.Processed(m.now, seq); err != nil {
			t.Fatal(err)
		}
	case op < 88: // the element sends what acknowledgement is due
		if m.r.AckDue(m.now) || m.next(8) == 0 {
			if n, ok := m.r.TakeAck(); ok {
				m.acks = append(m.acks, AppendAck(nil, n))
			}
		} else if d := m.r.Deadline(); !d.IsZero() && !d.After(m.now) {
			t.Fatalf("deadline %v passed at %v but no ack due", d, m.now)
		}
	case op < 97: // an acknowledgement arrives
		if len(m.acks) == 0 {
			return
		}
		f, err := m.parser.Parse(m.acks[0])
		if err != nil {
			t.Fatal(err)
		}
		m.acks = m.acks[1:]
		if _, err := m.s.Ack(f.(*Ack).UpTo); err != nil {
			t.Fatal(err)
		}
	default: // the connection fails: fail over
		m.kept[m.elem] = m.r // the element keeps the session's state...
		if m.next(2) == 0 {
			m.kept[m.elem] = nil // ...or dies and loses it
			m.life[m.elem]++
		}
		m.wire, m.acks, m.queue = nil, nil, nil
		fo := len(m.dupsPerFO)
		m.dupsPerFO = append(m.dupsPerFO, 0)
		for seq := range m.s.Replay() {
			m.failovers[seq]++
			m.dupFO[seq] = fo
		}
		m.connect((m.elem + 1 + m.next(len(m.kept)-1)) % len(m.kept))
	}
}

// drain ends the run without failures until everything is acknowledged.
func (m *model) drain() {
	for i := 0; m.s.Acked() < m.pushed; i++ {
		if i > 1_000_000 {
			m.t.Fatalf("no progress: acknowledged %d of %d", m.s.Acked(), m.pushed)
		}
		for len(m.wire) > 0 || len(m.queue) > 0 {
			if len(m.wire) > 0 {
				d, _ := ParseData(m.wire[0])
				m.wire = m.wire[1:]
				if ok, err := m.r.Receive(d.Seq, false); err != nil {
					m.t.Fatal(err)
				} else if ok {
					m.queue = append(m.queue, d.Seq)
				}
			}
			if len(m.queue) > 0 {
				seq := m.queue[0]
				m.queue = m.queue[1:]
				m.times[seq]++
				if err := m.r.Processed(m.now, seq); err != nil {
					m.t.Fatal(err)
				}
			}
		}
		for _, a := range m.acks {
			f, err := m.parser.Parse(a)
			if err != nil {
				m.t.Fatal(err)
			}
			if _, err := m.s.Ack(f.(*Ack).UpTo); err != nil {
				m.t.Fatal(err)
			}
		}
		m.acks = nil
		if n, ok := m.r.TakeAck(); ok {
			if _, err := m.s.Ack(n); err != nil {
				m.t.Fatal(err)
			}
		} else if m.s.Acked() < m.pushed {
			// Something was lost in flight without a failover: impossible
			// on a reliable connection, so the model failed over.
			m.t.Fatalf("acknowledged %d of %d with nothing in flight", m.s.Acked(), m.pushed)
		}
	}
}

// check verifies the bounds over the whole run.
func (m *model) check(maxUnacked int) {
	t := m.t
	for seq := uint64(1); seq <= m.pushed; seq++ {
		n := m.times[seq]
		if n == 0 {
			t.Fatalf("message %d never processed", seq)
		}
		if n > 1+m.failovers[seq] {
			t.Fatalf("message %d processed %d times, with %d failovers while unacknowledged", seq, n, m.failovers[seq])
		}
	}
	for i, d := range m.dupsPerFO {
		if d > maxUnacked {
			t.Fatalf("failover %d: %d duplicates, bound %d", i, d, maxUnacked)
		}
	}
	if c, b := m.s.Len(); c != 0 || b != 0 {
		t.Fatalf("sender holds %d messages, %d bytes after all acknowledged", c, b)
	}
}

func TestProperties(t *testing.T) {
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 0x5eed))
		scfg := SenderConfig{MaxCount: 1 + rng.IntN(100), MaxBytes: 64 + rng.IntN(3000)}
		rcfg := ReceiverConfig{Window: 1 + rng.IntN(200), AckDelay: time.Duration(rng.IntN(5)) * time.Millisecond}
		m := newModel(t, rng.IntN, scfg, rcfg)
		for range 3000 {
			m.step()
		}
		m.drain()
		m.check(scfg.MaxCount)
		if seed == 0 && (m.replayed == 0 || len(m.dupsPerFO) == 0) {
			t.Fatalf("seed 0 ran no failover (replayed %d)", m.replayed)
		}
	}
}

// FuzzProperties drives the model with the fuzzer's bytes as its choices.
func FuzzProperties(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, uint8(4), uint8(64))
	f.Add([]byte("\x00\x10\x20\x30\x40\x50\x60\x70\x80\x90\xa0\xb0\xc0\xd0\xe0\xf0\xff"), uint8(1), uint8(1))
	f.Fuzz(func(t *testing.T, choices []byte, count, window uint8) {
		if len(choices) == 0 {
			return
		}
		i := 0
		next := func(n int) int {
			b := choices[i%len(choices)]
			i++
			return int(b) % n
		}
		scfg := SenderConfig{MaxCount: 1 + int(count), MaxBytes: 1 << 12}
		m := newModel(t, next, scfg, ReceiverConfig{Window: 1 + int(window)})
		for range 4 * len(choices) {
			m.step()
		}
		m.drain()
		m.check(scfg.MaxCount)
	})
}

// FuzzPeer feeds a Sender and a Receiver what a hostile peer may send:
// any acknowledgement, any sequence number, in any order. Neither may
// panic, the Sender must refuse acknowledgements of what it never sent and
// keep its accounting, and the Receiver must never deliver a sequence
// number twice on one connection (Resume starts another) nor one beyond its
// window.
func FuzzPeer(f *testing.F) {
	f.Add([]byte{0, 1, 1, 2, 0, 0, 0, 0, 0, 0, 0, 3, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte("\x02\x00\x00\x00\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x00\x00\x00\x01\x03\x00\x00\x00\x00\x00\x00\x00\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := NewSender(SenderConfig{MaxCount: 16, MaxBytes: 1024})
		r := NewReceiver(ReceiverConfig{Window: 64}, 0)
		delivered := map[uint64]bool{}
		u64 := func() uint64 {
			var v uint64
			for range 8 {
				v <<= 8
				if len(b) > 0 {
					v |= uint64(b[0])
					b = b[1:]
				}
			}
			if v > 1<<16 && v&1 == 0 {
				v &= 0xff // mostly small numbers, sometimes huge ones
			}
			return v
		}
		for len(b) > 0 {
			op := b[0]
			b = b[1:]
			switch op % 5 {
			case 0:
				s.Push(0, make([]byte, int(op)*int(op)/64), op&0x80 != 0)
			case 1:
				upTo := u64()
				before := s.Acked()
				_, err := s.Ack(upTo)
				if upTo >= s.Next() && err == nil {
					t.Fatalf("Ack(%d) of unsent (next %d) accepted", upTo, s.Next())
				}
				if err != nil && s.Acked() != before {
					t.Fatal("a refused Ack changed the sender")
				}
			case 2:
				seq := u64()
				acked := r.Acked()
				ok, err := r.Receive(seq, op&0x80 != 0)
				if ok && (delivered[seq] || seq <= acked || seq > acked+64) {
					t.Fatalf("Receive(%d) delivered (twice %v, acknowledged %d)", seq, delivered[seq], acked)
				}
				if ok {
					delivered[seq] = true
				}
				if err != nil && ok {
					t.Fatal("delivered with an error")
				}
			case 3:
				r.Processed(t0, u64())
			case 4:
				r.Resume(u64())
				clear(delivered)
			}
			count, bytes := s.Len()
			if uint64(count) != s.Next()-1-s.Acked() || count > 16 || bytes > 1024 || len(s.buf) > 1024+s.maxFrame || s.maxFrame > 1024 {
				t.Fatalf("sender holds %d messages, %d bytes; next %d acked %d", count, bytes, s.Next(), s.Acked())
			}
		}
	})
}
