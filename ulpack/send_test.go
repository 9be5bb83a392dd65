package ulpack

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// sent describes a pushed frame as decoded from its bytes.
type sent struct {
	Seq     uint64
	Flags   string
	PPID    uint32
	Payload string
}

func describe(t *testing.T, frame []byte) sent {
	t.Helper()
	d, err := ParseData(frame)
	if err != nil {
		t.Fatalf("frame %x: %v", frame, err)
	}
	f := ""
	if d.AckRequest {
		f += "A"
	}
	if d.AckNow {
		f += "N"
	}
	return sent{d.Seq, f, d.PPID, string(d.Payload)}
}

func push(t *testing.T, s *Sender, payload string, ackRequest bool) sent {
	t.Helper()
	seq, frame, err := s.Push(7, []byte(payload), ackRequest)
	if err != nil {
		t.Fatalf("Push(%q): %v", payload, err)
	}
	got := describe(t, frame)
	if got.Seq != seq {
		t.Fatalf("Push returned %d, frame has %d", seq, got.Seq)
	}
	return got
}

func replay(t *testing.T, s *Sender) []sent {
	t.Helper()
	var out []sent
	for seq, frame := range s.Replay() {
		d := describe(t, frame)
		if d.Seq != seq {
			t.Fatalf("Replay yielded %d with a frame of %d", seq, d.Seq)
		}
		out = append(out, d)
	}
	return out
}

func TestSenderNumbersAndReplays(t *testing.T) {
	s := NewSender(SenderConfig{})
	want := []sent{{1, "", 7, "a"}, {2, "A", 7, "bb"}, {3, "", 7, ""}}
	got := []sent{push(t, s, "a", false), push(t, s, "bb", true), push(t, s, "", false)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("pushed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, replay(t, s)); diff != "" {
		t.Fatalf("replay (-want +got):\n%s", diff)
	}
	if n, err := s.Ack(2); n != 2 || err != nil {
		t.Fatalf("Ack(2) = %d, %v; want 2, nil", n, err)
	}
	if diff := cmp.Diff(want[2:], replay(t, s)); diff != "" {
		t.Fatalf("replay after Ack(2) (-want +got):\n%s", diff)
	}
	if c, b := s.Len(); c != 1 || b != DataLen {
		t.Fatalf("Len = %d, %d; want 1, %d", c, b, DataLen)
	}
	if s.Acked() != 2 || s.Next() != 4 {
		t.Fatalf("Acked, Next = %d, %d; want 2, 4", s.Acked(), s.Next())
	}
}

func TestSenderAck(t *testing.T) {
	s := NewSender(SenderConfig{})
	for range 5 {
		push(t, s, "x", false)
	}
	for _, c := range []struct {
		upTo  uint64
		freed int
		err   error
	}{
		{2, 2, nil},
		{1, 0, nil}, // stale
		{2, 0, nil}, // repeated
		{6, 0, ErrAckBeyond},
		{5, 3, nil},
		{5, 0, nil},
	} {
		n, err := s.Ack(c.upTo)
		if n != c.freed || !errors.Is(err, c.err) {
			t.Errorf("Ack(%d) = %d, %v; want %d, %v", c.upTo, n, err, c.freed, c.err)
		}
	}
	if got := replay(t, s); len(got) != 0 {
		t.Fatalf("replay after all acknowledged: %v", got)
	}
}

func TestSenderBounds(t *testing.T) {
	for _, c := range []struct {
		name     string
		cfg      SenderConfig
		window   uint32
		payloads []int // payload sizes pushed in order
		want     []error
	}{
		{"count", SenderConfig{MaxCount: 2}, 0, []int{1, 1, 1}, []error{nil, nil, ErrFull}},
		{"bytes", SenderConfig{MaxBytes: 3 * DataLen}, 0, []int{DataLen, 0, 0}, []error{nil, nil, ErrFull}},
		{"bytes exactly", SenderConfig{MaxBytes: 3 * DataLen}, 0, []int{DataLen, 0}, []error{nil, nil}},
		{"too large", SenderConfig{MaxBytes: 100}, 0, []int{100 - DataLen + 1}, []error{ErrTooLarge}},
		{"too large in a full buffer", SenderConfig{MaxBytes: 100, MaxCount: 1}, 0, []int{1, 200}, []error{nil, ErrTooLarge}},
		{"peer window", SenderConfig{MaxCount: 10}, 3, []int{0, 0, 0, 0}, []error{nil, nil, nil, ErrFull}},
		{"peer window above MaxCount", SenderConfig{MaxCount: 2}, 100, []int{0, 0, 0}, []error{nil, nil, ErrFull}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := NewSender(c.cfg)
			s.SetWindow(c.window)
			for i, n := range c.payloads {
				fits := s.Fits(n)
				_, _, err := s.Push(0, make([]byte, n), false)
				if !errors.Is(err, c.want[i]) {
					t.Fatalf("push %d (%d bytes): %v, want %v", i, n, err, c.want[i])
				}
				if fits != (err == nil) {
					t.Fatalf("push %d: Fits = %v, but Push: %v", i, fits, err)
				}
			}
		})
	}
}

// TestSenderFullThenAcked checks that an acknowledgement makes room.
func TestSenderFullThenAcked(t *testing.T) {
	s := NewSender(SenderConfig{MaxCount: 2})
	push(t, s, "1", false)
	push(t, s, "2", false)
	if _, _, err := s.Push(0, nil, false); !errors.Is(err, ErrFull) {
		t.Fatalf("third push: %v, want ErrFull", err)
	}
	s.Ack(1)
	if got := push(t, s, "3", false); got.Seq != 3 {
		t.Fatalf("after the acknowledgement pushed %+v, want sequence number 3", got)
	}
}

// TestSenderAckNow checks the sender's own ack request: set on the message
// that fills half the bound, once until it is acknowledged, and not when
// the application's request is outstanding.
func TestSenderAckNow(t *testing.T) {
	s := NewSender(SenderConfig{MaxCount: 8})
	var flags string
	for range 6 {
		flags += push(t, s, "", false).Flags + "."
	}
	if want := "...N..."; flags[:len(want)] != want {
		t.Fatalf("flags %q, want the fourth message with N: %q", flags, want)
	}
	s.Ack(3) // the N message (4) is still unacknowledged: no new request
	if f := push(t, s, "", false).Flags; f != "" {
		t.Fatalf("message 7 has flags %q with a request outstanding", f)
	}
	s.Ack(5) // 4 acknowledged, 2 left; the third (8) is not half of 8 yet...
	if f := push(t, s, "", false).Flags; f != "" {
		t.Fatalf("message 8 has flags %q below half the bound", f)
	}
	if f := push(t, s, "", false).Flags; f != "N" { // ...the fourth (9) is
		t.Fatalf("message 9 has flags %q, want N", f)
	}

	b := NewSender(SenderConfig{MaxBytes: 4 * DataLen})
	if f := push(t, b, "", false).Flags; f != "" {
		t.Fatalf("first message of a quarter of the bytes: flags %q", f)
	}
	if f := push(t, b, "", false).Flags; f != "N" {
		t.Fatalf("message reaching half the bytes: flags %q, want N", f)
	}

	r := NewSender(SenderConfig{MaxCount: 2})
	if f := push(t, r, "", true).Flags; f != "A" {
		t.Fatalf("application request: flags %q, want A only", f)
	}
	if f := push(t, r, "", false).Flags; f != "" {
		t.Fatalf("flags %q with the application's request outstanding", f)
	}
}

// TestSenderFramesStable pushes, acknowledges and pushes again through a
// small ring, so that frames wrap and the buffer grows, and checks that
// every frame handed out stays unchanged until it is acknowledged.
func TestSenderFramesStable(t *testing.T) {
	s := NewSender(SenderConfig{MaxCount: 64, MaxBytes: 1 << 16})
	type held struct {
		seq   uint64
		frame []byte
		copy  []byte
	}
	var live []held
	for i := range 2000 {
		n := (i * 37) % 700
		payload := bytes.Repeat([]byte{byte(i)}, n)
		seq, frame, err := s.Push(uint32(i), payload, false)
		if errors.Is(err, ErrFull) {
			k := len(live)/2 + 1
			if _, err := s.Ack(live[k-1].seq); err != nil {
				t.Fatal(err)
			}
			live = live[k:]
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		live = append(live, held{seq, frame, bytes.Clone(frame)})
		for _, h := range live {
			if !bytes.Equal(h.frame, h.copy) {
				t.Fatalf("after push %d, frame %d changed before its acknowledgement", i, h.seq)
			}
		}
		var j int
		for rs, rf := range s.Replay() {
			if rs != live[j].seq || !bytes.Equal(rf, live[j].copy) {
				t.Fatalf("replay %d: %d %x, want %d %x", j, rs, rf, live[j].seq, live[j].copy)
			}
			j++
		}
		if j != len(live) {
			t.Fatalf("replayed %d, want %d", j, len(live))
		}
	}
	if limit := 1<<16 + DataLen + 699; len(s.buf) > limit {
		t.Fatalf("ring grew to %d bytes for a bound of %d and frames of at most %d", len(s.buf), 1<<16, DataLen+699)
	}
}

// TestSenderRingBulk: a bulk sender that keeps its window full of 32 KiB
// frames, acknowledged half a window at a time, needs a ring of the window
// and one frame, not twice the window, and stops growing once it has it.
func TestSenderRingBulk(t *testing.T) {
	const window, size = 4 << 20, 32 << 10
	s := NewSender(SenderConfig{MaxBytes: window})
	payload := make([]byte, size)
	var grownAt int
	for i := range 2000 {
		before := len(s.buf)
		if _, _, err := s.Push(0, payload, false); errors.Is(err, ErrFull) {
			n, _ := s.Len()
			if _, err := s.Ack(s.Acked() + uint64(n/2)); err != nil {
				t.Fatal(err)
			}
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		if len(s.buf) != before {
			grownAt = i
		}
	}
	if limit := window + DataLen + size; len(s.buf) > limit {
		t.Errorf("ring of %d bytes for a window of %d and frames of %d; want at most %d", len(s.buf), window, DataLen+size, limit)
	}
	if grownAt > 2*window/size {
		t.Errorf("the ring still grew at push %d", grownAt)
	}
}

func TestReplayStops(t *testing.T) {
	s := NewSender(SenderConfig{})
	for range 3 {
		push(t, s, "", false)
	}
	var seen []uint64
	for seq := range s.Replay() {
		seen = append(seen, seq)
		if seq == 2 {
			break
		}
	}
	if fmt.Sprint(seen) != "[1 2]" {
		t.Fatalf("replay with break yielded %v", seen)
	}
}
