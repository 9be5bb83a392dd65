package ulpack

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var testID = SessionID{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}

// golden are frames with their exact bytes, as spec/session.md lays them
// out.
var golden = []struct {
	name  string
	frame Frame
	hex   string
}{
	{"hello", &Hello{Version: 1, Window: 1024, ID: testID, Next: 1},
		"01000000 00010000 00000400 00112233445566778899aabbccddeeff 0000000000000001"},
	{"hello resume", &Hello{Version: 1, Resume: true, Window: 64, ID: testID, Next: 0x1_0000_0002},
		"01010000 00010000 00000040 00112233445566778899aabbccddeeff 0000000100000002"},
	{"hello ack", &HelloAck{Version: 1, Window: 1024, ID: testID},
		"02000000 00010000 00000400 00112233445566778899aabbccddeeff 0000000000000000"},
	{"hello ack resumed", &HelloAck{Version: 1, Resumed: true, Window: 2048, ID: testID, Ack: 41},
		"02010000 00010000 00000800 00112233445566778899aabbccddeeff 0000000000000029"},
	{"hello resume cookie", &Hello{Version: 1, Resume: true, Cookie: true, Window: 64, ID: testID, Next: 5},
		"01030000 00010000 00000040 00112233445566778899aabbccddeeff 0000000000000005"},
	{"hello ack stateless", &HelloAck{Version: 1, Stateless: true, Window: 64, ID: testID, Ack: 4},
		"02020000 00010000 00000040 00112233445566778899aabbccddeeff 0000000000000004"},
	// The limits: the user's in 1024-byte units after the version, the
	// element's in 4 bytes after the fixed part.
	{"hello max message size", &Hello{Version: 1, Window: 1024, ID: testID, Next: 1, MaxMessageSize: 1 << 20},
		"01000000 00010400 00000400 00112233445566778899aabbccddeeff 0000000000000001"},
	{"hello ack max message size", &HelloAck{Version: 1, Stateless: true, Window: 1024, ID: testID, MaxMessageSize: 1<<20 + 1},
		"02020000 00010000 00000400 00112233445566778899aabbccddeeff 0000000000000000 00100001"},
	{"data", &Data{Seq: 7, PPID: 0x2a, Payload: []byte("hello")},
		"03000000 0000000000000007 0000002a 68656c6c6f"},
	{"data ack request", &Data{Seq: 8, AckRequest: true, PPID: 0, Payload: []byte{}},
		"03010000 0000000000000008 00000000"},
	{"data ack now", &Data{Seq: 9, AckRequest: true, AckNow: true, PPID: 1, Payload: []byte{0xff}},
		"03030000 0000000000000009 00000001 ff"},
	{"ack", &Ack{UpTo: 0x0102030405060708}, "04000000 0102030405060708"},
	{"ping", &Ping{Opaque: 0xdeadbeef}, "05000000 00000000deadbeef"},
	{"pong", &Ping{Reply: true, Opaque: 1}, "05010000 0000000000000001"},
	{"goaway", &GoAway{Code: CodeShutdown, Ack: 12, Reason: "bye"},
		"06000000 00000004 000000000000000c 627965"},
	{"close", &Close{Code: CodeNormal}, "07000000 00000000"},
	{"close refused", &Close{Code: CodeRefused, Reason: "version"},
		"07000000 00000003 76657273696f6e"},
	{"unknown optional", &Unknown{FrameType: 0x80, Flags: 3, Body: []byte{1, 2}}, "80030000 0102"},
}

func TestGolden(t *testing.T) {
	for _, g := range golden {
		t.Run(g.name, func(t *testing.T) {
			want := unhex(t, g.hex)
			got, err := g.frame.AppendBinary([]byte("prefix"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[6:], want) || string(got[:6]) != "prefix" {
				t.Fatalf("encoded\n%x\nwant\n%x", got[6:], want)
			}
			f, err := ParseFrame(want)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(g.frame, f); diff != "" {
				t.Fatalf("decoded (-want +got):\n%s", diff)
			}
			if f.Type() != FrameType(want[0]) {
				t.Fatalf("Type() = %v, want %v", f.Type(), FrameType(want[0]))
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	id := hex.EncodeToString(testID[:])
	for _, c := range []struct {
		name, hex string
		want      error
	}{
		{"empty", "", ErrMalformed},
		{"short header", "040000", ErrMalformed},
		{"hello short", "01000000 00010000 00000400" + id + "00000000000000", ErrMalformed},
		{"hello version 0", "01000000 00000000 00000400" + id + "0000000000000001", ErrMalformed},
		{"hello window 0", "01000000 00010000 00000000" + id + "0000000000000001", ErrMalformed},
		{"hello id 0", "01000000 00010000 00000400 00000000000000000000000000000000 0000000000000001", ErrMalformed},
		{"hello ack id 0", "02000000 00010000 00000400 00000000000000000000000000000000 0000000000000001", ErrMalformed},
		{"data short", "03000000 0000000000000007 000000", ErrMalformed},
		{"data seq 0", "03000000 0000000000000000 00000000", ErrMalformed},
		{"ack short", "04000000 01020304050607", ErrMalformed},
		{"ping short", "05000000", ErrMalformed},
		{"goaway short", "06000000 00000004 00000000000000", ErrMalformed},
		{"close short", "07000000 000000", ErrMalformed},
		{"unknown mandatory", "08000000", ErrUnknownFrame},
		{"unknown mandatory 0", "00000000", ErrUnknownFrame},
		{"unknown mandatory 7f", "7f000000 00", ErrUnknownFrame},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := ParseFrame(unhex(t, c.hex))
			if !errors.Is(err, c.want) {
				t.Fatalf("ParseFrame = %v, %v; want %v", f, err, c.want)
			}
		})
	}
}

// TestParseLenient checks what a receiver ignores: reserved bits and bytes,
// unknown flags, and fields after the fixed part that a later version may
// add.
func TestParseLenient(t *testing.T) {
	for _, c := range []struct {
		name, hex string
		want      Frame
	}{
		{"ack reserved and extra", "04fcabcd 0000000000000005 ffff", &Ack{UpTo: 5}},
		{"ping other flags", "05fe0000 0000000000000002", &Ping{Opaque: 2}},
		{"hello extra field", "01000000 00020000 00000001" + hex.EncodeToString(testID[:]) + "0000000000000003 01020304",
			&Hello{Version: 2, Window: 1, ID: testID, Next: 3}},
		{"hello ack reserved and extra field", "02000000 0001ffff 00000001" + hex.EncodeToString(testID[:]) + "0000000000000003 00000400 0506",
			&HelloAck{Version: 1, Window: 1, ID: testID, Ack: 3, MaxMessageSize: 1024}},
		{"hello ack with part of the limit", "02000000 00010000 00000001" + hex.EncodeToString(testID[:]) + "0000000000000003 000004",
			&HelloAck{Version: 1, Window: 1, ID: testID, Ack: 3}},
		{"data unknown flag", "03800000 0000000000000001 00000000 00", &Data{Seq: 1, Payload: []byte{0}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := ParseFrame(unhex(t, c.hex))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, f); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestHelloDefaults(t *testing.T) {
	b, _ := Hello{ID: testID, Next: 1}.AppendBinary(nil)
	f, err := ParseFrame(b)
	if err != nil {
		t.Fatal(err)
	}
	want := &Hello{Version: Version, Window: DefaultWindow, ID: testID, Next: 1}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

// TestHelloMaxMessageSize: a HELLO carries the user's MaxMessageSize in
// 1024-byte units, rounded down and capped, and stays HelloLen bytes long
// (an element that predates the field recognises a session over TCP by
// that length); a HELLO_ACK carries the element's exactly, and without it
// is the 36 bytes of an element that predates the field. A peer that
// predates the field reads the fixed part only: the new frames decode
// there to what they said before.
func TestHelloMaxMessageSize(t *testing.T) {
	for _, c := range []struct{ size, sent uint32 }{
		{0, 0}, {1023, 0}, {1024, 1024}, {1500, 1024}, {1 << 20, 1 << 20}, {MaxHelloMessageSize, MaxHelloMessageSize},
		{MaxHelloMessageSize + 1024, MaxHelloMessageSize}, {1 << 31, MaxHelloMessageSize},
	} {
		b, _ := Hello{ID: testID, Next: 1, MaxMessageSize: c.size}.AppendBinary(nil)
		if len(b) != HelloLen {
			t.Errorf("HELLO with MaxMessageSize %d: %d bytes, want %d", c.size, len(b), HelloLen)
		}
		f, err := ParseFrame(b)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.(*Hello).MaxMessageSize; got != c.sent {
			t.Errorf("HELLO with MaxMessageSize %d decodes to %d, want %d", c.size, got, c.sent)
		}
	}
	for _, c := range []struct {
		size uint32
		n    int
	}{{0, HelloLen}, {1, HelloAckLimitLen}, {1 << 20, HelloAckLimitLen}, {1<<32 - 1, HelloAckLimitLen}} {
		ha := HelloAck{Window: 5, ID: testID, Ack: 9, MaxMessageSize: c.size}
		b, _ := ha.AppendBinary(nil)
		if len(b) != c.n {
			t.Errorf("HELLO_ACK with MaxMessageSize %d: %d bytes, want %d", c.size, len(b), c.n)
		}
		f, err := ParseFrame(b)
		if err != nil {
			t.Fatal(err)
		}
		ha.Version = Version
		if diff := cmp.Diff(&ha, f); diff != "" {
			t.Errorf("HELLO_ACK with MaxMessageSize %d (-want +got):\n%s", c.size, diff)
		}
		// What a peer that predates the field reads: the fixed part.
		f, err = ParseFrame(b[:HelloLen])
		if err != nil {
			t.Fatal(err)
		}
		ha.MaxMessageSize = 0
		if diff := cmp.Diff(&ha, f); diff != "" {
			t.Errorf("fixed part of the HELLO_ACK with MaxMessageSize %d (-want +got):\n%s", c.size, diff)
		}
	}
}

func TestReasonCut(t *testing.T) {
	long := strings.Repeat("x", MaxReasonLen+10)
	b, _ := Close{Code: CodeInternal, Reason: long}.AppendBinary(nil)
	if len(b) != CloseLen+MaxReasonLen {
		t.Fatalf("CLOSE of %d bytes, want %d", len(b), CloseLen+MaxReasonLen)
	}
	b, _ = GoAway{Reason: long}.AppendBinary(nil)
	if len(b) != GoAwayLen+MaxReasonLen {
		t.Fatalf("GOAWAY of %d bytes, want %d", len(b), GoAwayLen+MaxReasonLen)
	}
}

// TestParserReuse checks that a Parser's frames are its own: the next Parse
// overwrites the previous frame of the same type, and a payload aliases its
// input.
func TestParserReuse(t *testing.T) {
	var p Parser
	in := AppendDataHeader(nil, 1, 0, 0)
	in = append(in, 'a')
	f1, err := p.Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	in[DataLen] = 'b'
	if got := string(f1.(*Data).Payload); got != "b" {
		t.Fatalf("payload %q does not alias the input", got)
	}
	f2, _ := p.Parse(AppendDataHeader(nil, 2, 0, 0))
	if f1 != f2 || f1.(*Data).Seq != 2 {
		t.Fatal("the parser did not reuse its DATA frame")
	}
}

func TestStrings(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{FrameData.String(), "DATA"}, {FrameType(0x99).String(), "FrameType(0x99)"},
		{CodeShutdown.String(), "SHUTDOWN"}, {Code(77).String(), "Code(77)"},
	} {
		if c.got != c.want {
			t.Errorf("%q, want %q", c.got, c.want)
		}
	}
}

func FuzzParseFrame(f *testing.F) {
	for _, g := range golden {
		f.Add(unhex(f, g.hex))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseFrame(b)
		if err != nil {
			if fr != nil {
				t.Fatalf("frame %v with error %v", fr, err)
			}
			return
		}
		// What decodes re-encodes to a frame that decodes to the same,
		// and whose encoding is stable.
		b2, err := fr.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		fr2, err := ParseFrame(b2)
		if err != nil {
			t.Fatalf("re-encoded %x does not decode: %v", b2, err)
		}
		if diff := cmp.Diff(fr, fr2, cmpReasonCut()); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
		b3, _ := fr2.AppendBinary(nil)
		if !bytes.Equal(b2, b3) {
			t.Fatalf("unstable encoding: %x vs %x", b2, b3)
		}
		if d, ok := fr.(*Data); ok {
			d2, err := ParseData(b)
			if err != nil || d2.Seq != d.Seq || !bytes.Equal(d2.Payload, d.Payload) {
				t.Fatalf("ParseData disagrees with Parse: %+v, %v", d2, err)
			}
		}
	})
}

// cmpReasonCut compares reasons as the encoder sends them: cut at
// MaxReasonLen.
func cmpReasonCut() cmp.Option {
	return cmp.Transformer("reason", func(r string) string {
		if len(r) > MaxReasonLen {
			return r[:MaxReasonLen]
		}
		return r
	})
}
