package ulpack

import (
	"testing"
)

var payload64 = make([]byte, 64)

func BenchmarkAppendData(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(DataLen + 64)
	buf := make([]byte, 0, 256)
	for b.Loop() {
		buf = append(AppendDataHeader(buf[:0], 1, FlagAckRequest, 42), payload64...)
	}
}

func BenchmarkParse(b *testing.B) {
	frame, _ := Data{Seq: 1, PPID: 42, Payload: payload64}.AppendBinary(nil)
	b.Run("ParseData", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(frame)))
		for b.Loop() {
			if _, err := ParseData(frame); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Parser", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(frame)))
		var p Parser
		for b.Loop() {
			if _, err := p.Parse(frame); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ParseFrame", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(frame)))
		for b.Loop() {
			if _, err := ParseFrame(frame); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// copyQueue is the obvious send buffer, the peer of Sender in
// BenchmarkPushAck: a slice of frames, each in an allocation of its own.
type copyQueue struct {
	frames [][]byte
	acked  uint64
	next   uint64
}

func (q *copyQueue) push(ppid uint32, p []byte) []byte {
	q.next++
	f := append(AppendDataHeader(make([]byte, 0, DataLen+len(p)), q.next, 0, ppid), p...)
	q.frames = append(q.frames, f)
	return f
}

func (q *copyQueue) ack(upTo uint64) {
	n := int(upTo - q.acked)
	q.frames = append(q.frames[:0], q.frames[n:]...)
	q.acked = upTo
}

// BenchmarkPushAck pushes 64-byte messages and acknowledges every 16th, as
// coalesced acknowledgements would.
func BenchmarkPushAck(b *testing.B) {
	b.Run("impl=Sender", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(64)
		s := NewSender(SenderConfig{})
		for b.Loop() {
			seq, _, err := s.Push(42, payload64, false)
			if err != nil {
				b.Fatal(err)
			}
			if seq%16 == 0 {
				s.Ack(seq)
			}
		}
	})
	b.Run("impl=copy-per-message", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(64)
		var q copyQueue
		for b.Loop() {
			q.push(42, payload64)
			if q.next%16 == 0 {
				q.ack(q.next)
			}
		}
	})
}

// BenchmarkReceive receives and processes messages in order and takes an
// acknowledgement every 16th.
func BenchmarkReceive(b *testing.B) {
	b.ReportAllocs()
	r := NewReceiver(ReceiverConfig{}, 0)
	var seq uint64
	for b.Loop() {
		seq++
		ok, err := r.Receive(seq, false)
		if !ok || err != nil {
			b.Fatal(ok, err)
		}
		if err := r.Processed(t0, seq); err != nil {
			b.Fatal(err)
		}
		if seq%16 == 0 {
			r.TakeAck()
		}
	}
}
