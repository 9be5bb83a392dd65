package mapping

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

func tcpPair(t *testing.T, cfg Config) (*TCPConn, *TCPConn) {
	t.Helper()
	lc := ListenConfig{Config: cfg}
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	d := Dialer{Config: cfg}
	a, err := d.DialContext(context.Background(), "tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*TCPConn), b.(*TCPConn)
}

func TestMessagesKeepBoundariesAndPPIDs(t *testing.T) {
	a, b := tcpPair(t, Config{})
	sizes := []int{0, 1, 3, 4, 100, 4096, 65536, 300000}
	go func() {
		for i, n := range sizes {
			a.WriteMsg(bytes.Repeat([]byte{byte(i)}, n), uint32(100+i))
		}
	}()
	buf := make([]byte, 1<<20)
	for i, n := range sizes {
		b.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, ppid, err := b.ReadMsg(buf)
		if err != nil {
			t.Fatal(err)
		}
		if got != n || ppid != uint32(100+i) || !bytes.Equal(buf[:got], bytes.Repeat([]byte{byte(i)}, n)) {
			t.Fatalf("message %d: %d bytes PPID %d, want %d bytes PPID %d", i, got, ppid, n, 100+i)
		}
	}
}

func TestMessageTooLongKeepsConnection(t *testing.T) {
	a, b := tcpPair(t, Config{})
	go func() {
		a.WriteMsg(make([]byte, 100), 1)
		a.WriteMsg([]byte("next"), 2)
	}()
	buf := make([]byte, 10)
	if _, _, err := b.ReadMsg(buf); !errors.Is(err, ErrMessageTooLong) {
		t.Fatalf("got %v, want ErrMessageTooLong", err)
	}
	n, ppid, err := b.ReadMsg(buf)
	if err != nil || string(buf[:n]) != "next" || ppid != 2 {
		t.Fatalf("after a too long message: %q %d %v", buf[:n], ppid, err)
	}
}

func TestReadDeadlineMidFrame(t *testing.T) {
	a, b := tcpPair(t, Config{})
	raw := a.NetConn()
	frame := AppendFrameHeader(nil, FrameHeader{Type: FrameData, Length: 8, Tag: 11})
	frame = append(frame, "abcdefgh"...)
	// Half the frame, then a deadline, then the rest.
	raw.Write(frame[:7])
	b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 64)
	_, _, err := b.ReadMsg(buf)
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("got %v, want a timeout wrapping os.ErrDeadlineExceeded", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) {
		t.Fatalf("got %T, want *net.OpError", err)
	}
	raw.Write(frame[7:])
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, ppid, err := b.ReadMsg(buf)
	if err != nil || string(buf[:n]) != "abcdefgh" || ppid != 11 {
		t.Fatalf("after the deadline: %q %d %v", buf[:n], ppid, err)
	}
}

func TestConcurrentWritersDoNotInterleave(t *testing.T) {
	a, b := tcpPair(t, Config{})
	const writers, each = 8, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := bytes.Repeat([]byte{byte(w)}, 1000+w)
			for range each {
				if err := a.WriteMsg(msg, uint32(w)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	buf := make([]byte, 4096)
	for range writers * each {
		b.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, ppid, err := b.ReadMsg(buf)
		if err != nil {
			t.Fatal(err)
		}
		if n != 1000+int(ppid) || !bytes.Equal(buf[:n], bytes.Repeat([]byte{byte(ppid)}, n)) {
			t.Fatalf("interleaved message from writer %d: %d bytes", ppid, n)
		}
	}
	wg.Wait()
}

func TestHeartbeats(t *testing.T) {
	cfg := Config{HeartbeatInterval: 50 * time.Millisecond, HeartbeatTimeout: 100 * time.Millisecond}
	a, b := tcpPair(t, cfg)
	// b reads (and so answers heartbeats); a reads too: an idle but live
	// pair stays up well past interval + timeout.
	errs := make(chan error, 2)
	for _, c := range []*TCPConn{a, b} {
		go func() {
			_, _, err := c.ReadMsg(make([]byte, 10))
			errs <- err
		}()
	}
	select {
	case err := <-errs:
		t.Fatalf("live idle connection failed: %v", err)
	case <-time.After(500 * time.Millisecond):
	}

	// A peer that never answers is detected.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			defer c.Close()
			io.Copy(io.Discard, c) // reads, never answers
		}
	}()
	d := Dialer{Config: cfg}
	c, err := d.DialContext(context.Background(), "tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, _, err = c.ReadMsg(make([]byte, 10))
	if !errors.Is(err, ErrPeerTimeout) {
		t.Fatalf("silent peer: %v, want ErrPeerTimeout", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("silent peer noticed after %v", took)
	}
}

func TestCloseAndEOF(t *testing.T) {
	a, b := tcpPair(t, Config{})
	a.Close()
	if _, _, err := b.ReadMsg(make([]byte, 10)); err != io.EOF {
		t.Fatalf("read after peer close: %v, want io.EOF", err)
	}
	if err := a.WriteMsg([]byte("x"), 1); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v, want net.ErrClosed", err)
	}
	var oe *net.OpError
	if _, _, err := a.ReadMsg(make([]byte, 10)); !errors.Is(err, net.ErrClosed) || !errors.As(err, &oe) {
		t.Fatalf("read after close: %v, want *net.OpError wrapping net.ErrClosed", err)
	}
}

func TestFrameTooLargeFailsConnection(t *testing.T) {
	a, b := tcpPair(t, Config{MaxMessageSize: 1000})
	a.NetConn().Write(AppendFrameHeader(nil, FrameHeader{Type: FrameData, Length: 5000}))
	if _, _, err := b.ReadMsg(make([]byte, 10000)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
}

func TestUnknownFrames(t *testing.T) {
	a, b := tcpPair(t, Config{})
	raw := a.NetConn()
	raw.Write(AppendFrameHeader(nil, FrameHeader{Type: 0x80, Length: 2}))
	raw.Write([]byte("zz"))
	a.WriteMsg([]byte("ok"), 5)
	buf := make([]byte, 10)
	n, _, err := b.ReadMsg(buf)
	if err != nil || string(buf[:n]) != "ok" {
		t.Fatalf("after an optional unknown frame: %q %v", buf[:n], err)
	}
	raw.Write(AppendFrameHeader(nil, FrameHeader{Type: 0x09}))
	if _, _, err := b.ReadMsg(buf); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("mandatory unknown frame: %v, want ErrBadFrame", err)
	}
}

func TestPipe(t *testing.T) {
	a, b := Pipe()
	defer a.Close()
	defer b.Close()
	go a.WriteMsg([]byte("hi"), 11)
	buf := make([]byte, 10)
	n, ppid, err := b.ReadMsg(buf)
	if err != nil || string(buf[:n]) != "hi" || ppid != 11 {
		t.Fatalf("%q %d %v", buf[:n], ppid, err)
	}
}

func FuzzParseFrameHeader(f *testing.F) {
	f.Add(AppendFrameHeader(nil, FrameHeader{Type: FrameData, Length: 10, Tag: 11}))
	f.Add(AppendFrameHeader(nil, FrameHeader{Type: FrameHeartbeat, Tag: 99}))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseFrameHeader(b, 1<<16)
		if err != nil {
			return
		}
		if got := AppendFrameHeader(nil, h); !bytes.Equal(got[:4], append([]byte{b[0], b[1]}, 0, 0)) || !bytes.Equal(got[4:], b[4:12]) {
			t.Fatalf("re-encoded %x from %x", got, b[:12])
		}
	})
}

// FuzzReadMsg feeds arbitrary streams to a reader: no panic, no hang.
func FuzzReadMsg(f *testing.F) {
	msg := AppendFrameHeader(nil, FrameHeader{Type: FrameData, Length: 3, Tag: 11})
	f.Add(append(msg, "abc"...))
	f.Add(append(AppendFrameHeader(nil, FrameHeader{Type: FrameHeartbeat, Length: 1}), 'x'))
	f.Fuzz(func(t *testing.T, stream []byte) {
		a, b := net.Pipe()
		c := NewTCPConn(b, Config{HeartbeatInterval: -1, MaxMessageSize: 1 << 16})
		go func() {
			a.Write(stream)
			a.Close()
		}()
		go io.Copy(io.Discard, a) // heartbeat acknowledgements
		buf := make([]byte, 1<<16)
		for range len(stream) + 1 {
			c.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := c.ReadMsg(buf); err != nil {
				break
			}
		}
		c.Close()
	})
}

// FuzzReadBatch reads arbitrary streams with ReadBatch and with ReadMsg:
// the same messages must come out, in the same order, whatever the room
// in the batch's buffers.
func FuzzReadBatch(f *testing.F) {
	var seed []byte
	for i, size := range []int{3, 0, 40, 1} {
		seed = AppendFrameHeader(seed, FrameHeader{Type: FrameData, Length: uint32(size), Tag: uint32(i)})
		seed = append(seed, bytes.Repeat([]byte{'m'}, size)...)
	}
	seed = append(AppendFrameHeader(seed, FrameHeader{Type: FrameHeartbeat, Length: 1}), 'x')
	f.Add(seed, uint8(16), uint8(3), uint8(0))
	f.Add(seed, uint8(2), uint8(1), uint8(5))
	f.Add(seed, uint8(2), uint8(0x81), uint8(5))
	const limit = 64
	type msg struct {
		data    string
		ppid    uint32
		tooLong bool
	}
	read := func(stream []byte, chunk int, share bool, each func(c *TCPConn) ([]msg, error)) []msg {
		c := NewTCPConn(&streamConn{r: bytes.NewReader(stream), chunk: chunk}, Config{HeartbeatInterval: -1, MaxMessageSize: 1 << 10})
		c.ShareReads(share)
		defer c.Close()
		var all []msg
		for range len(stream) + 1 {
			got, err := each(c)
			all = append(all, got...)
			if err != nil {
				break
			}
		}
		return all
	}
	f.Fuzz(func(t *testing.T, stream []byte, room, slots, chunk uint8) {
		want := read(stream, int(chunk), false, func(c *TCPConn) ([]msg, error) {
			buf := make([]byte, limit)
			n, ppid, err := c.ReadMsg(buf)
			if errors.Is(err, ErrMessageTooLong) {
				return []msg{{ppid: ppid, tooLong: true}}, nil
			}
			if err != nil {
				return nil, err
			}
			return []msg{{data: string(buf[:n]), ppid: ppid}}, nil
		})
		ms := make([]Msg, 1+int(slots)%8)
		for i := range ms {
			ms[i].Buf = make([]byte, int(room)%(limit+1))
		}
		// With the top bit of slots, long messages come in the shared
		// read buffer, released once copied.
		got := read(stream, int(chunk), slots&0x80 != 0, func(c *TCPConn) ([]msg, error) {
			n, err := c.ReadBatch(ms, limit)
			var out []msg
			for _, m := range ms[:n] {
				if m.Err != nil {
					out = append(out, msg{ppid: m.PPID, tooLong: true})
					continue
				}
				out = append(out, msg{data: string(m.Buf[:m.N]), ppid: m.PPID})
				if m.Lease != nil {
					m.Lease.Release()
				}
			}
			return out, err
		})
		if len(got) != len(want) {
			t.Fatalf("ReadBatch read %d messages, ReadMsg %d", len(got), len(want))
		}
		for i := range want {
			// A message over the limit keeps its PPID only with ReadMsg.
			if got[i].tooLong != want[i].tooLong || got[i].data != want[i].data || (!want[i].tooLong && got[i].ppid != want[i].ppid) {
				t.Fatalf("message %d: ReadBatch %+v, ReadMsg %+v", i, got[i], want[i])
			}
		}
	})
}

// streamConn is a net.Conn that reads a fixed stream, at most chunk bytes
// at a time (0: all it can), and discards what is written.
type streamConn struct {
	r     *bytes.Reader
	chunk int
}

func (c *streamConn) Read(b []byte) (int, error) {
	if c.chunk > 0 && len(b) > c.chunk {
		b = b[:c.chunk]
	}
	return c.r.Read(b)
}
func (c *streamConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *streamConn) Close() error                     { return nil }
func (c *streamConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *streamConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }

func TestBatches(t *testing.T) {
	a, b := tcpPair(t, Config{MaxMessageSize: 4096})
	var _ BatchConn = a
	var out []Msg
	for i := range 12 {
		size := 10 + i
		switch i {
		case 5:
			size = 1500 // longer than the reader's buffers, within the limit
		case 6:
			size = 3000 // over the limit
		}
		out = append(out, Msg{Buf: bytes.Repeat([]byte{byte('a' + i)}, size), PPID: uint32(100 + i)})
	}
	if n, err := a.WriteBatch(out); n != len(out) || err != nil {
		t.Fatalf("WriteBatch: %d, %v", n, err)
	}
	in := make([]Msg, 4)
	for i := range in {
		in[i].Buf = make([]byte, 1000)
	}
	var got []Msg
	batches := 0
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < len(out) {
		n, err := b.ReadBatch(in, 2000)
		if err != nil {
			t.Fatalf("ReadBatch after %d messages: %v", len(got), err)
		}
		batches++
		for _, m := range in[:n] {
			m.Buf = bytes.Clone(m.Buf[:m.N])
			got = append(got, m)
		}
	}
	for i, m := range got {
		if i == 6 {
			if !errors.Is(m.Err, ErrMessageTooLong) {
				t.Errorf("message 6: err %v, want ErrMessageTooLong", m.Err)
			}
			continue
		}
		if m.Err != nil || !bytes.Equal(m.Buf, out[i].Buf) || m.PPID != out[i].PPID {
			t.Errorf("message %d: %q ppid %d err %v, want %q ppid %d", i, m.Buf, m.PPID, m.Err, out[i].Buf, out[i].PPID)
		}
	}
	// One write of 12 small frames arrives in one or two segments: the
	// reads are batched, not one per message.
	if batches > 6 {
		t.Errorf("%d batches for %d messages", batches, len(out))
	}
	a.Close()
	if n, err := b.ReadBatch(in, 2000); n != 0 || err != io.EOF {
		t.Fatalf("ReadBatch after the peer closed: %d, %v; want 0, io.EOF", n, err)
	}
}

// TestBatchedAdapter reads and writes through Batched over a Conn that has
// no batches: one message per call, a long one in a buffer of its own, one
// over the limit reported.
func TestBatchedAdapter(t *testing.T) {
	a, b := tcpPair(t, Config{MaxMessageSize: 4096})
	plain := Batched(struct{ Conn }{b})
	if _, ok := plain.(*oneAtATime); !ok {
		t.Fatalf("Batched of a plain Conn is a %T", plain)
	}
	if Batched(a) != BatchConn(a) {
		t.Fatal("Batched of a BatchConn is not itself")
	}
	out := []Msg{{Buf: []byte("short"), PPID: 1}, {Buf: bytes.Repeat([]byte{'l'}, 1500), PPID: 2}, {Buf: bytes.Repeat([]byte{'x'}, 3000), PPID: 3}}
	if n, err := a.WriteBatch(out); n != 3 || err != nil {
		t.Fatalf("WriteBatch: %d, %v", n, err)
	}
	in := make([]Msg, 4)
	for i := range in {
		in[i].Buf = make([]byte, 1000)
	}
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i, want := range out {
		n, err := plain.ReadBatch(in, 2000)
		if n != 1 || err != nil {
			t.Fatalf("ReadBatch %d: %d, %v; want one message", i, n, err)
		}
		m := in[0]
		if i == 2 {
			if !errors.Is(m.Err, ErrMessageTooLong) {
				t.Errorf("message over the limit: err %v", m.Err)
			}
			continue
		}
		if m.Err != nil || !bytes.Equal(m.Buf[:m.N], want.Buf) || m.PPID != want.PPID {
			t.Errorf("message %d: %d bytes PPID %d err %v", i, m.N, m.PPID, m.Err)
		}
	}
	if n, err := plain.WriteBatch(out[:2]); n != 2 || err != nil {
		t.Fatalf("adapter WriteBatch: %d, %v", n, err)
	}
	buf := make([]byte, 2000)
	for _, want := range out[:2] {
		a.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, ppid, err := a.ReadMsg(buf); err != nil || !bytes.Equal(buf[:n], want.Buf) || ppid != want.PPID {
			t.Fatalf("read back %d bytes PPID %d, %v", n, ppid, err)
		}
	}
}

// TestReadBatchHandsOverLongFrames: a message longer than its Buf comes in
// a buffer the caller owns: the next long message does not overwrite it.
func TestReadBatchHandsOverLongFrames(t *testing.T) {
	a, b := Pipe()
	defer a.Close()
	defer b.Close()
	msgs := [][]byte{bytes.Repeat([]byte{1}, 20<<10), bytes.Repeat([]byte{2}, 20<<10), bytes.Repeat([]byte{3}, 30<<10)}
	go func() {
		for _, m := range msgs {
			if err := a.WriteMsg(m, 7); err != nil {
				return
			}
		}
	}()
	bc := b.(BatchConn)
	var got [][]byte
	for len(got) < len(msgs) {
		ms := []Msg{{Buf: make([]byte, 512)}}
		n, err := bc.ReadBatch(ms, 1<<20)
		if err != nil || n != 1 {
			t.Fatalf("ReadBatch: %d, %v", n, err)
		}
		got = append(got, ms[0].Buf[:ms[0].N])
	}
	for i := range msgs {
		if !bytes.Equal(got[i], msgs[i]) {
			t.Errorf("message %d changed after later reads", i)
		}
	}
}

// throughConn writes through to the connection it wraps; its own Write
// counts the calls that did not look past it.
type throughConn struct {
	net.Conn
	writes int
}

func (c *throughConn) Write(b []byte) (int, error) { c.writes++; return c.Conn.Write(b) }
func (c *throughConn) WriteThrough() net.Conn      { return c.Conn }

// TestWriteThrough: frames go straight to the connection a WriteThrough
// wrapper wraps (one writev on TCP, not a write per header and payload).
func TestWriteThrough(t *testing.T) {
	a, b := net.Pipe()
	w := &throughConn{Conn: a}
	cfg := Config{HeartbeatInterval: -1}
	ca, cb := NewTCPConn(w, cfg), NewTCPConn(b, cfg)
	defer ca.Close()
	defer cb.Close()
	go ca.WriteBatch([]Msg{{Buf: []byte("one"), PPID: 1}, {Buf: []byte("two"), PPID: 2}})
	buf := make([]byte, 16)
	for i, want := range []string{"one", "two"} {
		n, ppid, err := cb.ReadMsg(buf)
		if err != nil || string(buf[:n]) != want || ppid != uint32(i+1) {
			t.Fatalf("ReadMsg = %q, %d, %v; want %q, %d", buf[:n], ppid, err, want, i+1)
		}
	}
	if w.writes != 0 {
		t.Errorf("the wrapper's Write was called %d times", w.writes)
	}
}

// countingConn counts the reads of the stream it wraps.
type countingConn struct {
	streamConn
	reads int
}

func (c *countingConn) Read(b []byte) (int, error) { c.reads++; return c.streamConn.Read(b) }

// TestReadBatchSharesReadBuffer reads streams of frames of all sizes, some
// across the read buffer's end and some longer than it, through reads of
// several sizes, with ShareReads: every message comes out whole and stays
// unchanged while its Lease is held, whatever is read after it.
func TestReadBatchSharesReadBuffer(t *testing.T) {
	sizes := []int{100, 40000, 70000, 0, 32 << 10, readBufSize, readBufSize + 1, 5, 200000, 1, 32 << 10, 32 << 10, 32 << 10, 32 << 10, 32 << 10}
	var stream []byte
	var want [][]byte
	for i, size := range sizes {
		payload := bytes.Repeat([]byte{byte(i + 1)}, size)
		if size > 2 {
			payload[0], payload[size-1] = 0xfe, 0xff
		}
		want = append(want, payload)
		stream = AppendFrameHeader(stream, FrameHeader{Type: FrameData, Length: uint32(size), Tag: uint32(i)})
		stream = append(stream, payload...)
		if i == 3 {
			stream = append(AppendFrameHeader(stream, FrameHeader{Type: FrameHeartbeat, Length: 3}), "hb!"...)
		}
	}
	for _, chunk := range []int{0, 1, 7, 1000, 65536, 100000} {
		if chunk == 1 && testing.Short() {
			continue
		}
		c := NewTCPConn(&streamConn{r: bytes.NewReader(stream), chunk: chunk}, Config{HeartbeatInterval: -1})
		c.ShareReads(true)
		ms := make([]Msg, 3)
		var got []Msg
		for {
			for i := range ms {
				ms[i] = Msg{Buf: make([]byte, 64)}
			}
			n, err := c.ReadBatch(ms, 1<<20)
			got = append(got, ms[:n]...)
			if err != nil {
				if err != io.EOF {
					t.Fatalf("chunk %d: ReadBatch: %v", chunk, err)
				}
				break
			}
		}
		if len(got) != len(want) {
			t.Fatalf("chunk %d: %d messages, want %d", chunk, len(got), len(want))
		}
		for i, m := range got {
			if !bytes.Equal(m.Buf[:m.N], want[i]) || m.PPID != uint32(i) {
				t.Errorf("chunk %d: message %d of %d bytes changed (%d bytes, PPID %d)", chunk, i, len(want[i]), m.N, m.PPID)
			}
			if shared := m.Lease != nil; shared != (len(want[i]) > 64 && len(want[i]) <= readBufSize) {
				t.Errorf("chunk %d: message %d of %d bytes: Lease %v", chunk, i, len(want[i]), shared)
			}
			if m.Lease != nil {
				m.Lease.Release()
			}
		}
	}
}

// TestReadBatchFewReads: a bulk stream of 32 KiB messages takes about one
// read system call per read buffer, not one or two per message.
func TestReadBatchFewReads(t *testing.T) {
	const frames, size = 64, 32 << 10
	var stream []byte
	for range frames {
		stream = AppendFrameHeader(stream, FrameHeader{Type: FrameData, Length: size, Tag: 1})
		stream = append(stream, make([]byte, size)...)
	}
	cc := &countingConn{streamConn: streamConn{r: bytes.NewReader(stream)}}
	c := NewTCPConn(cc, Config{HeartbeatInterval: -1})
	c.ShareReads(true)
	ms := make([]Msg, 8)
	got := 0
	for {
		n, err := c.ReadBatch(ms, 1<<20)
		for _, m := range ms[:n] {
			if m.N != size {
				t.Fatalf("message of %d bytes", m.N)
			}
			m.Lease.Release()
		}
		got += n
		if err != nil {
			break
		}
	}
	if got != frames {
		t.Fatalf("%d messages, want %d", got, frames)
	}
	if max := 2*len(stream)/readBufSize + 2; cc.reads > max {
		t.Errorf("%d reads for %d messages in %d bytes, want at most %d", cc.reads, frames, len(stream), max)
	}
}

// readCountConn counts the reads that go through it, and reads through to
// the connection it wraps (ReadThrough).
type readCountConn struct {
	net.Conn
	reads int
}

func (c *readCountConn) Read(b []byte) (int, error) { c.reads++; return c.Conn.Read(b) }
func (c *readCountConn) ReadThrough() net.Conn      { return c.Conn }

// TestReadIdleOnTheSocket: a connection waiting for its next frame waits
// on the socket under a ReadThrough wrapper and reads the frame with one
// read there; its read deadline still holds.
func TestReadIdleOnTheSocket(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("no socket to wait on without a buffer")
	}
	a, b := tcpPair(t, Config{HeartbeatInterval: -1})
	rc := &readCountConn{Conn: b.NetConn()}
	r := NewTCPConn(rc, Config{HeartbeatInterval: -1})
	buf := make([]byte, 100)
	for i := range 5 {
		done := make(chan error, 1)
		go func() { done <- a.WriteMsg([]byte("ping"), uint32(i)) }()
		r.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, ppid, err := r.ReadMsg(buf)
		if err != nil || string(buf[:n]) != "ping" || ppid != uint32(i) {
			t.Fatalf("ReadMsg = %q, %d, %v", buf[:n], ppid, err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if rc.reads != 0 {
		t.Errorf("%d reads through the wrapper, want all on the socket", rc.reads)
	}
	r.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, _, err := r.ReadMsg(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadMsg past the deadline: %v", err)
	} else if oe, ok := err.(*net.OpError); !ok || oe.Op != "read" {
		t.Fatalf("ReadMsg past the deadline: %#v, want a *net.OpError of read", err)
	}
	a.Close()
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := r.ReadMsg(buf); err != io.EOF {
		t.Fatalf("ReadMsg after the peer closed: %v, want io.EOF", err)
	}
}

// TestTryWriteBatchHoldsTheRest: TryWriteBatch never waits for the peer;
// what the socket did not take stays with the connection and goes, whole
// frames in order, before the next write, which waits for it.
func TestTryWriteBatchHoldsTheRest(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		t.Skip("no writes without waiting (writev) on " + runtime.GOOS)
	}
	a, b := tcpPair(t, Config{HeartbeatInterval: -1, MaxMessageSize: 1 << 20})
	if !a.CanTryWrite() {
		t.Fatal("a TCP connection cannot write without waiting")
	}
	var want [][]byte
	held := false
	for i := 0; !held && i < 256; i++ {
		m := bytes.Repeat([]byte{byte(i)}, 256<<10)
		m[0], m[len(m)-1] = 0xfe, 0xff
		want = append(want, m)
		done := make(chan struct{})
		var sent bool
		var err error
		go func() {
			defer close(done)
			sent, err = a.TryWriteBatch([]Msg{{Buf: m, PPID: uint32(i)}})
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("TryWriteBatch waited for the peer")
		}
		if err != nil {
			t.Fatal(err)
		}
		held = !sent
	}
	if !held {
		t.Fatal("the socket took 64 MiB the peer did not read")
	}
	after := []byte("after")
	want = append(want, after)
	done := make(chan error, 1)
	go func() {
		_, err := a.WriteBatch([]Msg{{Buf: after, PPID: uint32(len(want) - 1)}})
		done <- err
	}()
	buf := make([]byte, 1<<20)
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i, w := range want {
		n, ppid, err := b.ReadMsg(buf)
		if err != nil || !bytes.Equal(buf[:n], w) || ppid != uint32(i) {
			t.Fatalf("message %d: %d bytes, PPID %d, %v; want %d bytes", i, n, ppid, err, len(w))
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Nothing held: the next batch goes out at once.
	if sent, err := a.TryWriteBatch([]Msg{{Buf: []byte("x"), PPID: 9}}); !sent || err != nil {
		t.Fatalf("TryWriteBatch on an empty socket: %v, %v", sent, err)
	}
	if n, _, err := b.ReadMsg(buf); err != nil || string(buf[:n]) != "x" {
		t.Fatalf("ReadMsg = %q, %v", buf[:n], err)
	}
}
