package registrar

import (
	"bytes"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/policy"
)

func TestUnknownMessageTypeActions(t *testing.T) {
	_, addr := startRegistrar(t, noKeepAlives())
	c := dialClient(t, addr)
	tests := []struct {
		typ    byte
		report bool
	}{
		// 00: discard silently. 0x00 is reserved, 0x0f the first unassigned.
		{0x00, false}, {0x0f, false}, {0x2a, false}, {0x3f, false},
		// 01: discard and report "unrecognized message".
		{0x40, true}, {0x55, true}, {0x7f, true},
		// 10 and 11 are reserved: discarded silently.
		{0x80, false}, {0xbf, false}, {0xc0, false}, {0xff, false},
	}
	for _, tt := range tests {
		for _, body := range [][]byte{nil, []byte("abcd"), []byte("odd length")} {
			msg := []byte{tt.typ, 0xa5, 0, 0}
			msg = append(msg, body...)
			binary.BigEndian.PutUint16(msg[2:], uint16(len(msg)))
			c.sendRaw(msg)
			got := c.sync()
			if !tt.report {
				if len(got) != 0 {
					t.Fatalf("type %#02x: got %T %+v, want no answer", tt.typ, got[0], got[0])
				}
				continue
			}
			if len(got) != 1 {
				t.Fatalf("type %#02x: got %d messages, want one ASAP_ERROR", tt.typ, len(got))
			}
			e, ok := got[0].(*asap.Error)
			if !ok || len(e.Causes) != 1 || e.Causes[0].Code != asap.CauseUnrecognizedMessage || !bytes.Equal(e.Causes[0].Info, msg) {
				t.Fatalf("type %#02x: got %T %+v, want an ASAP_ERROR with cause unrecognized message holding %x", tt.typ, got[0], got[0], msg)
			}
		}
	}
	if resp := c.register("after", loopbackPE(1, 7, rr)); resp.Reject {
		t.Fatalf("registration after unknown messages refused: %+v", resp)
	}
}

// TestAnswersToLargestMessages checks the answers to bad messages of the
// largest size: each carries as much of the offending message or
// parameters as an ASAP message can hold.
func TestAnswersToLargestMessages(t *testing.T) {
	r, addr := startRegistrar(t, noKeepAlives())
	c := dialClient(t, addr)
	c.register("known", loopbackPE(1, 7, rr))

	// An unknown message type to report.
	msg := make([]byte, 0xffff)
	msg[0] = 0x44
	binary.BigEndian.PutUint16(msg[2:], 0xffff)
	for i := 4; i < len(msg); i++ {
		msg[i] = byte(i)
	}
	c.sendRaw(msg)
	got := c.sync()
	if len(got) != 1 {
		t.Fatalf("largest unknown message: got %d answers, want one ASAP_ERROR", len(got))
	}
	if e, ok := got[0].(*asap.Error); !ok || len(e.Causes) != 1 || e.Causes[0].Code != asap.CauseUnrecognizedMessage ||
		len(e.Causes[0].Info) < 0xff00 || !bytes.HasPrefix(msg, e.Causes[0].Info) {
		t.Fatalf("largest unknown message: got %T %+v, want an ASAP_ERROR with cause unrecognized message holding the message's start", got[0], got[0])
	}

	// One large unknown parameter to report, which fits whole.
	big := param(0x4001, bytes.Repeat([]byte{0xab}, 65000))
	c.sendRaw(appendParam(encode(t, &asap.HandleResolution{Handle: "known"}), 0x4001, big[4:]))
	got = c.sync()
	if len(got) != 1 {
		t.Fatalf("large unknown parameter: got %d answers, want one ASAP_ERROR", len(got))
	}
	if e, ok := got[0].(*asap.Error); !ok || len(e.Causes) != 1 || e.Causes[0].Code != asap.CauseUnrecognizedParameter || !bytes.Equal(e.Causes[0].Info, big) {
		t.Fatalf("large unknown parameter: got %T, want an ASAP_ERROR with cause unrecognized parameter holding it", got[0])
	}

	// More unknown parameters to report than an ASAP_ERROR can hold: as
	// many causes as fit, then the answer to the message itself.
	msg = encode(t, &asap.HandleResolution{Handle: "known"})
	p := param(0xc001, nil)
	for len(msg)+len(p) <= 0xffff {
		msg = appendParam(msg, 0xc001, nil)
	}
	c.sendRaw(msg)
	got = c.sync()
	if len(got) != 2 {
		t.Fatalf("many unknown parameters: got %d answers, want an ASAP_ERROR and the response", len(got))
	}
	e, ok := got[0].(*asap.Error)
	if !ok || len(e.Causes) < 8000 {
		t.Fatalf("many unknown parameters: got %T, want an ASAP_ERROR with as many causes as fit", got[0])
	}
	for _, cause := range e.Causes {
		if cause.Code != asap.CauseUnrecognizedParameter || !bytes.Equal(cause.Info, p) {
			t.Fatalf("many unknown parameters: cause %v %x, want unrecognized parameter %x", cause.Code, cause.Info, p)
		}
	}
	if hr, ok := got[1].(*asap.HandleResolutionResponse); !ok || len(hr.PEs) != 1 {
		t.Fatalf("many unknown parameters: got %T %+v, want the resolution's answer", got[1], got[1])
	}

	// A registration of the largest size with invalid values (no policy):
	// refused, with as much of it as fits.
	var addrs [][]byte
	for i := 0; 4+8+16+8+8*(len(addrs)+1) <= 0xffff; i++ {
		addrs = append(addrs, param(asap.ParamIPv4Address, []byte{127, 0, byte(i >> 8), byte(i)}))
	}
	msg = registration("big", peParam(77, 30000, transportParam(asap.ParamSCTPTransport, 0, addrs...)))
	c.sendRaw(msg)
	got = c.sync()
	if len(got) != 1 {
		t.Fatalf("largest invalid registration: got %d answers, want one registration response", len(got))
	}
	if resp, ok := got[0].(*asap.RegistrationResponse); !ok || !resp.Reject || resp.ID != 77 || len(resp.Causes) != 1 ||
		resp.Causes[0].Code != asap.CauseInvalidValues || len(resp.Causes[0].Info) < 0xff00 || !bytes.HasPrefix(msg, resp.Causes[0].Info) {
		t.Fatalf("largest invalid registration: got %T, want R=1 for element 77 with cause invalid values", got[0])
	}
	if _, ok := r.Pool("big"); ok {
		t.Fatal("invalid registration taken")
	}
}

func TestUnrecognizedParameterActions(t *testing.T) {
	r, addr := startRegistrar(t, noKeepAlives())
	c := dialClient(t, addr)
	c.register("known", loopbackPE(1000, 7, rr))

	id := asap.PEID(1)
	for _, action := range []asap.ParamType{0x0000, 0x4000, 0x8000, 0xc000} {
		processed := action&0x8000 != 0 // 10 and 11 skip the parameter
		reported := action&0x4000 != 0  // 01 and 11 report it
		for _, n := range []int{0, 1, 5, 8} {
			typ := action | 0x1234
			p := param(typ, bytes.Repeat([]byte{0xee}, n))
			for _, carrier := range []string{"registration", "registration, parameter before the element", "handle resolution"} {
				name := fmt.Sprintf("%s with parameter %#04x of %d bytes", carrier, uint16(typ), n)
				var msg []byte
				switch carrier {
				case "registration":
					msg = appendParam(encode(t, &asap.Registration{Handle: "up", PE: loopbackPE(id, 7, rr)}), typ, p[4:])
				case "registration, parameter before the element":
					msg = insertAfterHandle(encode(t, &asap.Registration{Handle: "up", PE: loopbackPE(id, 7, rr)}), p)
				default:
					msg = appendParam(encode(t, &asap.HandleResolution{Handle: "known"}), typ, p[4:])
				}
				c.sendRaw(msg)
				got := c.sync()
				if reported {
					if len(got) == 0 {
						t.Fatalf("%s: no answer, want an ASAP_ERROR", name)
					}
					e, ok := got[0].(*asap.Error)
					if !ok || len(e.Causes) != 1 || e.Causes[0].Code != asap.CauseUnrecognizedParameter || !bytes.Equal(e.Causes[0].Info, p) {
						t.Fatalf("%s: got %T %+v, want an ASAP_ERROR with cause unrecognized parameter holding %x", name, got[0], got[0], p)
					}
					got = got[1:]
				}
				if !processed {
					if len(got) != 0 {
						t.Fatalf("%s: got %T %+v, want the message discarded", name, got[0], got[0])
					}
					if _, ok := element(r, "up", id); ok {
						t.Fatalf("%s: the discarded registration was taken", name)
					}
					id++
					continue
				}
				if len(got) != 1 {
					t.Fatalf("%s: got %d answers, want the message's own", name, len(got))
				}
				switch m := got[0].(type) {
				case *asap.RegistrationResponse:
					if m.Reject || m.ID != id {
						t.Fatalf("%s: %+v, want acceptance of element %d", name, m, id)
					}
					if _, ok := element(r, "up", id); !ok {
						t.Fatalf("%s: accepted element %d not in the pool", name, id)
					}
				case *asap.HandleResolutionResponse:
					if len(m.PEs) != 1 || m.PEs[0].ID != 1000 {
						t.Fatalf("%s: %+v, want element 1000", name, m)
					}
				default:
					t.Fatalf("%s: got %T %+v", name, m, m)
				}
				id++
			}
		}
	}

	// Every skipped parameter to report has its own cause, in order.
	p1, p2 := param(0xc001, []byte("one")), param(0xcfff, []byte("second"))
	msg := encode(t, &asap.HandleResolution{Handle: "known"})
	msg = appendParam(msg, 0xc001, p1[4:])
	msg = appendParam(msg, 0x8abc, []byte("silent"))
	msg = appendParam(msg, 0xcfff, p2[4:])
	c.sendRaw(msg)
	got := c.sync()
	if len(got) != 2 {
		t.Fatalf("two parameters to report: got %d messages, want an ASAP_ERROR and the response", len(got))
	}
	e, ok := got[0].(*asap.Error)
	if !ok || len(e.Causes) != 2 || e.Causes[0].Code != asap.CauseUnrecognizedParameter || !bytes.Equal(e.Causes[0].Info, p1) ||
		e.Causes[1].Code != asap.CauseUnrecognizedParameter || !bytes.Equal(e.Causes[1].Info, p2) {
		t.Fatalf("two parameters to report: got %T %+v, want two unrecognized parameter causes", got[0], got[0])
	}

	// An unknown parameter inside the pool element stops the message too.
	peParam, err := asap.AppendPoolElement(nil, &asap.PoolElement{ID: 9999, Life: time.Minute,
		UserTransport: loopbackPE(1, 7, rr).UserTransport, Policy: rr})
	if err != nil {
		t.Fatal(err)
	}
	inner := param(0x4777, []byte{1, 2, 3, 4})
	peParam = append(peParam, inner...)
	binary.BigEndian.PutUint16(peParam[2:], uint16(len(peParam)))
	c.sendRaw(registration("up", peParam))
	got = c.sync()
	if len(got) != 1 {
		t.Fatalf("nested unknown parameter: got %d messages, want one ASAP_ERROR", len(got))
	}
	if e, ok := got[0].(*asap.Error); !ok || len(e.Causes) != 1 || e.Causes[0].Code != asap.CauseUnrecognizedParameter || !bytes.Equal(e.Causes[0].Info, inner) {
		t.Fatalf("nested unknown parameter: got %T %+v, want cause unrecognized parameter holding %x", got[0], got[0], inner)
	}
	if _, ok := element(r, "up", 9999); ok {
		t.Fatal("registration with a nested unknown parameter (action 01) was taken")
	}
}

// insertAfterHandle inserts parameter p after the pool handle that starts
// message b's parameters.
func insertAfterHandle(b, p []byte) []byte {
	hl := int(binary.BigEndian.Uint16(b[6:]))
	at := 4 + hl + (4-hl%4)%4
	out := append(slices.Clip(b[:at]), p...)
	out = append(out, make([]byte, (4-len(p)%4)%4)...)
	out = append(out, b[at:]...)
	binary.BigEndian.PutUint16(out[2:], uint16(int(binary.BigEndian.Uint16(b[2:]))+len(out)-len(b)))
	return out
}

// Wire builders for registrations the encoder refuses to make.

// registration returns an ASAP_REGISTRATION of handle h with pool element
// parameter pe as given.
func registration(h string, pe []byte) []byte {
	b := []byte{byte(asap.TypeRegistration), 0, 0, 0}
	b = append(b, padded(param(asap.ParamPoolHandle, []byte(h)))...)
	b = append(b, pe...)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return append(b, make([]byte, (4-len(b)%4)%4)...)
}

func padded(p []byte) []byte { return append(p, make([]byte, (4-len(p)%4)%4)...) }

// peParam returns a pool element parameter with the given sub-parameters.
func peParam(id asap.PEID, life uint32, sub ...[]byte) []byte {
	v := binary.BigEndian.AppendUint32(nil, uint32(id))
	v = binary.BigEndian.AppendUint32(v, 0)
	v = binary.BigEndian.AppendUint32(v, life)
	for _, s := range sub {
		v = append(v, padded(s)...)
	}
	return param(asap.ParamPoolElement, v)
}

// transportParam returns a transport parameter of kind k with port 7, use
// and address parameters.
func transportParam(k asap.ParamType, use uint16, addrs ...[]byte) []byte {
	v := binary.BigEndian.AppendUint16(nil, 7)
	v = binary.BigEndian.AppendUint16(v, use)
	for _, a := range addrs {
		v = append(v, padded(a)...)
	}
	return param(k, v)
}

var (
	loopback4    = param(asap.ParamIPv4Address, []byte{127, 0, 0, 1})
	loopback6    = param(asap.ParamIPv6Address, netip.IPv6Loopback().AsSlice())
	rrPolicy     = param(asap.ParamPolicy, []byte{0, 0, 0, 1})
	tcpLoopback  = transportParam(asap.ParamTCPTransport, 0, loopback4)
	sctpLoopback = transportParam(asap.ParamSCTPTransport, 0, loopback4)
)

func TestInvalidRegistrationValues(t *testing.T) {
	r, addr := startRegistrar(t, noKeepAlives())
	c := dialClient(t, addr)
	const life = 30000
	long := string(bytes.Repeat([]byte{'h'}, asap.MaxPoolHandleLen+1))
	tests := []struct {
		name   string
		handle string
		id     asap.PEID
		pe     []byte
	}{
		{"SCTP transport use 2", "inv", 1, peParam(1, life, transportParam(asap.ParamSCTPTransport, 2, loopback4), rrPolicy)},
		{"TCP transport use 5", "inv", 2, peParam(2, life, transportParam(asap.ParamTCPTransport, 5, loopback4), rrPolicy)},
		{"IPv4 address of 5 bytes", "inv", 3, peParam(3, life, transportParam(asap.ParamTCPTransport, 0, param(asap.ParamIPv4Address, []byte{127, 0, 0, 1, 0})), rrPolicy)},
		{"IPv6 address of 4 bytes", "inv", 4, peParam(4, life, transportParam(asap.ParamTCPTransport, 0, param(asap.ParamIPv6Address, []byte{127, 0, 0, 1})), rrPolicy)},
		{"TCP transport with two addresses", "inv", 5, peParam(5, life, transportParam(asap.ParamTCPTransport, 0, loopback4, loopback4), rrPolicy)},
		{"transport without address", "inv", 6, peParam(6, life, transportParam(asap.ParamTCPTransport, 0), rrPolicy)},
		{"opaque transport", "inv", 7, peParam(7, life, param(asap.ParamOpaqueTransport, []byte("x")), rrPolicy)},
		{"no user transport", "inv", 8, peParam(8, life, rrPolicy)},
		{"no policy", "inv", 9, peParam(9, life, tcpLoopback)},
		{"unknown policy type", "inv", 10, peParam(10, life, tcpLoopback, param(asap.ParamPolicy, []byte{0x40, 0, 0, 0}))},
		{"truncated policy", "inv", 11, peParam(11, life, tcpLoopback, param(asap.ParamPolicy, []byte{0, 0}))},
		{"ASAP transport not SCTP", "inv", 12, peParam(12, life, tcpLoopback, rrPolicy, tcpLoopback)},
		{"pool element too short", "inv", 13, param(asap.ParamPoolElement, []byte{0, 0, 0, 13, 0, 0, 0, 0})},
		{"pool element identifier 0", "inv", 0, peParam(0, life, tcpLoopback, rrPolicy)},
		{"pool handle too long", long, 14, peParam(14, life, tcpLoopback, rrPolicy)},
		{"address not the peer's", "inv", 15, peParam(15, life, transportParam(asap.ParamTCPTransport, 0, param(asap.ParamIPv4Address, []byte{192, 0, 2, 1})), rrPolicy)},
		{"address not the peer's, IPv6", "inv", 16, peParam(16, life, transportParam(asap.ParamSCTPTransport, 0, loopback6), rrPolicy)},
		{"life -2", "inv", 17, peParam(17, 0xfffffffe, tcpLoopback, rrPolicy)},
		{"life -2^31", "inv", 18, peParam(18, 0x80000000, tcpLoopback, rrPolicy)},
		{"TCP port 0", "inv", 19, peParam(19, life, withPort(transportParam(asap.ParamTCPTransport, 0, loopback4), 0), rrPolicy)},
		{"SCTP port 0", "inv", 20, peParam(20, life, withPort(transportParam(asap.ParamSCTPTransport, 0, loopback4), 0), rrPolicy)},
	}
	// The builders make a valid registration from valid parts.
	c.sendRaw(registration("inv", peParam(100, life, tcpLoopback, rrPolicy)))
	if resp := expect[*asap.RegistrationResponse](c, 5*time.Second); resp.Reject {
		t.Fatalf("registration built by the test refused: %+v", resp)
	}
	c.sendRaw(registration("inv", peParam(101, life, sctpLoopback, rrPolicy)))
	if resp := expect[*asap.RegistrationResponse](c, 5*time.Second); !resp.Reject || resp.Causes[0].Code != asap.CauseInconsistentTransport {
		t.Fatalf("SCTP element in a TCP pool: %+v, want inconsistent transport", resp)
	}
	for _, tt := range tests {
		c.sendRaw(registration(tt.handle, tt.pe))
		got := c.sync()
		if len(got) != 1 {
			t.Fatalf("%s: got %d answers, want one registration response", tt.name, len(got))
		}
		resp, ok := got[0].(*asap.RegistrationResponse)
		if !ok || !resp.Reject || resp.Handle != asap.PoolHandle(tt.handle) || resp.ID != tt.id ||
			len(resp.Causes) != 1 || resp.Causes[0].Code != asap.CauseInvalidValues {
			t.Fatalf("%s: got %T %+v, want R=1 for %s/%d with cause invalid values", tt.name, got[0], got[0], tt.handle, tt.id)
		}
	}
	if got := ids(r, "inv"); !slices.Equal(got, []asap.PEID{100}) {
		t.Fatalf("pool inv holds %v, want only the valid element 100", got)
	}
	// An infinite life (-1) is valid, and gets the maximum.
	c.sendRaw(registration("inv", peParam(102, 0xffffffff, tcpLoopback, rrPolicy)))
	if resp := expect[*asap.RegistrationResponse](c, 5*time.Second); resp.Reject {
		t.Fatalf("registration with an infinite life refused: %+v", resp)
	}
	if e, ok := element(r, "inv", 102); !ok || e.Life != DefaultMaxRegistrationLife {
		t.Fatalf("element with an infinite life: %+v, want life %v", e, DefaultMaxRegistrationLife)
	}
	c.send(&asap.Deregistration{Handle: "inv", ID: 102})
	expect[*asap.DeregistrationResponse](c, 5*time.Second)
	if len(r.Pools()) != 1 || ownedCount(r) != 1 {
		t.Fatalf("handlespace %+v: want only pool inv", r.Pools())
	}

	// Other messages with invalid values draw an ASAP_ERROR.
	for _, m := range [][]byte{
		{byte(asap.TypeDeregistration), 0, 0, 20, 0, 9, 0, 7, 'i', 'n', 'v', 0, 0, 0xe, 0, 7, 0, 0, 100, 0},
		{byte(asap.TypeHandleResolution), 0, 0, 8, 0, 9, 0, 4},
		{byte(asap.TypeEndpointUnreachable), 0, 0, 12, 0, 9, 0, 7, 'i', 'n', 'v', 0},
		// A registration without its pool handle or its pool element:
		// a registration response names both, and the element could
		// not match one without them, so it is an ASAP_ERROR, as
		// rsplib's registrar answers a message that does not parse.
		withLen(append([]byte{byte(asap.TypeRegistration), 0, 0, 0}, padded(peParam(30, life, tcpLoopback, rrPolicy))...)),
		withLen(append([]byte{byte(asap.TypeRegistration), 0, 0, 0}, padded(param(asap.ParamPoolHandle, []byte("inv")))...)),
	} {
		c.sendRaw(m)
		got := c.sync()
		if len(got) != 1 {
			t.Fatalf("message %x: got %d answers, want one ASAP_ERROR", m, len(got))
		}
		if e, ok := got[0].(*asap.Error); !ok || len(e.Causes) != 1 || e.Causes[0].Code != asap.CauseInvalidValues {
			t.Fatalf("message %x: got %T %+v, want an ASAP_ERROR with cause invalid values", m, got[0], got[0])
		}
	}
	if got := ids(r, "inv"); !slices.Equal(got, []asap.PEID{100}) {
		t.Fatalf("pool inv holds %v after invalid messages, want [100]", got)
	}
}

// garbage makes malformed ASAP messages: random bytes, truncated messages
// and parameters, bad lengths, unknown message types with every action-bit
// combination, unknown parameters, and valid messages with bytes changed.
type garbage struct {
	rng       *mrand.Rand
	templates [][]byte
}

// newGarbage builds the generator. Its templates name pool "atk" and
// victimPool only in messages the registrar must refuse or ignore from a
// stranger.
func newGarbage(t testing.TB, seed uint64, victimPool asap.PoolHandle) *garbage {
	t.Helper()
	g := &garbage{rng: mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	sctp := asap.Transport{Kind: asap.ParamSCTPTransport, Port: 9, Use: asap.DataPlusControl,
		Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}}
	pe := loopbackPE(0x0a0b0c0d, 7, rr)
	lu := loopbackPE(0x01020304, 8, policy.Policy{Type: policy.LeastUsed, Load: 0x1000})
	lu.ASAPTransport = &sctp
	wrr := loopbackPE(0x05060708, 9, policy.Policy{Type: policy.WeightedRoundRobin, Weight: 3})
	wrr.UserTransport = sctp
	for _, m := range []asap.Message{
		&asap.Registration{Handle: "atk", PE: pe},
		&asap.Registration{Handle: "atk", PE: lu},
		&asap.Registration{Handle: "atk2", PE: wrr},
		&asap.Deregistration{Handle: "atk", ID: pe.ID},
		&asap.Deregistration{Handle: victimPool, ID: 1},
		&asap.HandleResolution{Handle: victimPool, Items: 2},
		&asap.HandleResolution{Handle: "atk", Subscribe: true},
		&asap.EndpointKeepAliveAck{Handle: victimPool, ID: 1},
		&asap.EndpointKeepAliveAck{Handle: "atk", ID: pe.ID},
		&asap.EndpointUnreachable{Handle: "atk", ID: pe.ID},
		&asap.RegistrationResponse{Reject: true, Handle: "atk", ID: 5, Causes: []asap.Cause{{Code: asap.CauseInvalidValues, Info: []byte("xyz")}}},
		&asap.DeregistrationResponse{Handle: "atk", ID: 5},
		&asap.HandleResolutionResponse{Handle: "atk", Policy: &rr, PEs: []asap.PoolElement{pe, pe}},
		&asap.EndpointKeepAlive{Home: true, Server: 77, Handle: "atk", ID: 5},
		&asap.ServerAnnounce{Server: 77, Transports: []asap.Transport{sctp}},
		&asap.Cookie{Cookie: []byte("cookie")},
		&asap.CookieEcho{Cookie: []byte("echo!")},
		&asap.BusinessCard{Handle: "atk", PEs: []asap.PoolElement{pe}},
		&asap.Error{Causes: []asap.Cause{{Code: asap.CauseUnrecognizedMessage, Info: []byte{1, 2, 3}}, {Code: asap.CauseLackOfResources}}},
	} {
		b, err := m.AppendBinary(nil)
		if err != nil {
			t.Fatalf("encoding %T: %v", m, err)
		}
		g.templates = append(g.templates, b)
	}
	return g
}

func (g *garbage) template() []byte {
	return slices.Clone(g.templates[g.rng.IntN(len(g.templates))])
}

func (g *garbage) random(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.rng.Uint32())
	}
	return b
}

func setLen(b []byte) []byte {
	if len(b) >= 4 {
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	}
	return b
}

// tlvOffsets returns the offsets of every parameter header in b (a
// parameter sequence starting at base), descending into the parameters
// that hold others.
func tlvOffsets(b []byte, base int) []int {
	var offs []int
	for i := 0; i+4 <= len(b); {
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		if n < 4 || i+n > len(b) {
			break
		}
		offs = append(offs, base+i)
		skip := -1
		switch asap.ParamType(binary.BigEndian.Uint16(b[i:])) {
		case asap.ParamPoolElement:
			skip = 12
		case asap.ParamSCTPTransport, asap.ParamTCPTransport, asap.ParamUDPTransport, asap.ParamUDPLiteTransport, asap.ParamServerInformation:
			skip = 4
		case asap.ParamDCCPTransport:
			skip = 8
		}
		if skip >= 0 && 4+skip <= n {
			offs = append(offs, tlvOffsets(b[i+4+skip:i+n], base+i+4+skip)...)
		}
		i += n + (4-n%4)%4
	}
	return offs
}

// next returns one malformed message.
func (g *garbage) next() []byte {
	switch g.rng.IntN(10) {
	case 0: // random bytes
		return g.random(g.rng.IntN(300))
	case 1: // random parameters behind a known type and a right length
		b := g.random(4 + g.rng.IntN(200))
		b[0] = byte(1 + g.rng.IntN(int(asap.TypeError)))
		return setLen(b)
	case 2: // truncated; the length still claims the whole message
		b := g.template()
		return b[:g.rng.IntN(len(b))]
	case 3: // truncated parameters, the message length matching
		b := g.template()
		return setLen(b[:4+g.rng.IntN(len(b)-4)])
	case 4: // bytes changed
		b := g.template()
		for range 1 + g.rng.IntN(4) {
			b[g.rng.IntN(len(b))] = byte(g.rng.Uint32())
		}
		return b
	case 5: // a parameter with a bad length
		b := g.template()
		offs := tlvOffsets(b[4:], 4)
		if len(offs) == 0 {
			return b
		}
		at := offs[g.rng.IntN(len(offs))]
		bad := []uint16{0, 1, 2, 3, 5, 0xffff, uint16(len(b) - at + 1), uint16(g.rng.Uint32())}
		binary.BigEndian.PutUint16(b[at+2:], bad[g.rng.IntN(len(bad))])
		return b
	case 6: // an unknown message type, with any action bits
		t := byte(g.rng.IntN(4)<<6 | g.rng.IntN(64))
		if t >= 1 && t <= byte(asap.TypeError) {
			t += 0x20
		}
		b := g.random(4 + g.rng.IntN(40))
		b[0] = t
		return setLen(b)
	case 7: // an unknown parameter, with any action bits
		typ := asap.ParamType(g.rng.IntN(4)<<14 | (0x100 + g.rng.IntN(0x3e00)))
		return appendParam(g.template(), typ, g.random(g.rng.IntN(24)))
	case 8: // a message length that is wrong
		b := g.template()
		bad := []uint16{0, 1, 2, 3, 4, uint16(len(b) + 1), uint16(len(b) + 4), 0xffff, uint16(g.rng.Uint32())}
		binary.BigEndian.PutUint16(b[2:], bad[g.rng.IntN(len(bad))])
		return b
	default: // a registration whose pool element holds random parameters
		v := g.random(12 + g.rng.IntN(64))
		for i := 12; i+4 <= len(v); i += 4 + g.rng.IntN(3)*4 {
			typ := []asap.ParamType{asap.ParamTCPTransport, asap.ParamSCTPTransport, asap.ParamPolicy, asap.ParamIPv4Address, asap.ParamIPv6Address, 0x4444, 0xc444}
			binary.BigEndian.PutUint16(v[i:], uint16(typ[g.rng.IntN(len(typ))]))
			binary.BigEndian.PutUint16(v[i+2:], uint16(4+g.rng.IntN(len(v)-i)))
		}
		return registration("atk", param(asap.ParamPoolElement, v))
	}
}

func TestMalformedFlood(t *testing.T) {
	const victimPool asap.PoolHandle = "victim-pool"
	r, addr := startRegistrar(t, noKeepAlives())
	victim := dialClient(t, addr)
	// Lives long enough to outlast the flood on slow kernels too.
	longLived := func(id asap.PEID, port uint16) asap.PoolElement {
		pe := loopbackPE(id, port, rr)
		pe.Life = 10 * time.Minute
		return pe
	}
	for id := asap.PEID(1); id <= 5; id++ {
		if resp := victim.register(victimPool, longLived(id, uint16(id))); resp.Reject {
			t.Fatalf("victim registration refused: %+v", resp)
		}
	}
	victim.register("victim-other", longLived(0x0a0b0c0d, 7)) // the identifier the garbage uses
	snapshot := r.Pools()

	seed := uint64(time.Now().UnixNano())
	g := newGarbage(t, seed, victimPool)
	atk := dialClient(t, addr)
	type result struct {
		n   int
		err error
	}
	drained := make(chan result, 1)
	go func() {
		// Read everything the registrar answers; each answer must decode.
		buf := make([]byte, 65536)
		n := 0
		for {
			atk.c.SetReadDeadline(time.Now().Add(15 * time.Second))
			k, _, err := atk.c.ReadMsg(buf)
			if err != nil {
				drained <- result{n, err}
				return
			}
			m, err := asap.Unmarshal(buf[:k])
			if err != nil {
				drained <- result{n, fmt.Errorf("undecodable answer %x: %w", buf[:k], err)}
				return
			}
			n++
			if hr, ok := m.(*asap.HandleResolutionResponse); ok && hr.Handle == syncHandle {
				drained <- result{n, nil}
				return
			}
		}
	}()
	// Bounded in count and in time: the victim, which does not read
	// during the flood, must not miss the TCP mapping's heartbeats.
	const maxCount = 10000
	count := 0
	for start := time.Now(); count < maxCount && time.Since(start) < 3*time.Second; count++ {
		atk.sendRaw(g.next())
	}
	atk.send(&asap.HandleResolution{Handle: syncHandle})
	res := <-drained
	if res.err != nil {
		t.Fatalf("seed %d: attacker's connection: %v after %d answers", seed, res.err, res.n)
	}
	t.Logf("seed %d: %d malformed messages drew %d answers", seed, count, res.n-1)

	// Nothing of the victim's changed, and it heard nothing.
	for _, p := range snapshot {
		for _, want := range p.Elements {
			if got, ok := element(r, p.Handle, want.ID); !ok || !samePE(got, want) {
				t.Fatalf("seed %d: element %s/%d changed by the flood: %+v -> %+v (%v)", seed, p.Handle, want.ID, want, got, ok)
			}
		}
	}
	// The victim heard nothing but, perhaps, keep-alives: a report of
	// one of its elements unreachable, which the garbage can make of
	// another message by a changed type, has the registrar probe it.
	for _, m := range victim.sync() {
		ka, ok := m.(*asap.EndpointKeepAlive)
		if !ok {
			t.Fatalf("seed %d: victim got %T %+v during the flood, want nothing but keep-alives", seed, m, m)
		}
		victim.send(&asap.EndpointKeepAliveAck{Handle: ka.Handle, ID: ka.ID})
	}
	// The registrar still resolves and registers.
	pu := dialClient(t, addr)
	pu.send(&asap.HandleResolution{Handle: victimPool, Items: 0xffffffff})
	if hr := expect[*asap.HandleResolutionResponse](pu, 5*time.Second); len(hr.PEs) != 5 {
		t.Fatalf("seed %d: resolution after the flood returned %d elements, want 5", seed, len(hr.PEs))
	}
	if resp := victim.register(victimPool, loopbackPE(6, 6, rr)); resp.Reject {
		t.Fatalf("seed %d: registration after the flood refused: %+v", seed, resp)
	}
	if resp := atk.register("atk-after", loopbackPE(1, 7, rr)); resp.Reject {
		t.Fatalf("seed %d: the flooding peer's own registration refused: %+v", seed, resp)
	}
}

// fakeAddrConn is a connection that claims a loopback TCP peer address.
type fakeAddrConn struct{ mapping.Conn }

func (fakeAddrConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
}

// FuzzHandle feeds arbitrary messages to a registrar's message handler and
// checks that every answer it queues decodes.
func FuzzHandle(f *testing.F) {
	g := newGarbage(f, 1, "victim-pool")
	for _, b := range g.templates {
		f.Add(b)
	}
	for range 200 {
		f.Add(g.next())
	}
	r := New(Config{KeepAliveInterval: -1, MaxPools: 50, MaxPEsPerPool: 50})
	f.Cleanup(func() { r.Close() })
	a, b := mapping.Pipe()
	f.Cleanup(func() { a.Close(); b.Close() })
	pc := newPeerConn(r, fakeAddrConn{a})
	// As while the reader handles a batch: answers collect in
	// pc.replies; messages sent of the registrar's own accord go to the
	// queue. The fuzz function checks both.
	pc.batching = true
	f.Fuzz(func(t *testing.T, msg []byte) {
		pc.handle(msg)
		var outs [][]byte
		for _, m := range pc.replies {
			outs = append(outs, m.Buf)
		}
		pc.replies = pc.replies[:0]
		for len(pc.out) > 0 {
			outs = append(outs, <-pc.out)
		}
		for _, out := range outs {
			if _, err := asap.Unmarshal(out); err != nil {
				t.Fatalf("answer to %x does not decode: %x: %v", msg, out, err)
			}
		}
	})
}

// withPort sets the port of a transport parameter built by transportParam.
func withPort(p []byte, port uint16) []byte {
	binary.BigEndian.PutUint16(p[4:], port)
	return p
}

// withLen sets message b's length to its size.
func withLen(b []byte) []byte {
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

// A resolution whose answer would not fit in one ASAP message is answered
// with as many elements as fit.
func TestResolutionTooLargeForOneMessage(t *testing.T) {
	const n = 2000
	r, addr := startRegistrar(t, Config{KeepAliveInterval: -1, MaxHandleResolutionItems: n, HandleResolutionRate: -1})
	pe := dialClient(t, addr)
	for id := range asap.PEID(n) {
		pe.send(&asap.Registration{Handle: "huge", PE: loopbackPE(id+1, uint16(id+1), rr)})
	}
	for range n {
		if resp := expect[*asap.RegistrationResponse](pe, 5*time.Second); resp.Reject {
			t.Fatalf("registration refused: %+v", resp)
		}
	}
	if got := len(ids(r, "huge")); got != n {
		t.Fatalf("%d elements registered, want %d", got, n)
	}
	pu := dialClient(t, addr)
	pu.send(&asap.HandleResolution{Handle: "huge", Items: n})
	pu.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	k, _, err := pu.c.ReadMsg(pu.buf)
	if err != nil {
		t.Fatalf("no answer to a resolution of %d elements: %v", n, err)
	}
	m, err := asap.Unmarshal(pu.buf[:k])
	if err != nil {
		t.Fatal(err)
	}
	hr, ok := m.(*asap.HandleResolutionResponse)
	if !ok || len(hr.Causes) != 0 || len(hr.PEs) == 0 || len(hr.PEs) >= n {
		t.Fatalf("got %T with %d causes and %d elements, want some of the %d elements", m, len(hr.Causes), len(hr.PEs), n)
	}
	// As many as fit: one more would not.
	one := encode(t, &asap.HandleResolutionResponse{Handle: "huge", Policy: hr.Policy, PEs: hr.PEs[:1]})
	empty := encode(t, &asap.HandleResolutionResponse{Handle: "huge", Policy: hr.Policy})
	if k+len(one)-len(empty) <= 0xffff {
		t.Fatalf("answer of %d bytes with %d elements: another of %d bytes would fit", k, len(hr.PEs), len(one)-len(empty))
	}
}
