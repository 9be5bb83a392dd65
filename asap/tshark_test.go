package asap

import (
	"regexp"
	"strings"
	"testing"

	"github.com/rsp-go/rsp/internal/tsharktest"
)

// TestWiresharkDecodesEveryMessage has tshark decode every message type
// this package encodes: none may be malformed, and each must show its type.
func TestWiresharkDecodesEveryMessage(t *testing.T) {
	msgs := allMessages()
	var wire [][]byte
	for _, m := range msgs {
		b, err := m.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		wire = append(wire, b)
	}
	out := tsharktest.Decode(t, 11, wire)
	// Wireshark has no decoder for the opaque transport (0x10) of RFC 5354
	// and shows it as an unknown parameter; anything else unknown is ours.
	out = strings.ReplaceAll(out, "Unknown Parameter (type 16 ", "opaque transport (type 16 ")
	for _, bad := range []string{"Malformed", "Expert Info (Error", "Unknown Parameter"} {
		if strings.Contains(out, bad) {
			t.Fatalf("tshark reports %q:\n%s", bad, out)
		}
	}
	frames := frameRE.Split(out, -1)[1:]
	if len(frames) != len(msgs) {
		t.Fatalf("tshark decoded %d frames, want %d", len(frames), len(msgs))
	}
	wsNames := map[MessageType]string{
		TypeRegistration: "Registration (1)", TypeDeregistration: "Deregistration (2)",
		TypeRegistrationResponse: "Registration Response (3)", TypeDeregistrationResponse: "Deregistration Response (4)",
		TypeHandleResolution: "Handle Resolution (5)", TypeHandleResolutionResponse: "Handle Resolution Response (6)",
		TypeEndpointKeepAlive: "Endpoint Keep-Alive (7)", TypeEndpointKeepAliveAck: "Endpoint Keep-Alive Acknowledgement (8)",
		TypeEndpointUnreachable: "Endpoint Unreachable (9)", TypeServerAnnounce: "Server Announce (10)",
		TypeCookie: "Cookie (11)", TypeCookieEcho: "Cookie Echo (12)", TypeBusinessCard: "Business Card (13)",
		TypeError: "Error (14)",
	}
	for i, m := range msgs {
		if want := "Type: ASAP " + wsNames[m.Type()]; !strings.Contains(frames[i], want) {
			t.Errorf("frame %d (%v): tshark does not show %q:\n%s", i, m.Type(), want, frames[i])
		}
	}
	// Spot-check fields: registration life in milliseconds, the pool
	// handle, the policy.
	reg := frames[0]
	for _, want := range []string{"Pool Handle: 61 (a)", "Registration Life: -1ms", "Transport Use: Data plus control (1)",
		"Policy Type: Least Used (LU) (0x40000001)", "Policy Load: 50.00%", "IP Version 6 Address: 2001:db8::1"} {
		if !strings.Contains(reg, want) {
			t.Errorf("registration frame lacks %q:\n%s", want, reg)
		}
	}
}

var frameRE = regexp.MustCompile(`(?m)^Frame \d+:`)
