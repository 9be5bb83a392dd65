package pingpong

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/internal/tsharktest"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/policy"
)

// rsplibCookieMessage is the ASAP_COOKIE rspserver -pingpong sent after
// its first Pong (captured from rsplib 3.4.4).
var rsplibCookieMessage = mustHex("0b000018000d00143c50502d5444313e0000000000000002")

// controlWire returns the control messages rsp's code puts on PPID 11, as
// read off the wire: the cookies Serve sends after two Pongs, and a pool
// user's cookie echo and business card written through a ControlConn.
func controlWire(t *testing.T) [][]byte {
	t.Helper()
	var wire [][]byte
	pe, pu := mapping.Pipe()
	defer pu.Close()
	go Serve(mapping.NewControlConn(pe))
	go func() {
		for i := range 2 {
			b, _ := Ping{MessageNo: uint64(i + 1), Data: []byte("ping")}.AppendBinary(nil)
			pu.WriteMsg(b, PPID)
		}
	}()
	buf := make([]byte, 1000)
	for len(wire) < 2 {
		n, ppid, err := pu.ReadMsg(buf)
		if err != nil {
			t.Fatal(err)
		}
		if ppid == mapping.PPIDASAP {
			wire = append(wire, bytes.Clone(buf[:n]))
		}
	}

	a, b := mapping.Pipe()
	defer a.Close()
	defer b.Close()
	c := mapping.NewControlConn(a)
	card := &asap.BusinessCard{Handle: "PingPongPool", PEs: []asap.PoolElement{
		{ID: 0x1001, Policy: policy.Policy{Type: policy.RoundRobin}, UserTransport: asap.Transport{Kind: asap.ParamSCTPTransport, Port: 4711, Use: asap.DataPlusControl,
			Addrs: []netip.Addr{netip.MustParseAddr("172.31.255.1")}}},
		{ID: 0x1002, Policy: policy.Policy{Type: policy.RoundRobin}, UserTransport: asap.Transport{Kind: asap.ParamSCTPTransport, Port: 4712, Use: asap.DataPlusControl,
			Addrs: []netip.Addr{netip.MustParseAddr("172.31.255.1"), netip.MustParseAddr("2001:db8::1")}}},
	}}
	go func() {
		c.WriteControl(&asap.CookieEcho{Cookie: wire[1][8:]})
		c.WriteControl(card)
	}()
	for range 2 {
		n, ppid, err := b.ReadMsg(buf)
		if err != nil || ppid != mapping.PPIDASAP {
			t.Fatalf("control message: ppid %d %v", ppid, err)
		}
		wire = append(wire, bytes.Clone(buf[:n]))
	}
	return wire
}

// TestCookieAsRsplibSendsIt: the ASAP_COOKIE rsp's PingPong element sends
// after its first Pong is byte for byte rsplib's.
func TestCookieAsRsplibSendsIt(t *testing.T) {
	if got := controlWire(t)[0]; !bytes.Equal(got, rsplibCookieMessage) {
		t.Fatalf("cookie message %x, rsplib sends %x", got, rsplibCookieMessage)
	}
}

var frameRE = regexp.MustCompile(`(?m)^Frame \d+:`)

// TestWiresharkDecodesControlMessages: tshark decodes the cookies, the
// cookie echo and the business card rsp sends, with no malformed or error
// mark, and shows the cookie's bytes and the card's elements.
func TestWiresharkDecodesControlMessages(t *testing.T) {
	wire := controlWire(t)
	out := tsharktest.Decode(t, int(mapping.PPIDASAP), wire)
	for _, bad := range []string{"Malformed", "Expert Info (Error", "Unknown Parameter"} {
		if strings.Contains(out, bad) {
			t.Fatalf("tshark reports %q:\n%s", bad, out)
		}
	}
	frames := frameRE.Split(out, -1)[1:]
	if len(frames) != len(wire) {
		t.Fatalf("tshark decoded %d frames, want %d:\n%s", len(frames), len(wire), out)
	}
	cookie2 := hex.EncodeToString(wire[1][8:])
	for i, want := range [][]string{
		{"Type: ASAP Cookie (11)", "Cookie: 3c50502d5444313e0000000000000002"},
		{"Type: ASAP Cookie (11)", "Cookie: " + cookie2},
		{"Type: ASAP Cookie Echo (12)", "Cookie: " + cookie2},
		{"Type: ASAP Business Card (13)", "Pool Handle: 50696e67506f6e67506f6f6c", "PE Identifier: 0x00001001", "PE Identifier: 0x00001002",
			"Transport Use: Data plus control (1)", "IP Version 6 Address: 2001:db8::1", "Policy Type: Round Robin (RR)"},
	} {
		for _, w := range want {
			if !strings.Contains(frames[i], w) {
				t.Errorf("frame %d lacks %q:\n%s", i, w, frames[i])
			}
		}
	}
}
