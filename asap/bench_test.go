package asap

import (
	"net/netip"
	"testing"
	"time"

	"github.com/rsp-go/rsp/policy"
)

func benchPEs() []PoolElement {
	pes := make([]PoolElement, 3)
	for i := range pes {
		pes[i] = PoolElement{
			ID: PEID(i + 1), Home: 0xcafe, Life: 90 * time.Second,
			UserTransport: Transport{Kind: ParamTCPTransport, Port: 8000, Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})}},
			Policy:        policy.Policy{Type: policy.LeastUsed, Load: uint32(i)},
		}
	}
	return pes
}

var rr = policy.Policy{Type: policy.RoundRobin}

var hotMessages = []struct {
	name string
	msg  interface {
		Message
		UnmarshalBinary([]byte) error
	}
	fresh func() interface{ UnmarshalBinary([]byte) error }
}{
	{"HandleResolution", &HandleResolution{Handle: "EchoPool", Items: 3}, func() interface{ UnmarshalBinary([]byte) error } { return new(HandleResolution) }},
	{"HandleResolutionResponse3", &HandleResolutionResponse{Handle: "EchoPool", Policy: &rr, PEs: benchPEs()}, func() interface{ UnmarshalBinary([]byte) error } { return new(HandleResolutionResponse) }},
	{"EndpointKeepAlive", &EndpointKeepAlive{Server: 7, Handle: "EchoPool", ID: 9}, func() interface{ UnmarshalBinary([]byte) error } { return new(EndpointKeepAlive) }},
	{"EndpointKeepAliveAck", &EndpointKeepAliveAck{Handle: "EchoPool", ID: 9}, func() interface{ UnmarshalBinary([]byte) error } { return new(EndpointKeepAliveAck) }},
	{"Registration", &Registration{Handle: "EchoPool", PE: benchPEs()[0]}, func() interface{ UnmarshalBinary([]byte) error } { return new(Registration) }},
}

func BenchmarkEncode(b *testing.B) {
	for _, h := range hotMessages {
		b.Run(h.name, func(b *testing.B) {
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = h.msg.AppendBinary(buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, h := range hotMessages {
		b.Run(h.name, func(b *testing.B) {
			wire, err := h.msg.AppendBinary(nil)
			if err != nil {
				b.Fatal(err)
			}
			m := h.fresh()
			b.SetBytes(int64(len(wire)))
			b.ReportAllocs()
			for b.Loop() {
				if err := m.UnmarshalBinary(wire); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
