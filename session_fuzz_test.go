package rsp

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/ulpack"
)

// FuzzSessionPeer feeds a session, on either side, whatever a peer may
// send on its channels: session frames, ASAP control messages and other
// tags, in any order and any state. Nothing panics; what the session
// delivers has sequence numbers that never repeat.
func FuzzSessionPeer(f *testing.F) {
	frame := func(fr ulpack.Frame) []byte { b, _ := fr.AppendBinary(nil); return b }
	msg := func(ppid uint32, b []byte) []byte {
		out := binary.BigEndian.AppendUint32(nil, ppid)
		out = binary.BigEndian.AppendUint16(out, uint16(len(b)))
		return append(out, b...)
	}
	cookie, _ := (&asap.Cookie{Cookie: []byte("state")}).AppendBinary(nil)
	card, _ := (&asap.BusinessCard{Handle: "p", PEs: []asap.PoolElement{{ID: 7}}}).AppendBinary(nil)
	var seed []byte
	for _, b := range [][]byte{
		msg(ulpack.PPID, frame(&ulpack.Data{Seq: 1, AckRequest: true, Payload: []byte("a")})),
		msg(ulpack.PPID, frame(&ulpack.Data{Seq: 3, Payload: []byte("c")})),
		msg(ulpack.PPID, frame(&ulpack.Data{Seq: 2, AckNow: true, Payload: []byte("b")})),
		msg(ulpack.PPID, frame(&ulpack.Ack{UpTo: 1})),
		msg(mapping.PPIDASAP, cookie),
		msg(mapping.PPIDASAP, card),
		msg(ulpack.PPID, frame(&ulpack.Ping{Opaque: 9})),
		msg(ulpack.PPID, frame(&ulpack.Close{Code: ulpack.CodeNormal})),
	} {
		seed = append(seed, b...)
	}
	f.Add(seed, true, uint8(3))
	f.Add(seed, false, uint8(0))
	f.Add(msg(ulpack.PPID, frame(&ulpack.GoAway{Code: ulpack.CodeShutdown, Ack: 1})), true, uint8(1))
	f.Add(msg(ulpack.PPID, frame(&ulpack.Data{Seq: 5000, Payload: nil})), false, uint8(2))
	// Handshake frames with the limits, where none belongs.
	f.Add(append(msg(ulpack.PPID, frame(&ulpack.HelloAck{ID: [16]byte{1}, Ack: 1, MaxMessageSize: 1 << 10})),
		msg(ulpack.PPID, frame(&ulpack.Hello{ID: [16]byte{1}, Next: 1, MaxMessageSize: 1 << 20}))...), true, uint8(2))
	f.Fuzz(func(t *testing.T, in []byte, client bool, writes uint8) {
		a, b := mapping.Pipe()
		defer a.Close()
		defer b.Close()
		go func() { // the other end reads whatever the session answers
			buf := make([]byte, 1<<16)
			for {
				if _, _, err := b.ReadMsg(buf); err != nil {
					return
				}
			}
		}()
		s := newSession(SessionConfig{HeartbeatInterval: time.Hour}.withDefaults(), client, "p", [16]byte{1}, a.(*mapping.TCPConn), Element{})
		for range writes % 8 {
			s.queueLocked([]byte("w"), false, 0)
		}
		s.sent = s.snd.Next() - 1
		var p ulpack.Parser
		var ms []mapping.Msg
		for len(in) >= 6 {
			ppid := binary.BigEndian.Uint32(in)
			n := int(binary.BigEndian.Uint16(in[4:]))
			in = in[6:]
			n = min(n, len(in))
			ms = append(ms, mapping.Msg{Buf: append([]byte(nil), in[:n]...), N: n, PPID: ppid})
			in = in[n:]
		}
		for i := range ms {
			if err := s.received(&p, ms[i:i+1], s.gen); err != nil {
				break
			}
		}
		seen := map[uint64]bool{}
		s.mu.Lock()
		for _, m := range s.rq {
			if seen[m.seq] {
				t.Fatalf("message %d delivered twice", m.seq)
			}
			seen[m.seq] = true
		}
		s.collect(nil, time.Now())
		s.mu.Unlock()
	})
}
