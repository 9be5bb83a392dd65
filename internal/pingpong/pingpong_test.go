package pingpong

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Messages captured from rsplib 3.4.4 (inside User-mode Linux).
var (
	// Ping #1 of pingpongclient.
	realPing = mustHex("0100003700000000000000014e61636872696368743a20312c205a6569747374656d70656c3a2031373936313232393337333730363939")
	// rspserver -pingpong's Pong, reply #1, to a Ping #1 with data
	// "Nachricht: 1, Zeitstempel: 1764586000000000".
	realPong = mustHex("0200003f000000000000000100000000000000014e61636872696368743a20312c205a6569747374656d70656c3a2031373634353836303030303030303030")
	// The cookie it sent after that Pong (in an ASAP_COOKIE,
	// 0b000018000d0014...): next reply #2.
	realCookie = mustHex("3c50502d5444313e0000000000000002")
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestRealMessages(t *testing.T) {
	p, err := ParsePing(realPing)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(Ping{MessageNo: 1, Data: []byte("Nachricht: 1, Zeitstempel: 1796122937370699")}, p); d != "" {
		t.Errorf("ping (-want +got):\n%s", d)
	}
	q, err := ParsePong(realPong)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(Pong{MessageNo: 1, ReplyNo: 1, Data: []byte("Nachricht: 1, Zeitstempel: 1764586000000000")}, q); d != "" {
		t.Errorf("pong (-want +got):\n%s", d)
	}
	c, err := ParseCookie(realCookie)
	if err != nil || c.ReplyNo != 2 {
		t.Errorf("cookie: %+v %v", c, err)
	}
	for _, tc := range []struct {
		m    interface{ AppendBinary([]byte) ([]byte, error) }
		want []byte
	}{{p, realPing}, {q, realPong}, {c, realCookie}} {
		if b, err := tc.m.AppendBinary(nil); err != nil || !bytes.Equal(b, tc.want) {
			t.Errorf("%T encodes as %x (%v), want %x", tc.m, b, err, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"pong as ping", realPong, ErrType},
		{"length below the fixed part", []byte{1, 0, 0, 11, 0, 0, 0, 0, 0, 0, 0, 1}, ErrLength},
		{"length beyond the bytes", realPing[:20], ErrTruncated},
	} {
		if _, err := ParsePing(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := ParsePong(realPing); !errors.Is(err, ErrType) {
		t.Errorf("ping as pong: %v", err)
	}
	// rsplib reads a message as its length says; bytes after it are not
	// part of it.
	p, err := ParsePing(append(bytes.Clone(realPing), 0xde, 0xad))
	if err != nil || len(p.Data) != len(realPing)-pingLen {
		t.Errorf("ping with trailing bytes: %+v %v", p, err)
	}
	for _, b := range [][]byte{realCookie[:15], append(bytes.Clone(realCookie), 0), mustHex("3c50502d5444323e0000000000000002")} {
		if _, err := ParseCookie(b); !errors.Is(err, ErrCookie) {
			t.Errorf("cookie %x: %v, want ErrCookie", b, err)
		}
	}
	if _, err := (Ping{Data: make([]byte, 0xffff)}).AppendBinary(nil); !errors.Is(err, ErrLength) {
		t.Errorf("a ping too long for its length field: %v", err)
	}
}

// FuzzParse: no input panics a decoder, and whatever decodes encodes back
// to the bytes its length covers.
func FuzzParse(f *testing.F) {
	for _, b := range [][]byte{realPing, realPong, realCookie, {}, {1, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0}} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := ParsePing(b); err == nil {
			if e, _ := p.AppendBinary(nil); !bytes.Equal(e[4:], b[4:len(e)]) {
				t.Fatalf("ping %x re-encodes as %x", b, e)
			}
		}
		if p, err := ParsePong(b); err == nil {
			if e, _ := p.AppendBinary(nil); !bytes.Equal(e[4:], b[4:len(e)]) {
				t.Fatalf("pong %x re-encodes as %x", b, e)
			}
		}
		if c, err := ParseCookie(b); err == nil {
			if e, _ := c.AppendBinary(nil); !bytes.Equal(e, b) {
				t.Fatalf("cookie %x re-encodes as %x", b, e)
			}
		}
	})
}
