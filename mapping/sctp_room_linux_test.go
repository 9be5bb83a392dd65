package mapping

import (
	"bytes"
	"testing"
	"time"
)

// readShared reads want messages from c with ReadBatch as a session does
// (8 messages of 512 bytes a batch, with ShareReads), keeping every
// message, and returns them and how many ReadBatch calls it took.
func readShared(t *testing.T, c *SCTPConn, want int) (got []Msg, calls int) {
	t.Helper()
	c.ShareReads(true)
	ms := make([]Msg, 8)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	for len(got) < want {
		for i := range ms {
			ms[i] = Msg{Buf: make([]byte, 512)}
		}
		n, err := c.ReadBatch(ms, 1<<20)
		calls++
		got = append(got, ms[:n]...)
		if err != nil {
			t.Fatalf("ReadBatch after %d messages: %v", len(got), err)
		}
	}
	return got, calls
}

// sendAll sends a message of each size, message i filled with i+1 and
// marked at both ends, with PPID i, from a goroutine; it returns the
// messages and a channel that yields the send's error.
func sendAll(c *SCTPConn, sizes []int) ([][]byte, chan error) {
	var want [][]byte
	for i, size := range sizes {
		p := bytes.Repeat([]byte{byte(i + 1)}, size)
		if size > 2 {
			p[0], p[size-1] = 0xfe, 0xff
		}
		want = append(want, p)
	}
	done := make(chan error, 1)
	go func() {
		for i, p := range want {
			if err := c.WriteMsg(p, uint32(i)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	return want, done
}

// TestSCTPReadBatchSharesReadBuffer reads messages of many sizes (longer
// and shorter than the slots, than the read buffer, growing and shrinking)
// with ShareReads, keeping every one: each comes out whole and unchanged
// by what is read after it, with a Lease where it lies in a read buffer,
// and in the caller's Buf where it fits.
func TestSCTPReadBatchSharesReadBuffer(t *testing.T) {
	requireSCTP(t)
	a, b := sctpPair(t, Config{})
	sizes := []int{100, 40000, 70000, 1, 32 << 10, 2 * readBufSize, 2*readBufSize + 1, 5, 200000, 512, 513, 2048, 2049}
	for range 20 {
		sizes = append(sizes, 32<<10)
	}
	for range 40 {
		sizes = append(sizes, 700)
	}
	sizes = append(sizes, 32<<10, 64, 100000)
	want, done := sendAll(a, sizes)
	got, _ := readShared(t, b, len(want))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d messages, want %d", len(got), len(want))
	}
	for i, m := range got {
		if !bytes.Equal(m.Buf[:m.N], want[i]) || m.PPID != uint32(i) || m.Err != nil {
			t.Errorf("message %d of %d bytes changed: %d bytes, PPID %d, err %v", i, len(want[i]), m.N, m.PPID, m.Err)
		}
		if len(want[i]) <= 512 && m.Lease != nil {
			t.Errorf("message %d of %d bytes has a Lease; it fits the caller's Buf", i, len(want[i]))
		}
		if len(want[i]) > 2*readBufSize && m.Lease != nil {
			t.Errorf("message %d of %d bytes has a Lease; it is longer than a read buffer", i, len(want[i]))
		}
	}
	for _, m := range got {
		if m.Lease != nil {
			m.Lease.Release()
		}
	}
}

// TestSCTPReadBatchWholeMessages: a bulk stream of 32 KiB messages comes
// whole, each in a slot of the read buffer (one system call for several,
// never two for one), after the first, which sizes the slots.
func TestSCTPReadBatchWholeMessages(t *testing.T) {
	requireSCTP(t)
	a, b := sctpPair(t, Config{})
	sizes := make([]int, 200)
	for i := range sizes {
		sizes[i] = 32<<10 + 16
	}
	want, done := sendAll(a, sizes)
	got, calls := readShared(t, b, len(want))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, m := range got {
		if !bytes.Equal(m.Buf[:m.N], want[i]) {
			t.Fatalf("message %d changed", i)
		}
		if i > 0 && m.Lease == nil {
			t.Errorf("message %d came in a Buf of its own, not whole in a slot", i)
		}
		if m.Lease != nil {
			m.Lease.Release()
		}
	}
	t.Logf("%d messages in %d ReadBatch calls", len(want), calls)
}

// TestSCTPReadBatchIdleHoldsNoBuffer: messages that come one at a time
// share a read buffer while they are held, and a connection waiting for
// the next message holds none of its own.
func TestSCTPReadBatchIdleHoldsNoBuffer(t *testing.T) {
	requireSCTP(t)
	a, b := sctpPair(t, Config{})
	b.ShareReads(true)
	msg := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 3000) }
	read := func() Msg {
		t.Helper()
		ms := []Msg{{Buf: make([]byte, 512)}}
		b.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := b.ReadBatch(ms, 1<<20)
		if n != 1 || err != nil {
			t.Fatalf("ReadBatch: %d, %v", n, err)
		}
		return ms[0]
	}
	// The first message, longer than the first slots, sizes them.
	if err := a.WriteMsg(msg(0), 1); err != nil {
		t.Fatal(err)
	}
	if m := read(); m.Lease != nil {
		m.Lease.Release()
	}
	var held []Msg
	for i := range 5 {
		if err := a.WriteMsg(msg(i), 1); err != nil {
			t.Fatal(err)
		}
		m := read()
		if m.Lease == nil {
			t.Fatalf("message %d of 3000 bytes: no Lease", i)
		}
		if len(held) > 0 && m.Lease != held[0].Lease {
			t.Errorf("message %d in another read buffer than the first, which is held", i)
		}
		held = append(held, m)
	}
	for i, m := range held {
		if !bytes.Equal(m.Buf[:m.N], msg(i)) {
			t.Errorf("held message %d changed", i)
		}
	}
	// The reader waits for the next message: the read buffer is the
	// held messages' alone, and, once they are released, no one's.
	lease := held[0].Lease
	next := make(chan Msg, 1)
	go func() {
		ms := []Msg{{Buf: make([]byte, 512)}}
		b.ReadBatch(ms, 1<<20)
		next <- ms[0]
	}()
	waitRefs := func(want int32) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); lease.refs.Load() != want; {
			if time.Now().After(deadline) {
				t.Fatalf("read buffer: %d holders, want %d", lease.refs.Load(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitRefs(int32(len(held)))
	for _, m := range held {
		m.Lease.Release()
	}
	waitRefs(0)
	if err := a.WriteMsg(msg(9), 1); err != nil {
		t.Fatal(err)
	}
	m := <-next
	if !bytes.Equal(m.Buf[:m.N], msg(9)) {
		t.Errorf("message after the wait: %d bytes, want 3000 of 9", m.N)
	}
	if m.Lease != nil {
		m.Lease.Release()
	}
}
