package enrp

import (
	"regexp"
	"strings"
	"testing"

	"github.com/rsp-go/rsp/internal/tsharktest"
)

var frameRE = regexp.MustCompile(`(?m)^Frame \d+:`)

// TestWiresharkDecodesEveryMessage has tshark decode every ENRP message
// type with its flags: none may be malformed.
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
	out := tsharktest.Decode(t, 12, wire)
	for _, bad := range []string{"Malformed", "Expert Info (Error", "Unknown Parameter"} {
		if strings.Contains(out, bad) {
			t.Fatalf("tshark reports %q:\n%s", bad, out)
		}
	}
	frames := frameRE.Split(out, -1)[1:]
	if len(frames) != len(msgs) {
		t.Fatalf("tshark decoded %d frames, want %d", len(frames), len(msgs))
	}
	want := map[MessageType]string{
		TypePresence: "ENRP Presence (1)", TypeHandleTableRequest: "ENRP Handle Table Request (2)",
		TypeHandleTableResponse: "ENRP Handle Table Response (3)", TypeHandleUpdate: "ENRP Handle Update (4)",
		TypeListRequest: "ENRP List Request (5)", TypeListResponse: "ENRP List Response (6)",
		TypeInitTakeover: "ENRP Init Takeover (7)", TypeInitTakeoverAck: "ENRP Init Takeover Ack (8)",
		TypeTakeoverServer: "ENRP Takeover Server (9)", TypeError: "ENRP Error (10)",
	}
	for i, m := range msgs {
		if w := "Type: " + want[m.Type()]; !strings.Contains(frames[i], w) {
			t.Errorf("frame %d (%v): tshark does not show %q:\n%s", i, m.Type(), w, frames[i])
		}
	}
	// Flags: M on the handle table response, T on the update.
	for i, w := range map[int]string{4: "..1. = M Bit: More information available", 6: "...1 = T Bit: Takeover suggested"} {
		if !strings.Contains(frames[i], w) {
			t.Errorf("frame %d lacks %q:\n%s", i, w, frames[i])
		}
	}
}
