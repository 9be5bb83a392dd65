package peer

import (
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/enrp"
)

// FuzzReceive feeds a registrar core, which knows a peer and holds elements
// of its own and of that peer, arbitrary messages split from the input,
// with ticks between them: it never panics, and every answer encodes.
func FuzzReceive(f *testing.F) {
	seeds := []enrp.Message{
		c2(2, 0),
		&enrp.Presence{Header: enrp.Header{Sender: 2, Receiver: 1}, ReplyRequired: true, Checksum: 0x1234,
			Info: &asap.ServerInformation{Server: 2, Transport: asap.Transport{Kind: asap.ParamSCTPTransport, Port: 9901, Addrs: testPE(1, 1).UserTransport.Addrs}}},
		&enrp.HandleTableRequest{Header: enrp.Header{Sender: 2}, OwnChildrenOnly: true},
		&enrp.HandleTableResponse{Header: enrp.Header{Sender: 2}, More: true, Pools: []enrp.PoolEntry{{Handle: "echo", PEs: []asap.PoolElement{testPE(7, 2), testPE(8, 2)}}}},
		&enrp.HandleUpdate{Header: enrp.Header{Sender: 2}, Action: enrp.AddPE, Handle: "echo", PE: testPE(9, 2)},
		&enrp.HandleUpdate{Header: enrp.Header{Sender: 2}, Action: enrp.DelPE, Handle: "echo", PE: testPE(7, 2)},
		&enrp.ListRequest{Header: enrp.Header{Sender: 3}},
		&enrp.ListResponse{Header: enrp.Header{Sender: 2}, Servers: []asap.ServerInformation{{Server: 4, Transport: asap.Transport{Kind: asap.ParamSCTPTransport, Port: 1, Addrs: testPE(1, 1).UserTransport.Addrs}}}},
		&enrp.InitTakeover{Header: enrp.Header{Sender: 2}, Target: 1},
		&enrp.InitTakeover{Header: enrp.Header{Sender: 3}, Target: 2},
		&enrp.InitTakeoverAck{Header: enrp.Header{Sender: 3}, Target: 2},
		&enrp.TakeoverServer{Header: enrp.Header{Sender: 3}, Target: 2},
		&enrp.Error{Header: enrp.Header{Sender: 2}, Causes: []asap.Cause{{Code: asap.CauseInvalidValues}}},
	}
	var all []byte
	for _, m := range seeds {
		b, err := m.AppendBinary(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		all = append(all, b...)
	}
	f.Add(all)
	f.Fuzz(func(t *testing.T, data []byte) {
		w := newWorld(t)
		n := w.add(fast(1))
		w.register(n, "echo", 1)
		n.hs.Register("echo", testPE(7, 2), w.now)
		n.core.Handle(w.now, c2(2, 0))
		n.core.TakeOut()
		now := w.now
		for len(data) >= 4 {
			// Each message is as long as its header says, else the rest.
			l := int(data[2])<<8 | int(data[3])
			l = (l + 3) &^ 3
			if l < 4 || l > len(data) {
				l = len(data)
			}
			n.core.Receive(now, data[:l])
			data = data[l:]
			now = now.Add(50 * time.Millisecond)
			n.core.Tick(now)
			for _, o := range n.core.TakeOut() {
				if _, err := o.Msg.AppendBinary(nil); err != nil {
					t.Fatalf("answer %v does not encode: %v", o.Msg.Type(), err)
				}
			}
			n.core.Deadline()
		}
	})
}
