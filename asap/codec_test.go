package asap

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

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

var echoPE = PoolElement{
	ID:   0x12345678,
	Life: 30 * time.Second,
	UserTransport: Transport{Kind: ParamTCPTransport, Port: 7,
		Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.5")}},
	Policy: policy.Policy{Type: policy.LeastUsed, Load: 0x80000000},
}

// goldenVectors are messages with their exact bytes, decoded cleanly by
// Wireshark's ASAP dissector (see tshark_test.go).
var goldenVectors = []struct {
	name string
	msg  Message
	hex  string
}{
	{"registration", &Registration{Handle: "EchoPool", PE: echoPE},
		"0100003c 0009000c 4563686f506f6f6c 000a002c 12345678 00000000 00007530 00050010 00070000 00010008 0a000005 0008000c 40000001 80000000"},
	{"registration response rejected", &RegistrationResponse{Reject: true, Handle: "EchoPool", ID: 0x12345678,
		Causes: []Cause{{Code: CauseUnknownPoolHandle, Info: []byte{}}}},
		"03010020 0009000c 4563686f506f6f6c 000e0008 12345678 000c0008 00090004"},
	{"handle resolution odd handle", &HandleResolution{Handle: "CalcAppPool"},
		"05000013 0009000f 43616c63417070506f6f6c 00"},
	{"keep-alive home", &EndpointKeepAlive{Home: true, Server: 0xdeadbeef, Handle: "EchoPool"},
		"07010014 deadbeef 0009000c 4563686f506f6f6c"},
	{"handle resolution with option", &HandleResolution{Handle: "EchoPool", Items: 3},
		"05000018 0009000c 4563686f506f6f6c 803f0008 00000003"},
	{"keep-alive ack", &EndpointKeepAliveAck{Handle: "EchoPool", ID: 0x12345678},
		"08000018 0009000c 4563686f506f6f6c 000e0008 12345678"},
	{"cookie odd length", &Cookie{Cookie: []byte("abcde")},
		"0b00000d 000d0009 6162636465 000000"},
	{"cookie echo", &CookieEcho{Cookie: []byte("abc")},
		"0c00000b 000d0007 616263 00"},
	// rsplib's layout (createBusinessCardMessage): handle, policy, pool
	// elements without an ASAP transport.
	{"business card", &BusinessCard{Handle: "bc", Policy: &policy.Policy{Type: policy.RoundRobin}, PEs: []PoolElement{echoPE}},
		"0d000040 00090006 62630000 00080008 00000001 000a002c 12345678 00000000 00007530 00050010 00070000 00010008 0a000005 0008000c 40000001 80000000"},
}

func TestGoldenVectors(t *testing.T) {
	for _, v := range goldenVectors {
		t.Run(v.name, func(t *testing.T) {
			want := unhex(t, v.hex)
			got, err := v.msg.AppendBinary(nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encoded\n%x\nwant\n%x", got, want)
			}
			m, err := Unmarshal(want)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normalize(m), normalize(v.msg)) {
				t.Fatalf("decoded %+v, want %+v", m, v.msg)
			}
		})
	}
}

// normalize makes empty and nil slices compare equal.
func normalize(m Message) Message {
	switch v := m.(type) {
	case *RegistrationResponse:
		c := *v
		for i := range c.Causes {
			if len(c.Causes[i].Info) == 0 {
				c.Causes[i].Info = nil
			}
		}
		return &c
	}
	return m
}

// TestRsplibLengthConvention decodes lengths that count the last padding, as
// rsplib's encoder writes them.
func TestRsplibLengthConvention(t *testing.T) {
	b := unhex(t, "05000014 0009000f 43616c63417070506f6f6c 00")
	m, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if hr := m.(*HandleResolution); hr.Handle != "CalcAppPool" {
		t.Fatalf("handle %q", hr.Handle)
	}
	// A pool element whose length counts its last parameter's padding.
	cookie := unhex(t, "0b000010 000d0009 6162636465 000000")
	m, err = Unmarshal(cookie)
	if err != nil || string(m.(*Cookie).Cookie) != "abcde" {
		t.Fatalf("cookie %+v, %v", m, err)
	}
}

// TestBusinessCardWithoutElements checks that a card naming no failover
// order is refused, as rsplib's scanBusinessCardMessage refuses it, with
// and without the policy rsplib puts after the handle.
func TestBusinessCardWithoutElements(t *testing.T) {
	for _, h := range []string{
		"0d00000c 00090006 62630000",
		"0d000014 00090006 62630000 00080008 00000001",
	} {
		m, err := Unmarshal(unhex(t, h))
		if !errors.Is(err, ErrInvalidValue) {
			t.Errorf("%s decoded as %+v, %v; want ErrInvalidValue", h, m, err)
		}
	}
}

// TestCookieEchoRsplibLength decodes a cookie echo whose length counts its
// padding, as rsplib's finishMessage writes it.
func TestCookieEchoRsplibLength(t *testing.T) {
	m, err := Unmarshal(unhex(t, "0c00000c 000d0007 616263 00"))
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := m.(*CookieEcho); !ok || string(c.Cookie) != "abc" {
		t.Fatalf("decoded %+v", m)
	}
}

func allMessages() []Message {
	sctp := Transport{Kind: ParamSCTPTransport, Port: 9000, Use: DataPlusControl,
		Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("2001:db8::1")}}
	pe2 := echoPE
	pe2.ID, pe2.Home, pe2.Life = 2, 0xcafe, LifeInfinite
	pe2.UserTransport = sctp
	pe2.ASAPTransport = &Transport{Kind: ParamSCTPTransport, Port: 40000, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}
	pe3 := echoPE
	pe3.ID = 3
	pe3.UserTransport = Transport{Kind: ParamDCCPTransport, Port: 5, ServiceCode: 42, Addrs: []netip.Addr{netip.MustParseAddr("::1")}}
	pe4 := echoPE
	pe4.ID = 4
	pe4.UserTransport = Transport{Kind: ParamUDPLiteTransport, Port: 6, Addrs: []netip.Addr{netip.MustParseAddr("10.1.1.1")}}
	pe5 := echoPE
	pe5.ID = 5
	pe5.UserTransport = Transport{Kind: ParamOpaqueTransport, Opaque: []byte("x")}
	pe5.Policy = policy.Policy{Type: policy.LeastUsedDegradationDPF, Load: 1, LoadDegradation: 2, LoadDPF: 3, Distance: 4}
	rr := policy.Policy{Type: policy.RoundRobin}
	return []Message{
		&Registration{Handle: "a", PE: pe2},
		&Deregistration{Handle: "abcd", ID: 7},
		&RegistrationResponse{Handle: "x", ID: 1},
		&RegistrationResponse{Reject: true, Handle: "x", ID: 1, Causes: []Cause{PolicyCause(&rr), {Code: 0xf008, Info: []byte{1, 2, 3}}}},
		&DeregistrationResponse{Handle: "x", ID: 9},
		&DeregistrationResponse{Handle: "x", ID: 9, Causes: []Cause{{Code: CauseRejectedSecurity}}},
		&HandleResolution{Subscribe: true, Handle: "pool", Items: 0xffffffff},
		&HandleResolutionResponse{Accepted: true, Handle: "pool", Policy: &rr, PEs: []PoolElement{echoPE, pe2, pe3, pe4, pe5}},
		&HandleResolutionResponse{Handle: "pool", Causes: []Cause{{Code: CauseUnknownPoolHandle}}},
		&EndpointKeepAlive{Server: 1, Handle: "p", ID: 5},
		&EndpointKeepAliveAck{Handle: "p", ID: 5},
		&EndpointUnreachable{Handle: "p", ID: 6},
		&ServerAnnounce{Server: 77},
		&ServerAnnounce{Server: 77, Transports: []Transport{sctp, {Kind: ParamTCPTransport, Port: 3863, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.9")}}}},
		&Cookie{Cookie: []byte{1, 2, 3, 4, 5, 6}},
		&CookieEcho{Cookie: []byte{9}},
		&BusinessCard{Handle: "bc", PEs: []PoolElement{echoPE}},
		&BusinessCard{Handle: "bc", Policy: &rr, PEs: []PoolElement{echoPE, pe2}},
		&Error{Causes: []Cause{{Code: CauseUnrecognizedMessage, Info: []byte{0x7f, 0, 0, 4}}}},
	}
}

func TestRoundTripEveryMessage(t *testing.T) {
	for _, m := range allMessages() {
		t.Run(m.Type().String(), func(t *testing.T) {
			b, err := m.AppendBinary(nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(b)%4 != 0 {
				t.Fatalf("encoded length %d is not padded to 4", len(b))
			}
			got, err := Unmarshal(b)
			if err != nil {
				t.Fatalf("%v\n%x", err, b)
			}
			b2, err := got.AppendBinary(nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, b2) {
				t.Fatalf("re-encoded\n%x\nwant\n%x", b2, b)
			}
			if !equalMessages(m, got) {
				t.Fatalf("decoded %+v, want %+v", got, m)
			}
		})
	}
}

// equalMessages compares through the wire-relevant values.
func equalMessages(a, b Message) bool {
	x, _ := a.AppendBinary(nil)
	y, _ := b.AppendBinary(nil)
	return a.Type() == b.Type() && bytes.Equal(x, y)
}

func TestUnknownParameterActions(t *testing.T) {
	base := unhex(t, "05000010 0009000c 4563686f506f6f6c")
	withParam := func(typ uint16) []byte {
		b := append([]byte(nil), base...)
		b = append(b, byte(typ>>8), byte(typ), 0, 6, 0xaa, 0xbb, 0, 0)
		b[3] = byte(len(b) - 2)
		return b
	}
	tests := []struct {
		typ     uint16
		decoded bool
		report  bool
	}{
		{0x0033, false, false}, // 00: stop, discard
		{0x4033, false, true},  // 01: stop, discard, report
		{0x8033, true, false},  // 10: skip
		{0xc033, true, true},   // 11: skip, report
	}
	for _, tt := range tests {
		m, err := Unmarshal(withParam(tt.typ))
		if (m != nil) != tt.decoded {
			t.Errorf("type %#04x: decoded %v, want %v (err %v)", tt.typ, m != nil, tt.decoded, err)
		}
		var up *UnrecognizedParamError
		reported := errors.As(err, &up) && up.Report
		if reported != tt.report {
			t.Errorf("type %#04x: report %v, want %v (err %v)", tt.typ, reported, tt.report, err)
		}
		if reported && !bytes.Equal(up.Params[0], []byte{byte(tt.typ >> 8), byte(tt.typ), 0, 6, 0xaa, 0xbb}) {
			t.Errorf("type %#04x: reported parameter %x", tt.typ, up.Params[0])
		}
	}
}

func TestUnknownMessageActions(t *testing.T) {
	for typ, report := range map[byte]bool{0x3f: false, 0x7f: true, 0x0f: false, 0x4f: true} {
		_, err := Unmarshal([]byte{typ, 0, 0, 4})
		var um *UnrecognizedMessageError
		if !errors.As(err, &um) || um.Report != report {
			t.Errorf("type %#02x: %v, want unrecognized message with report %v", typ, err, report)
		}
	}
}

func TestInvalidInput(t *testing.T) {
	for name, h := range map[string]string{
		"empty":                     "",
		"short header":              "050000",
		"length below header":       "05000003",
		"length beyond data":        "05000020 0009000c 4563686f",
		"no handle":                 "05000004",
		"empty handle":              "05000008 00090004",
		"param length below 4":      "0500000c 00090002 41414141",
		"IPv4 of wrong size":        "0100002c 00090005 41000000 000a0020 00000001 00000000 00007530 0005000c 00070000 00010006 0a00",
		"transport without address": "01000028 00090005 41000000 000a001c 00000001 00000000 00007530 00050008 00070000 00080008 00000001",
		"unknown policy":            "01000034 00090005 41000000 000a0028 00000001 00000000 00007530 00050010 00070000 00010008 0a000005 00080008 00000009",
		"cause length overflow":     "0e00000c 000c0008 00090010",
		"PE id of wrong size":       "0800000c 00090005 41000000 000e0006 1234",
		"bytes after the message":   "05000008 00090005 41000000 00000000",
	} {
		if m, err := Unmarshal(unhex(t, h)); err == nil {
			t.Errorf("%s: decoded %+v, want an error", name, m)
		}
	}
}

func TestAddressesMappedAndScoped(t *testing.T) {
	pe := echoPE
	pe.UserTransport.Addrs = []netip.Addr{netip.MustParseAddr("::ffff:10.0.0.5")}
	b, err := AppendPoolElement(nil, &pe)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParsePoolElement(b)
	if err != nil {
		t.Fatal(err)
	}
	if a := got.UserTransport.Addrs[0]; !a.Is4() || a != netip.MustParseAddr("10.0.0.5") {
		t.Fatalf("IPv4-mapped address came back as %v, want IPv4 10.0.0.5", a)
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	bad := []Message{
		&HandleResolution{},
		&Registration{Handle: "x", PE: PoolElement{ID: 1, Policy: policy.Policy{Type: policy.RoundRobin}}},
		&Registration{Handle: "x", PE: PoolElement{ID: 1, UserTransport: echoPE.UserTransport}},
		&Cookie{},
		&CookieEcho{},
		&BusinessCard{Handle: "bc"},
		&BusinessCard{Handle: "bc", Policy: &policy.Policy{Type: policy.RoundRobin}},
		&ServerAnnounce{Transports: []Transport{{Kind: ParamUDPTransport, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}}},
	}
	for _, m := range bad {
		if b, err := m.AppendBinary(nil); err == nil {
			t.Errorf("%T %+v encoded as %x, want an error", m, m, b)
		}
	}
}

func TestMessageLength(t *testing.T) {
	n, err := MessageLength([]byte{5, 0, 0, 19})
	if err != nil || n != 20 {
		t.Fatalf("MessageLength = %d, %v; want 20", n, err)
	}
	if _, err := MessageLength([]byte{5, 0, 0, 3}); err == nil {
		t.Fatal("length 3 accepted")
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, v := range goldenVectors {
		f.Add(unhex(f, v.hex))
	}
	for _, m := range allMessages() {
		b, _ := m.AppendBinary(nil)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Unmarshal(b)
		if m == nil {
			return
		}
		_ = err
		// Whatever decodes re-encodes, and decodes again to the same.
		b2, err := m.AppendBinary(nil)
		if err != nil {
			return // decoded values the encoder refuses (such as an odd handle length limit)
		}
		m2, err := Unmarshal(b2)
		if err != nil {
			t.Fatalf("re-encoded %x does not decode: %v", b2, err)
		}
		b3, err := m2.AppendBinary(nil)
		if err != nil || !bytes.Equal(b2, b3) {
			t.Fatalf("unstable encoding: %x vs %x (%v)", b2, b3, err)
		}
	})
}

// TestNestedUnknownParameterReported checks that an unknown parameter with
// the skip-and-report bits inside a pool element, inside its user
// transport, or inside a handle resolution response's element, is skipped
// and reported with the message, which still decodes.
func TestNestedUnknownParameterReported(t *testing.T) {
	unknown := []byte{0xc0, 0x77, 0, 6, 0xaa, 0xbb, 0, 0}
	// Registration: PH "EchoPool", PE 0x12345678, TCP 10.0.0.5:7, LU.
	pe := func(inTransport, inElement bool) []byte {
		transport := unhex(t, "00050010 00070000 00010008 0a000005")
		if inTransport {
			transport = append(transport, unknown...)
			transport[3] += 8
		}
		body := append(unhex(t, "12345678 00000000 00007530"), transport...)
		body = append(body, unhex(t, "0008000c 40000001 80000000")...)
		if inElement {
			body = append(body, unknown...)
		}
		return append([]byte{0x00, 0x0a, byte((4 + len(body)) >> 8), byte(4 + len(body))}, body...)
	}
	message := func(typ byte, params ...[]byte) []byte {
		b := []byte{typ, 0, 0, 0}
		for _, p := range params {
			b = append(b, p...)
		}
		b[2], b[3] = byte(len(b)>>8), byte(len(b))
		return b
	}
	handle := unhex(t, "0009000c 4563686f506f6f6c")
	for name, b := range map[string][]byte{
		"in a registration's element":          message(0x01, handle, pe(false, true)),
		"in a registration's user transport":   message(0x01, handle, pe(true, false)),
		"in a resolution response's element":   message(0x06, handle, unhex(t, "00080008 00000001"), pe(false, true)),
		"in a resolution response's transport": message(0x06, handle, unhex(t, "00080008 00000001"), pe(true, false)),
	} {
		m, err := Unmarshal(b)
		var up *UnrecognizedParamError
		if m == nil || !errors.As(err, &up) || !up.Skipped || !up.Report {
			t.Errorf("%s: %T, %v; want the message and a report of the skipped parameter", name, m, err)
			continue
		}
		if len(up.Params) != 1 || !bytes.Equal(up.Params[0], unknown[:6]) {
			t.Errorf("%s: reported %x, want %x", name, up.Params, unknown[:6])
		}
		var id PEID
		switch m := m.(type) {
		case *Registration:
			id = m.PE.ID
		case *HandleResolutionResponse:
			if len(m.PEs) == 1 {
				id = m.PEs[0].ID
			}
		}
		if id != 0x12345678 {
			t.Errorf("%s: decoded %+v, want pool element 12345678", name, m)
		}
	}
}

// The registration life is a signed 32-bit value: -1 is infinite, a value
// below it decodes as the negative life it is (for a registrar to refuse),
// and every life encodes as it decoded.
func TestRegistrationLifeWireValues(t *testing.T) {
	for _, tt := range []struct {
		wire uint32
		life time.Duration
	}{
		{0xffffffff, LifeInfinite},
		{0xfffffffe, -2 * time.Millisecond},
		{0x80000000, -0x80000000 * time.Millisecond},
		{0, 0},
		{30000, 30 * time.Second},
	} {
		pe := PoolElement{ID: 1, Life: tt.life, Policy: policy.Policy{Type: policy.RoundRobin}, UserTransport: Transport{Kind: ParamTCPTransport, Port: 7, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}}
		b, err := Registration{Handle: "p", PE: pe}.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		// The life follows the 8-byte handle parameter, the PE
		// parameter's header, identifier and home.
		if got := binary.BigEndian.Uint32(b[4+8+4+8:]); got != tt.wire {
			t.Errorf("life %v encodes as %#x, want %#x", tt.life, got, tt.wire)
		}
		m, err := Unmarshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.(*Registration).PE.Life; got != tt.life {
			t.Errorf("wire life %#x decodes as %v, want %v", tt.wire, got, tt.life)
		}
	}
}
