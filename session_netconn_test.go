package rsp

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// TestSessionEmptyMessageReadsNothing: a zero-length Write (an empty
// message) makes the peer's Read return neither 0 bytes with a nil error
// (io.Reader discourages it, and loops that read until n > 0 spin) nor
// lose its place: the next Read returns the next message's bytes. It used
// to return (0, nil).
func TestSessionEmptyMessageReadsNothing(t *testing.T) {
	a, b := pipeSessions(SessionConfig{})
	defer a.Close()
	defer b.Close()
	if n, err := a.Write(nil); n != 0 || err != nil {
		t.Fatalf("Write(nil) = %d, %v; want 0, nil", n, err)
	}
	if _, err := a.WriteMsg(nil, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 16)
	n, err := b.Read(buf)
	if err != nil || string(buf[:n]) != "after" {
		t.Fatalf("Read = %q, %v; want \"after\", nil", buf[:n], err)
	}
}

// TestSessionWriteLongerThanUnackedBound: with MaxUnackedBytes below
// MaxMessageSize, a Write longer than MaxUnackedBytes is sent in messages
// that fit it instead of blocking forever (a message that can never fit
// waited for room that could never come), and a WriteMsg that can never
// fit fails at once with ErrMessageTooLong.
func TestSessionWriteLongerThanUnackedBound(t *testing.T) {
	const bound = 1024
	a, b := pipeSessions(SessionConfig{MaxUnackedBytes: bound})
	defer a.Close()
	defer b.Close()
	want := bytes.Repeat([]byte("0123456789"), 10000)
	got := make(chan []byte, 1)
	go func() {
		b.SetReadDeadline(time.Now().Add(20 * time.Second))
		var all []byte
		buf := make([]byte, 4096)
		for len(all) < len(want) {
			n, err := b.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil {
				t.Errorf("Read: %v", err)
				break
			}
		}
		got <- all
	}()
	a.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if n, err := a.Write(want); n != len(want) || err != nil {
		t.Fatalf("Write of %d bytes = %d, %v", len(want), n, err)
	}
	if all := <-got; !bytes.Equal(all, want) {
		t.Errorf("read %d bytes, not the %d written", len(all), len(want))
	}
	a.SetWriteDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	_, err := a.WriteMsg(make([]byte, bound), WriteOptions{})
	if !errors.Is(err, ErrMessageTooLong) {
		t.Errorf("WriteMsg of %d bytes with MaxUnackedBytes %d: %v, want ErrMessageTooLong", bound, bound, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("WriteMsg failed after %v, want at once", d)
	}
}
