package enrp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/policy"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

var (
	serverInfo = asap.ServerInformation{Server: 0xcafebabe, Transport: asap.Transport{
		Kind: asap.ParamSCTPTransport, Port: 9901, Addrs: []netip.Addr{addr("10.0.0.1"), addr("10.0.0.2")}}}
	updatePE = asap.PoolElement{
		ID: 0x12345678, Home: 0xcafebabe, Life: 30 * time.Second,
		UserTransport: asap.Transport{Kind: asap.ParamSCTPTransport, Port: 7, Use: asap.DataPlusControl, Addrs: []netip.Addr{addr("10.0.0.5")}},
		Policy:        policy.Policy{Type: policy.RoundRobin},
		ASAPTransport: &asap.Transport{Kind: asap.ParamSCTPTransport, Port: 40000, Addrs: []netip.Addr{addr("10.0.0.5")}},
	}
)

var golden = []struct {
	name string
	msg  Message
	hex  string
}{
	{"presence", &Presence{Header: Header{Sender: 0xcafebabe}, ReplyRequired: true, Checksum: 0xabcd, Info: &serverInfo},
		"01010034 cafebabe 00000000 000f0006 abcd0000 000b0020 cafebabe 00040018 26ad0000 00010008 0a000001 00010008 0a000002"},
	{"handle update", &HandleUpdate{Header: Header{Sender: 0xcafebabe}, Action: AddPE, Handle: "EchoPool", PE: updatePE},
		"04000054 cafebabe 00000000 00000000 0009000c 4563686f506f6f6c 000a0038 12345678 cafebabe 00007530 00040010 00070001 00010008 0a000005 00080008 00000001 00040010 9c400000 00010008 0a000005"},
}

func TestGolden(t *testing.T) {
	for _, g := range golden {
		want := unhex(t, g.hex)
		got, err := g.msg.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: encoded\n%x\nwant\n%x", g.name, got, want)
		}
		m, err := Unmarshal(want)
		if err != nil {
			t.Fatalf("%s: %v", g.name, err)
		}
		again, _ := m.AppendBinary(nil)
		if !bytes.Equal(again, want) {
			t.Fatalf("%s: decoded and re-encoded\n%x", g.name, again)
		}
	}
}

func allMessages() []Message {
	h := Header{Sender: 1, Receiver: 2}
	return []Message{
		&Presence{Header: h, Checksum: 0xffff},
		&Presence{Header: h, ReplyRequired: true, Checksum: 1, Info: &serverInfo},
		&HandleTableRequest{Header: h, OwnChildrenOnly: true},
		&HandleTableRequest{Header: h},
		&HandleTableResponse{Header: h, More: true, Pools: []PoolEntry{{Handle: "a", PEs: []asap.PoolElement{updatePE}}, {Handle: "bbbbb", PEs: []asap.PoolElement{updatePE, updatePE}}}},
		&HandleTableResponse{Header: h, Reject: true},
		&HandleUpdate{Header: h, TakeoverSuggested: true, Action: DelPE, Handle: "x", PE: updatePE},
		&ListRequest{Header: h},
		&ListResponse{Header: h, Servers: []asap.ServerInformation{serverInfo, serverInfo}},
		&ListResponse{Header: h, Reject: true},
		&InitTakeover{Header: h, Target: 9},
		&InitTakeoverAck{Header: h, Target: 9},
		&TakeoverServer{Header: h, Target: 9},
		&Error{Header: h, Causes: []asap.Cause{{Code: asap.CauseUnrecognizedMessage, Info: []byte{0x33, 0, 0, 12}}}},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, m := range allMessages() {
		b, err := m.AppendBinary(nil)
		if err != nil {
			t.Fatalf("%v: %v", m.Type(), err)
		}
		got, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("%v: %v\n%x", m.Type(), err, b)
		}
		if got.Type() != m.Type() {
			t.Fatalf("type %v, want %v", got.Type(), m.Type())
		}
		b2, _ := got.AppendBinary(nil)
		if !bytes.Equal(b, b2) {
			t.Fatalf("%v: re-encoded\n%x\nwant\n%x", m.Type(), b2, b)
		}
	}
}

func TestFlags(t *testing.T) {
	h := Header{Sender: 1}
	for _, c := range []struct {
		m     Message
		flags byte
	}{
		{&Presence{Header: h, ReplyRequired: true}, 0x01},
		{&HandleTableRequest{Header: h, OwnChildrenOnly: true}, 0x01},
		{&HandleTableResponse{Header: h, Reject: true}, 0x01},
		{&HandleTableResponse{Header: h, More: true}, 0x02},
		{&HandleUpdate{Header: h, TakeoverSuggested: true, Handle: "x", PE: updatePE}, 0x01},
		{&ListResponse{Header: h, Reject: true}, 0x01},
	} {
		b, err := c.m.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		if b[1] != c.flags {
			t.Errorf("%v: flags %#02x, want %#02x", c.m.Type(), b[1], c.flags)
		}
	}
}

func TestInvalid(t *testing.T) {
	for name, h := range map[string]string{
		"short":                      "0100000c cafebabe",
		"length below fixed part":    "0100000b cafebabe 00000000",
		"presence without checksum":  "0100000c cafebabe 00000000",
		"request with body":          "02000010 00000001 00000002 00000000",
		"takeover without target":    "0700000c 00000001 00000002",
		"update with bad action":     "04000010 00000001 00000002 00020000",
		"element before handle":      "03000018 00000001 00000002 000e0008 00000001",
		"table response bad element": "03000020 00000001 00000002 00090005 41000000 000a0008 00000001",
	} {
		if m, err := Unmarshal(unhex(t, h)); err == nil {
			t.Errorf("%s: decoded %+v", name, m)
		}
	}
	_, err := Unmarshal(unhex(t, "4b00000c 00000001 00000002"))
	var um *UnrecognizedMessageError
	if !errors.As(err, &um) || !um.Report {
		t.Fatalf("unknown type 0x4b: %v", err)
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, g := range golden {
		f.Add(unhex(f, g.hex))
	}
	for _, m := range allMessages() {
		b, _ := m.AppendBinary(nil)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, _ := Unmarshal(b)
		if m == nil {
			return
		}
		b2, err := m.AppendBinary(nil)
		if err != nil {
			return
		}
		m2, err := Unmarshal(b2)
		if err != nil {
			t.Fatalf("re-encoded %x does not decode: %v", b2, err)
		}
		b3, _ := m2.AppendBinary(nil)
		if !bytes.Equal(b2, b3) {
			t.Fatalf("unstable: %x vs %x", b2, b3)
		}
	})
}
