package registrar

import (
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/enrp"
	"github.com/rsp-go/rsp/mapping"
)

// writeLog records, in order, the messages the registrar writes on the
// connections that share it, as "conn:type".
type writeLog struct {
	mu  sync.Mutex
	got []string
}

func (w *writeLog) add(name string, ms []mapping.Msg) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range ms {
		var typ string
		if m.PPID == mapping.PPIDENRP {
			em, _ := enrp.Unmarshal(m.Buf)
			typ = fmt.Sprintf("%T", em)
		} else {
			am, _ := asap.Unmarshal(m.Buf)
			typ = fmt.Sprintf("%T", am)
		}
		w.got = append(w.got, name+":"+typ)
	}
}

func (w *writeLog) entries() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.got)
}

// recordingConn is the registrar's end of an in-memory connection that
// logs every message written on it, when the write is made. full is for
// the ways of writing without waiting that nowConn and holdingConn add.
type recordingConn struct {
	*mapping.TCPConn
	name string
	log  *writeLog
	full atomic.Bool
}

// nowConn is recordingConn with WriteBatchNow, as an SCTP connection
// has, which takes nothing while full is set.
type nowConn struct{ *recordingConn }

func (c *recordingConn) WriteMsg(b []byte, ppid uint32) error {
	c.log.add(c.name, []mapping.Msg{{Buf: b, PPID: ppid}})
	return c.TCPConn.WriteMsg(b, ppid)
}

func (c *recordingConn) WriteBatch(ms []mapping.Msg) (int, error) {
	c.log.add(c.name, ms)
	return c.TCPConn.WriteBatch(ms)
}

func (c nowConn) WriteBatchNow(ms []mapping.Msg) (int, error) {
	if c.full.Load() {
		return 0, nil
	}
	return c.WriteBatch(ms)
}

// pipePair returns the two ends of an in-memory stream framed by the TCP
// mapping: the registrar's, recording into log as name, and the other.
func pipePair(name string, log *writeLog, port int) (*recordingConn, mapping.Conn) {
	x, y := net.Pipe()
	local := &recordingConn{TCPConn: mapping.NewTCPConn(addrConn{x, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}}, mapping.Config{}), name: name, log: log}
	return local, mapping.NewTCPConn(addrConn{y, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3863}}, mapping.Config{})
}

// fakeENRPPeer connects a peer registrar to r over an in-memory stream
// whose registrar end is rc, introduces it with a presence and returns
// the handle updates it receives.
func fakeENRPPeer(t *testing.T, r *Registrar, rc mapping.Conn, pc mapping.Conn, id asap.ServerID) <-chan *enrp.HandleUpdate {
	t.Helper()
	r.enrp.ensureRunning()
	r.enrp.run(rc, false)
	t.Cleanup(func() { pc.Close() })
	updates := make(chan *enrp.HandleUpdate, 16)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadMsg(buf)
			if err != nil {
				return
			}
			if u, ok := func() (*enrp.HandleUpdate, bool) {
				m, _ := enrp.Unmarshal(slices.Clone(buf[:n]))
				u, ok := m.(*enrp.HandleUpdate)
				return u, ok
			}(); ok {
				updates <- u
			}
		}
	}()
	b, err := (&enrp.Presence{Header: enrp.Header{Sender: id}}).AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.WriteMsg(b, mapping.PPIDENRP); err != nil {
		t.Fatal(err)
	}
	synctest.Wait()
	if !slices.Contains(r.Peers(), id) {
		t.Fatalf("registrar's peers %v, want %08x among them", r.Peers(), uint32(id))
	}
	return updates
}

// TestHandleUpdateBeforeRegistrationResponse: a registration's handle
// update is written to the peers by the goroutine that handled the
// registration, before its answer to the pool element, as rsplib sends
// it, instead of being handed to the peer connection's writer goroutine,
// which wrote it only after the answer; so is a deregistration's.
func TestHandleUpdateBeforeRegistrationResponse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := New(noKeepAlives())
		defer r.Close()
		log := &writeLog{}
		rc, pc := pipePair("enrp", log, 9901)
		updates := fakeENRPPeer(t, r, nowConn{rc}, pc, 0x0b0b0001)

		ac, ec := pipePair("asap", log, 40000)
		r.ServeConn(ac)
		c := &client{t: t, c: ec, buf: make([]byte, 65536)}
		defer ec.Close()
		for i := range 3 {
			before := len(log.entries())
			id := asap.PEID(0x100 + i)
			if resp := c.register("pool", loopbackPE(id, 7, rr)); resp.Reject {
				t.Fatalf("registration %d refused: %+v", i, resp)
			}
			synctest.Wait()
			var got []string // what the peer and the element get of it; presences may come between
			for _, e := range log.entries()[before:] {
				if e == "enrp:*enrp.HandleUpdate" || e == "asap:*asap.RegistrationResponse" {
					got = append(got, e)
				}
			}
			want := []string{"enrp:*enrp.HandleUpdate", "asap:*asap.RegistrationResponse"}
			if !slices.Equal(got, want) {
				t.Fatalf("registration %d: writes %q, want %q", i, got, want)
			}
			if u := <-updates; u.Action != enrp.AddPE || u.PE.ID != id {
				t.Fatalf("registration %d: update %+v, want AddPE of %v", i, u, id)
			}
		}
		// A deregistration's update goes out before its answer too.
		before := len(log.entries())
		c.send(&asap.Deregistration{Handle: "pool", ID: 0x100})
		if resp := expect[*asap.DeregistrationResponse](c, 5*time.Second); len(resp.Causes) != 0 {
			t.Fatalf("deregistration refused: %+v", resp)
		}
		synctest.Wait()
		var got []string
		for _, e := range log.entries()[before:] {
			if e == "enrp:*enrp.HandleUpdate" || e == "asap:*asap.DeregistrationResponse" {
				got = append(got, e)
			}
		}
		if want := []string{"enrp:*enrp.HandleUpdate", "asap:*asap.DeregistrationResponse"}; !slices.Equal(got, want) {
			t.Fatalf("deregistration: writes %q, want %q", got, want)
		}
		if u := <-updates; u.Action != enrp.DelPE || u.PE.ID != 0x100 {
			t.Fatalf("deregistration: update %+v, want DelPE of 0x100", u)
		}
	})
}

// TestHandleUpdateToFullPeer: when a peer's connection takes nothing at
// once, the registration is answered without waiting for it, and the
// connection's writer sends the update, and those queued after it, in
// order once there is room.
func TestHandleUpdateToFullPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := New(noKeepAlives())
		defer r.Close()
		log := &writeLog{}
		rc, pc := pipePair("enrp", log, 9901)
		updates := fakeENRPPeer(t, r, nowConn{rc}, pc, 0x0b0b0002)

		ac, ec := pipePair("asap", log, 40000)
		r.ServeConn(ac)
		c := &client{t: t, c: ec, buf: make([]byte, 65536)}
		defer ec.Close()
		rc.full.Store(true) // WriteBatchNow takes nothing; the writer's WriteBatch waits
		var ids []asap.PEID
		for i := range 3 {
			id := asap.PEID(0x200 + i)
			ids = append(ids, id)
			if resp := c.register("pool", loopbackPE(id, 7, rr)); resp.Reject {
				t.Fatalf("registration %d refused: %+v", i, resp)
			}
		}
		var got []asap.PEID
		timeout := time.After(time.Second)
		for len(got) < len(ids) {
			select {
			case u := <-updates:
				if u.Action == enrp.AddPE {
					got = append(got, u.PE.ID)
				}
			case <-timeout:
				t.Fatalf("updates for %v after a second, want %v", got, ids)
			}
		}
		if !slices.Equal(got, ids) {
			t.Fatalf("updates for %v, want %v in order", got, ids)
		}
	})
}

// holdingConn is recordingConn with the TCP mapping's way of writing
// without waiting instead of WriteBatchNow: while full is set,
// TryWriteBatch holds the whole batch, which goes out before anything
// else in the next WriteBatch or Flush.
type holdingConn struct {
	*recordingConn
	mu      sync.Mutex
	rest    []mapping.Msg
	flushes atomic.Int32
}

func (c *holdingConn) CanTryWrite() bool { return true }

func (c *holdingConn) TryWriteBatch(ms []mapping.Msg) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.full.Load() || len(c.rest) > 0 {
		c.rest = append(c.rest, ms...)
		return false, nil
	}
	_, err := c.recordingConn.WriteBatch(ms)
	return err == nil, err
}

func (c *holdingConn) WriteBatch(ms []mapping.Msg) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	return c.recordingConn.WriteBatch(ms)
}

func (c *holdingConn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushes.Add(1)
	return c.flushLocked()
}

func (c *holdingConn) flushLocked() error {
	if len(c.rest) == 0 {
		return nil
	}
	_, err := c.recordingConn.WriteBatch(c.rest)
	c.rest = nil
	return err
}

// TestHandleUpdateHeldByTCPMapping: over a connection that holds what
// its socket did not take (the TCP mapping's TryWriteBatch), the link's
// writer flushes the held updates, in order, without another message to
// send.
func TestHandleUpdateHeldByTCPMapping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := New(noKeepAlives())
		defer r.Close()
		log := &writeLog{}
		rc, pc := pipePair("enrp", log, 9901)
		hc := &holdingConn{recordingConn: rc}
		var _ mapping.BatchConn = hc // the link's writer writes through hc
		updates := fakeENRPPeer(t, r, hc, pc, 0x0b0b0003)

		ac, ec := pipePair("asap", log, 40000)
		r.ServeConn(ac)
		c := &client{t: t, c: ec, buf: make([]byte, 65536)}
		defer ec.Close()
		hc.full.Store(true)
		var ids []asap.PEID
		for i := range 3 {
			id := asap.PEID(0x300 + i)
			ids = append(ids, id)
			if resp := c.register("pool", loopbackPE(id, 7, rr)); resp.Reject {
				t.Fatalf("registration %d refused: %+v", i, resp)
			}
		}
		synctest.Wait()
		hc.full.Store(false)
		var got []asap.PEID
		timeout := time.After(time.Second)
		for len(got) < len(ids) {
			select {
			case u := <-updates:
				if u.Action == enrp.AddPE {
					got = append(got, u.PE.ID)
				}
			case <-timeout:
				t.Fatalf("updates for %v after a second, want %v", got, ids)
			}
		}
		if !slices.Equal(got, ids) {
			t.Fatalf("updates for %v, want %v in order", got, ids)
		}
		if hc.flushes.Load() == 0 {
			t.Error("the writer never flushed what the connection held")
		}
	})
}
