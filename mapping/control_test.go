package mapping

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/policy"
)

// TestControlConn: a pool user's reads return data only; the cookies and
// business card the element sends on PPID 11 are kept (the latest cookie),
// OnControl sees each, and other ASAP messages or bytes on PPID 11 never
// reach the data.
func TestControlConn(t *testing.T) {
	pe, pu := Pipe()
	defer pe.Close()
	defer pu.Close()
	card := &asap.BusinessCard{Handle: "PingPongPool", PEs: []asap.PoolElement{{ID: 0x4d71b7e1, Policy: policy.Policy{Type: policy.RoundRobin}, UserTransport: asap.Transport{
		Kind: asap.ParamSCTPTransport, Port: 4711, Use: asap.DataPlusControl, Addrs: []netip.Addr{netip.MustParseAddr("172.31.255.1")}}}}}
	peSide := NewControlConn(pe)
	go func() {
		peSide.WriteControl(&asap.Cookie{Cookie: []byte("state 1")})
		pe.WriteMsg([]byte("reply 1"), 0x29)
		if err := peSide.WriteControl(card); err != nil {
			t.Error(err)
		}
		pe.WriteMsg([]byte{0x0b, 0, 0, 8, 1, 2}, PPIDASAP) // malformed
		b, _ := (&asap.HandleResolution{Handle: "x"}).AppendBinary(nil)
		pe.WriteMsg(b, PPIDASAP) // not a control message
		peSide.WriteControl(&asap.Cookie{Cookie: []byte("state 2")})
		pe.WriteMsg([]byte("reply 2"), 0x29)
	}()
	c := NewControlConn(pu)
	var seen []asap.Message
	c.OnControl = func(m asap.Message) { seen = append(seen, m) }
	buf := make([]byte, 1000)
	for i, want := range []string{"reply 1", "reply 2"} {
		n, ppid, err := c.ReadMsg(buf)
		if err != nil || string(buf[:n]) != want || ppid != 0x29 {
			t.Fatalf("read %d: %q ppid %d %v; want %q", i, buf[:n], ppid, err, want)
		}
		if i == 0 && string(c.Cookie()) != "state 1" {
			t.Errorf("cookie after the first reply: %q", c.Cookie())
		}
	}
	if string(c.Cookie()) != "state 2" {
		t.Errorf("Cookie() = %q, want the latest, %q", c.Cookie(), "state 2")
	}
	if d := cmp.Diff(card, c.BusinessCard(), cmpopts.EquateComparable(netip.Addr{})); d != "" {
		t.Errorf("business card (-want +got):\n%s", d)
	}
	if len(seen) != 3 {
		t.Fatalf("OnControl saw %d messages, want 3: %v", len(seen), seen)
	}
	// The messages OnControl got are its to keep: the reads since, into
	// the same buffer, did not change them.
	for i, want := range map[int]string{0: "state 1", 2: "state 2"} {
		if ck, ok := seen[i].(*asap.Cookie); !ok || string(ck.Cookie) != want {
			t.Errorf("OnControl's message %d after the later reads: %v, want cookie %q", i, seen[i], want)
		}
	}
	if c.CookieEcho() != nil {
		t.Errorf("a pool user got a cookie echo: %q", c.CookieEcho())
	}
}

// TestControlConnCookieEcho: a pool element learns the echoed cookie before
// the first data message of a pool user that failed over to it.
func TestControlConnCookieEcho(t *testing.T) {
	pe, pu := Pipe()
	defer pe.Close()
	defer pu.Close()
	go func() {
		NewControlConn(pu).WriteControl(&asap.CookieEcho{Cookie: []byte("state 9")})
		pu.WriteMsg([]byte("ping 10"), 0x29)
	}()
	c := NewControlConn(pe)
	buf := make([]byte, 100)
	n, _, err := c.ReadMsg(buf)
	if err != nil || string(buf[:n]) != "ping 10" || string(c.CookieEcho()) != "state 9" {
		t.Fatalf("read %q %v, echo %q", buf[:n], err, c.CookieEcho())
	}
}

// TestControlConnWrite: only control messages go on PPID 11; streams pass
// through to the transport, which refuses them over the TCP mapping.
func TestControlConnWrite(t *testing.T) {
	pe, pu := Pipe()
	defer pe.Close()
	defer pu.Close()
	c := NewControlConn(pu)
	if err := c.WriteControl(&asap.HandleResolution{Handle: "x"}); !errors.Is(err, ErrNotControl) {
		t.Errorf("WriteControl of a handle resolution: %v, want ErrNotControl", err)
	}
	if err := c.WriteControl(asap.Registration{}); !errors.Is(err, ErrNotControl) {
		t.Errorf("WriteControl of a handle resolution: %v, want ErrNotControl", err)
	}
	if err := WriteMsgInfo(c, []byte("x"), MsgInfo{Stream: 3}); !errors.Is(err, ErrNoStreams) {
		t.Errorf("stream 3 over the TCP mapping: %v, want ErrNoStreams", err)
	}
}

// TestControlConnTooLongControl: a control message longer than the read's
// buffer is dropped and the read goes on with the data after it; a data
// message too long is reported.
func TestControlConnTooLongControl(t *testing.T) {
	pe, pu := Pipe()
	defer pe.Close()
	defer pu.Close()
	go func() {
		NewControlConn(pe).WriteControl(&asap.Cookie{Cookie: make([]byte, 200)})
		pe.WriteMsg([]byte("data"), 1)
		pe.WriteMsg(make([]byte, 200), 1)
	}()
	c := NewControlConn(pu)
	buf := make([]byte, 50)
	if n, _, err := c.ReadMsg(buf); err != nil || string(buf[:n]) != "data" {
		t.Fatalf("read %q %v, want the data after the long cookie", buf[:n], err)
	}
	if _, _, err := c.ReadMsg(buf); !errors.Is(err, ErrMessageTooLong) {
		t.Fatalf("long data message: %v, want ErrMessageTooLong", err)
	}
}
