package registrar

import (
	"encoding/binary"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
)

// syncHandle names a pool no test registers: a handle resolution for it is
// always answered, so it marks how far the registrar has read.
const syncHandle asap.PoolHandle = "sync.marker"

// sync sends a handle resolution for syncHandle and returns the messages
// that arrived before its answer. The registrar handles a connection's
// messages in order and answers them in order, so everything sent before
// has been acted on when sync returns.
func (c *client) sync() []asap.Message {
	c.t.Helper()
	c.send(&asap.HandleResolution{Handle: syncHandle})
	var before []asap.Message
	for range 10000 {
		m := c.recvOwned(5 * time.Second)
		if hr, ok := m.(*asap.HandleResolutionResponse); ok && hr.Handle == syncHandle {
			return before
		}
		before = append(before, m)
	}
	c.t.Fatal("no answer to the marker resolution among 10000 messages")
	return nil
}

// recvOwned is recv for a message kept after the next one arrives: it
// decodes a copy of the buffer, which the message's fields may point into.
func (c *client) recvOwned(timeout time.Duration) asap.Message {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(timeout))
	n, _, err := c.c.ReadMsg(c.buf)
	if err != nil {
		c.t.Fatalf("receiving: %v", err)
	}
	m, err := asap.Unmarshal(slices.Clone(c.buf[:n]))
	if err != nil {
		c.t.Fatalf("decoding %x: %v", c.buf[:n], err)
	}
	return m
}

// expectSilence fails the test if anything but the answer to a marker
// resolution arrives: whatever was sent before drew no answer.
func (c *client) expectSilence(what string) {
	c.t.Helper()
	if got := c.sync(); len(got) != 0 {
		c.t.Fatalf("%s: got %d messages (first %T %+v), want none", what, len(got), got[0], got[0])
	}
}

// expectClosed reads until the connection ends and fails the test if it is
// still open after timeout.
func (c *client) expectClosed(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c.c.SetReadDeadline(deadline)
		_, _, err := c.c.ReadMsg(c.buf)
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.t.Fatalf("connection still open after %v", timeout)
		}
		return
	}
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ids returns the sorted identifiers of a pool's elements (none when the
// pool does not exist).
func ids(r *Registrar, h asap.PoolHandle) []asap.PEID {
	p, _ := r.Pool(h)
	var s []asap.PEID
	for _, e := range p.Elements {
		s = append(s, e.ID)
	}
	slices.Sort(s)
	return s
}

// element returns one element of a pool.
func element(r *Registrar, h asap.PoolHandle, id asap.PEID) (asap.PoolElement, bool) {
	p, _ := r.Pool(h)
	for _, e := range p.Elements {
		if e.ID == id {
			return e, true
		}
	}
	return asap.PoolElement{}, false
}

// connCount returns how many peer connections the registrar serves.
func connCount(r *Registrar) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// encode returns m's wire form.
func encode(t *testing.T, m asap.Message) []byte {
	t.Helper()
	b, err := m.AppendBinary(nil)
	if err != nil {
		t.Fatalf("encoding %T: %v", m, err)
	}
	return b
}

// appendParam appends a parameter of type typ with value v (padded) to
// message b and sets b's length to cover it without its padding.
func appendParam(b []byte, typ asap.ParamType, v []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0) // the padding before it, now inside the message
	}
	b = binary.BigEndian.AppendUint16(b, uint16(typ))
	b = binary.BigEndian.AppendUint16(b, uint16(4+len(v)))
	b = append(b, v...)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return append(b, make([]byte, (4-len(v)%4)%4)...)
}

// param returns one parameter's wire form without padding.
func param(typ asap.ParamType, v []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(typ))
	b = binary.BigEndian.AppendUint16(b, uint16(4+len(v)))
	return append(b, v...)
}
