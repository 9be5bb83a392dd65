package registrar

import (
	"testing"

	"github.com/rsp-go/rsp/asap"
)

// FuzzPlainKeepAliveAck checks the acknowledgements' fast path against
// the codec: whatever it accepts, asap.Unmarshal decodes cleanly into the
// same keep-alive acknowledgement, and the plain acknowledgements that
// pool elements send it accepts.
func FuzzPlainKeepAliveAck(f *testing.F) {
	for _, m := range []asap.Message{
		&asap.EndpointKeepAliveAck{Handle: "scale-3", ID: 0x10000},
		&asap.EndpointKeepAliveAck{Handle: "p", ID: 1},
		&asap.EndpointKeepAliveAck{Handle: "abcd", ID: 0xffffffff},
		&asap.EndpointKeepAlive{Server: 7, Handle: "p", ID: 1},
		&asap.Deregistration{Handle: "p", ID: 1},
	} {
		b, err := m.AppendBinary(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, id, ok := plainKeepAliveAck(b)
		m, err := asap.Unmarshal(b)
		ack, isAck := m.(*asap.EndpointKeepAliveAck)
		if !ok {
			if err == nil && isAck {
				// Unmarshal's ack in its plain encoding must take the
				// fast path.
				plain, err := ack.AppendBinary(nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, _, ok := plainKeepAliveAck(plain); !ok {
					t.Fatalf("plain acknowledgement % x not taken", plain)
				}
			}
			return
		}
		if err != nil || !isAck {
			t.Fatalf("fast path took % x as %q/%d; Unmarshal: %T, %v", b, h, id, m, err)
		}
		if ack.Handle != asap.PoolHandle(h) || ack.ID != id {
			t.Fatalf("fast path %q/%d, Unmarshal %q/%d", h, id, ack.Handle, ack.ID)
		}
	})
}

// Acknowledging keep-alives allocates nothing when they come in their
// plain form and name the pool of the last one.
func TestPlainKeepAliveAckAllocs(t *testing.T) {
	b, _ := (&asap.EndpointKeepAliveAck{Handle: "scale-3", ID: 0x10000}).AppendBinary(nil)
	pc := &peerConn{}
	var key peKey
	allocs := testing.AllocsPerRun(100, func() {
		h, id, ok := plainKeepAliveAck(b)
		if !ok {
			t.Fatal("plain acknowledgement not taken")
		}
		key = peKey{pc.ackHandle(h), id}
	})
	if allocs != 0 || key != (peKey{"scale-3", 0x10000}) {
		t.Fatalf("%v allocations per acknowledgement, key %v", allocs, key)
	}
}
