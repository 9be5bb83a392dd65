package mapping

import (
	"errors"
	"net"
	"testing"
)

// TestMsgInfoWithoutStreams: over the TCP mapping a message on stream 0 in
// order goes through WriteMsgInfo and comes back with its PPID; a stream or
// unordered delivery is refused with ErrNoStreams and nothing is sent.
func TestMsgInfoWithoutStreams(t *testing.T) {
	a, b := Pipe()
	defer a.Close()
	defer b.Close()
	for _, info := range []MsgInfo{{PPID: 5, Stream: 1}, {PPID: 5, Unordered: true}} {
		err := WriteMsgInfo(a, []byte("x"), info)
		var oe *net.OpError
		if !errors.Is(err, ErrNoStreams) || !errors.As(err, &oe) {
			t.Errorf("WriteMsgInfo %+v: %v, want a *net.OpError wrapping ErrNoStreams", info, err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- WriteMsgInfo(a, []byte("hello"), MsgInfo{PPID: 7}) }()
	buf := make([]byte, 10)
	n, info, err := ReadMsgInfo(b, buf)
	if err != nil || string(buf[:n]) != "hello" || info != (MsgInfo{PPID: 7}) {
		t.Fatalf("ReadMsgInfo: %q %+v %v", buf[:n], info, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestBatchWithoutStreams: the TCP mapping's WriteBatch refuses a message
// with a stream or unordered delivery and sends none of the batch.
func TestBatchWithoutStreams(t *testing.T) {
	a, b := Pipe()
	defer a.Close()
	defer b.Close()
	n, err := a.(BatchConn).WriteBatch([]Msg{{Buf: []byte("first"), PPID: 1}, {Buf: []byte("x"), PPID: 1, Stream: 2}})
	if n != 0 || !errors.Is(err, ErrNoStreams) {
		t.Fatalf("WriteBatch: %d, %v; want 0, ErrNoStreams", n, err)
	}
}
