package ulpack_test

import (
	"fmt"
	"time"

	"github.com/rsp-go/rsp/ulpack"
)

// Example runs one direction of a session by hand: the pool user's Sender
// pushes three messages, the element's Receiver takes them and
// acknowledges, the connection fails before the last acknowledgement, and
// the Sender replays what is left to a new element.
func Example() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := ulpack.NewSender(ulpack.SenderConfig{})
	r := ulpack.NewReceiver(ulpack.ReceiverConfig{}, 0)
	s.SetWindow(r.Window()) // from the HELLO_ACK

	var wire [][]byte
	for i, msg := range []string{"one", "two", "three"} {
		_, frame, err := s.Push(0, []byte(msg), i == 1) // "two" asks for an ack
		if err != nil {
			panic(err)
		}
		wire = append(wire, frame)
	}

	var p ulpack.Parser
	for _, b := range wire[:2] { // "three" is lost with the connection
		f, _ := p.Parse(b)
		d := f.(*ulpack.Data)
		if ok, _ := r.Receive(d.Seq, d.AckRequest || d.AckNow); ok {
			fmt.Printf("element: %s\n", d.Payload)
			r.Processed(now, d.Seq)
		}
	}
	if r.AckDue(now) { // at once: "two" asked for it
		upTo, _ := r.TakeAck()
		ack := ulpack.AppendAck(nil, upTo)
		f, _ := p.Parse(ack)
		s.Ack(f.(*ulpack.Ack).UpTo)
	}

	// Failover: HELLO with Next = s.Acked()+1, then the replay.
	fmt.Printf("resume at %d\n", s.Acked()+1)
	for seq, frame := range s.Replay() {
		d, _ := ulpack.ParseData(frame)
		fmt.Printf("replay %d: %s\n", seq, d.Payload)
	}
	// Output:
	// element: one
	// element: two
	// resume at 3
	// replay 3: three
}
