package ulpack

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// step is one event for a Receiver and what it must answer.
type step struct {
	op   string // "recv", "recvA" (ack requested), "proc", "take"
	seq  uint64
	at   time.Duration // since t0
	want string        // recv: "deliver"/"dup"; proc: ""; take: "ack N"/"none"; or an error
}

func run(t *testing.T, r *Receiver, steps []step) {
	t.Helper()
	for i, s := range steps {
		now := t0.Add(s.at)
		var got string
		var err error
		switch s.op {
		case "recv", "recvA":
			var ok bool
			ok, err = r.Receive(s.seq, s.op == "recvA")
			got = map[bool]string{true: "deliver", false: "dup"}[ok]
		case "proc":
			err = r.Processed(now, s.seq)
		case "due":
			got = map[bool]string{true: "due", false: "not due"}[r.AckDue(now)]
		case "deadline":
			d := r.Deadline()
			if d.IsZero() {
				got = "none"
			} else {
				got = d.Sub(t0).String()
			}
		case "take":
			if n, ok := r.TakeAck(); ok {
				got = "ack " + strconv.FormatUint(n, 10)
			} else {
				got = "none"
			}
		default:
			t.Fatalf("bad op %q", s.op)
		}
		if err != nil {
			got = err.Error()
		}
		if got != s.want {
			t.Fatalf("step %d %s %d at %v: %q, want %q", i, s.op, s.seq, s.at, got, s.want)
		}
	}
}

const ms = time.Millisecond

func TestReceiver(t *testing.T) {
	for _, c := range []struct {
		name  string
		cfg   ReceiverConfig
		acked uint64
		steps []step
	}{
		{"coalesced", ReceiverConfig{}, 0, []step{
			{"deadline", 0, 0, "none"},
			{"recv", 1, 0, "deliver"},
			{"recv", 2, 0, "deliver"},
			{"deadline", 0, 0, "none"}, // received is not processed
			{"proc", 1, 1 * ms, ""},
			{"proc", 2, 3 * ms, ""},
			{"deadline", 0, 3 * ms, "11ms"}, // AckDelay after the first
			{"due", 0, 10 * ms, "not due"},
			{"due", 0, 11 * ms, "due"},
			{"take", 0, 11 * ms, "ack 2"},
			{"take", 0, 11 * ms, "none"},
			{"deadline", 0, 11 * ms, "none"},
		}},
		{"ack request is immediate", ReceiverConfig{}, 0, []step{
			{"recv", 1, 0, "deliver"},
			{"recvA", 2, 0, "deliver"},
			{"proc", 1, 1 * ms, ""},
			{"due", 0, 1 * ms, "not due"},
			{"proc", 2, 2 * ms, ""},
			{"due", 0, 2 * ms, "due"},
			{"deadline", 0, 2 * ms, "1ms"},
			{"take", 0, 2 * ms, "ack 2"},
			{"recv", 3, 3 * ms, "deliver"},
			{"proc", 3, 3 * ms, ""},
			{"due", 0, 3 * ms, "not due"}, // the request was answered
		}},
		{"request found behind unprocessed messages", ReceiverConfig{}, 0, []step{
			{"recvA", 1, 0, "deliver"},
			{"recvA", 2, 0, "deliver"},
			{"recvA", 3, 0, "deliver"},
			{"proc", 1, 0, ""},
			{"due", 0, 0, "due"},
			{"take", 0, 0, "ack 1"},
			{"proc", 2, 0, ""},
			{"due", 0, 0, "due"},
		}},
		{"duplicates", ReceiverConfig{}, 0, []step{
			{"recv", 1, 0, "deliver"},
			{"recv", 1, 0, "dup"},
			{"recv", 3, 0, "deliver"},
			{"recv", 3, 0, "dup"},
			{"proc", 1, 0, ""},
			{"recv", 1, 0, "dup"},
			{"recv", 2, 0, "deliver"},
			{"recv", 2, 0, "dup"},
		}},
		{"out of order", ReceiverConfig{}, 0, []step{
			{"recv", 3, 0, "deliver"},
			{"recv", 1, 0, "deliver"},
			{"recv", 2, 0, "deliver"},
			{"proc", 3, 0, ""},
			{"take", 0, 0, "none"},
			{"proc", 1, 0, ""},
			{"take", 0, 0, "ack 1"},
			{"proc", 2, 0, ""},
			{"take", 0, 0, "ack 3"},
		}},
		{"window", ReceiverConfig{Window: 64}, 0, []step{
			{"recv", 64, 0, "deliver"},
			{"recv", 65, 0, "ulpack: sequence number beyond the window: 65, acknowledged 0, window 64"},
			{"recv", 1, 0, "deliver"},
			{"proc", 1, 0, ""},
			{"recv", 65, 0, "deliver"},
			{"recv", 66, 0, "ulpack: sequence number beyond the window: 66, acknowledged 1, window 64"},
		}},
		{"resumed element", ReceiverConfig{}, 41, []step{
			{"recv", 41, 0, "dup"},
			{"recv", 42, 0, "deliver"},
			{"proc", 40, 0, ""},
			{"take", 0, 0, "none"},
			{"proc", 42, 0, ""},
			{"take", 0, 0, "ack 42"},
		}},
		{"errors", ReceiverConfig{}, 0, []step{
			{"recv", 0, 0, "ulpack: malformed frame: sequence number 0"},
			{"proc", 1, 0, "ulpack: message not received: 1"},
			{"proc", 5000, 0, "ulpack: message not received: 5000"},
			{"recv", 1, 0, "deliver"},
			{"proc", 1, 0, ""},
			{"proc", 1, 0, ""}, // twice is harmless
		}},
		{"no delay", ReceiverConfig{AckDelay: -1}, 0, []step{
			{"recv", 1, 0, "deliver"},
			{"proc", 1, 5 * ms, ""},
			{"due", 0, 5 * ms, "due"},
		}},
		{"processed in reverse across words", ReceiverConfig{Window: 128}, 0, func() []step {
			var s []step
			for i := uint64(1); i <= 128; i++ {
				s = append(s, step{"recv", i, 0, "deliver"})
			}
			for i := uint64(128); i >= 2; i-- {
				s = append(s, step{"proc", i, 0, ""})
			}
			s = append(s, step{"take", 0, 0, "none"}, step{"proc", 1, 0, ""}, step{"take", 0, 0, "ack 128"},
				step{"recv", 128, 0, "dup"}, step{"recv", 129, 0, "deliver"}, step{"recv", 256, 0, "deliver"},
				step{"recv", 257, 0, "ulpack: sequence number beyond the window: 257, acknowledged 128, window 128"})
			return s
		}()},
	} {
		t.Run(c.name, func(t *testing.T) { run(t, NewReceiver(c.cfg, c.acked), c.steps) })
	}
}

func TestReceiverWindowRounded(t *testing.T) {
	for _, c := range []struct{ in, want int }{{0, DefaultWindow}, {1, 64}, {64, 64}, {65, 128}} {
		if got := NewReceiver(ReceiverConfig{Window: c.in}, 0).Window(); got != uint32(c.want) {
			t.Errorf("Window %d: %d, want %d", c.in, got, c.want)
		}
	}
}

// TestReceiverLongRun streams many messages through a small window, in
// order and processed at once, and checks that each is delivered once and
// acknowledged.
func TestReceiverLongRun(t *testing.T) {
	r := NewReceiver(ReceiverConfig{Window: 64, AckDelay: -1}, 0)
	var acks []uint64
	for seq := uint64(1); seq <= 1000; seq++ {
		for range 2 { // the second is a duplicate
			ok, err := r.Receive(seq, false)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				if err := r.Processed(t0, seq); err != nil {
					t.Fatal(err)
				}
			}
		}
		if seq%250 == 0 {
			n, _ := r.TakeAck()
			acks = append(acks, n)
		}
	}
	if diff := cmp.Diff([]uint64{250, 500, 750, 1000}, acks); diff != "" {
		t.Fatalf("acks (-want +got):\n%s", diff)
	}
	if _, err := r.Receive(1000+64+1, false); !errors.Is(err, ErrOutOfWindow) {
		t.Fatalf("beyond the window: %v", err)
	}
}

// TestReceiverResume checks an element's Receiver kept for a session's next
// connection: received but unprocessed messages are forgotten (they come
// again and are delivered again), processed ones stay duplicates, and the
// cumulative acknowledgement moves up to the HELLO's.
func TestReceiverResume(t *testing.T) {
	r := NewReceiver(ReceiverConfig{Window: 64}, 0)
	run(t, r, []step{
		{"recv", 1, 0, "deliver"},
		{"recv", 2, 0, "deliver"},
		{"recv", 3, 0, "deliver"},
		{"recvA", 4, 0, "deliver"},
		{"proc", 1, 0, ""},
		{"proc", 3, 0, ""},
	})
	r.Resume(0) // the PU had no acknowledgement: it replays from 1
	run(t, r, []step{
		{"take", 0, 0, "ack 1"}, // the HELLO_ACK
		{"recv", 1, 0, "dup"},
		{"recv", 2, 0, "deliver"}, // forgotten, delivered again
		{"recv", 3, 0, "dup"},     // processed
		{"recv", 4, 0, "deliver"},
		{"proc", 2, 0, ""},
		{"take", 0, 0, "ack 3"},
		{"proc", 4, 0, ""},
		{"due", 0, 0, "not due"}, // the old request was forgotten with the message; this one asked for none
	})
	r.Resume(10) // acknowledged elsewhere up to 10
	run(t, r, []step{
		{"take", 0, 0, "none"},
		{"recv", 10, 0, "dup"},
		{"recv", 11, 0, "deliver"},
		{"recv", 74, 0, "deliver"},
		{"recv", 75, 0, "ulpack: sequence number beyond the window: 75, acknowledged 10, window 64"},
	})
	if r.Acked() != 10 {
		t.Fatalf("Acked = %d, want 10", r.Acked())
	}
	r.Resume(1000) // further than the window: everything is cleared
	run(t, r, []step{
		{"recv", 1000, 0, "dup"},
		{"recv", 1001, 0, "deliver"},
		{"proc", 1001, 0, ""},
		{"take", 0, 0, "ack 1001"},
	})
}
