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

	"github.com/google/go-cmp/cmp"
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

// updateTest is a registrar with one fake peer registrar, whose end of
// the ENRP link is wrap(rc), and one pool element, both recording what
// the registrar writes into log.
type updateTest struct {
	log     *writeLog
	rc      *recordingConn
	updates <-chan *enrp.HandleUpdate
	pe      *client
}

func newUpdateTest(t *testing.T, peer asap.ServerID, wrap func(*recordingConn) mapping.Conn) *updateTest {
	t.Helper()
	r := New(noKeepAlives())
	t.Cleanup(func() { r.Close() })
	log := &writeLog{}
	rc, pc := pipePair("enrp", log, 9901)
	updates := fakeENRPPeer(t, r, wrap(rc), pc, peer)
	ac, ec := pipePair("asap", log, 40000)
	r.ServeConn(ac)
	t.Cleanup(func() { ec.Close() })
	return &updateTest{log: log, rc: rc, updates: updates, pe: &client{t: t, c: ec, buf: make([]byte, 65536)}}
}

// register registers n elements from first on, and returns their ids.
func (u *updateTest) register(first asap.PEID, n int) []asap.PEID {
	u.pe.t.Helper()
	var ids []asap.PEID
	for i := range n {
		id := first + asap.PEID(i)
		ids = append(ids, id)
		if resp := u.pe.register("pool", loopbackPE(id, 7, rr)); resp.Reject {
			u.pe.t.Fatalf("registration of %v refused: %+v", id, resp)
		}
	}
	return ids
}

// writes returns the log's entries from before on that are among kinds.
func (u *updateTest) writes(before int, kinds ...string) []string {
	var got []string
	for _, e := range u.log.entries()[before:] {
		if slices.Contains(kinds, e) {
			got = append(got, e)
		}
	}
	return got
}

// awaitAdds waits a second at most for the peer's AddPE updates and
// checks that they name ids, in order.
func (u *updateTest) awaitAdds(t *testing.T, ids []asap.PEID) {
	t.Helper()
	var got []asap.PEID
	timeout := time.After(time.Second)
	for len(got) < len(ids) {
		select {
		case m := <-u.updates:
			if m.Action == enrp.AddPE {
				got = append(got, m.PE.ID)
			}
		case <-timeout:
			t.Fatalf("updates for %v after a second, want %v", got, ids)
		}
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("updates for %v, want %v in order", got, ids)
	}
}

func asNowConn(rc *recordingConn) mapping.Conn { return nowConn{rc} }

// TestHandleUpdateBeforeRegistrationResponse: a registration's handle
// update is written to the peers by the goroutine that handled the
// registration, before its answer to the pool element, as rsplib sends
// it, instead of being handed to the peer connection's writer goroutine,
// which wrote it only after the answer; so is a deregistration's.
func TestHandleUpdateBeforeRegistrationResponse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		u := newUpdateTest(t, 0x0b0b0001, asNowConn)
		for i := range 3 {
			before := len(u.log.entries())
			id := asap.PEID(0x100 + i)
			u.register(id, 1)
			synctest.Wait()
			// What the peer and the element get of it; presences may come between.
			got := u.writes(before, "enrp:*enrp.HandleUpdate", "asap:*asap.RegistrationResponse")
			want := []string{"enrp:*enrp.HandleUpdate", "asap:*asap.RegistrationResponse"}
			if !slices.Equal(got, want) {
				t.Fatalf("registration %d: writes %q, want %q", i, got, want)
			}
			if m := <-u.updates; m.Action != enrp.AddPE || m.PE.ID != id {
				t.Fatalf("registration %d: update %+v, want AddPE of %v", i, m, id)
			}
		}
		// A deregistration's update goes out before its answer too.
		before := len(u.log.entries())
		u.pe.send(&asap.Deregistration{Handle: "pool", ID: 0x100})
		if resp := expect[*asap.DeregistrationResponse](u.pe, 5*time.Second); len(resp.Causes) != 0 {
			t.Fatalf("deregistration refused: %+v", resp)
		}
		synctest.Wait()
		got := u.writes(before, "enrp:*enrp.HandleUpdate", "asap:*asap.DeregistrationResponse")
		if want := []string{"enrp:*enrp.HandleUpdate", "asap:*asap.DeregistrationResponse"}; !slices.Equal(got, want) {
			t.Fatalf("deregistration: writes %q, want %q", got, want)
		}
		if m := <-u.updates; m.Action != enrp.DelPE || m.PE.ID != 0x100 {
			t.Fatalf("deregistration: update %+v, want DelPE of 0x100", m)
		}
	})
}

// TestHandleUpdateToFullPeer: when a peer's connection takes nothing at
// once, the registration is answered without waiting for it, and the
// connection's writer sends the update, and those queued after it, in
// order once there is room.
func TestHandleUpdateToFullPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		u := newUpdateTest(t, 0x0b0b0002, asNowConn)
		u.rc.full.Store(true) // WriteBatchNow takes nothing; the writer's WriteBatch waits
		ids := u.register(0x200, 3)
		u.awaitAdds(t, ids)
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
		var hc *holdingConn
		u := newUpdateTest(t, 0x0b0b0003, func(rc *recordingConn) mapping.Conn {
			hc = &holdingConn{recordingConn: rc}
			var _ mapping.BatchConn = hc // the link's writer writes through hc
			return hc
		})
		hc.full.Store(true)
		ids := u.register(0x300, 3)
		synctest.Wait()
		hc.full.Store(false)
		u.awaitAdds(t, ids)
		if hc.flushes.Load() == 0 {
			t.Error("the writer never flushed what the connection held")
		}
	})
}

// TestHandleUpdateBeforeExpiry: when an element's registration life runs
// out, the peers' update is written before the element is told, as for
// a deregistration, by the goroutine that expired it.
func TestHandleUpdateBeforeExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		u := newUpdateTest(t, 0x0b0b0004, asNowConn)
		// Lives of a second, shorter than the fake peer, which
		// answers nothing, is heard of.
		ids := []asap.PEID{0x400, 0x401, 0x402}
		for _, id := range ids {
			pe := loopbackPE(id, 7, rr)
			pe.Life = time.Second
			if resp := u.pe.register("pool", pe); resp.Reject {
				t.Fatalf("registration of %v refused: %+v", id, resp)
			}
		}
		u.awaitAdds(t, ids)
		before := len(u.log.entries())
		time.Sleep(time.Second + 2*expiryCheckInterval)
		synctest.Wait()
		got := u.writes(before, "enrp:*enrp.HandleUpdate", "asap:*asap.DeregistrationResponse")
		want := []string{"enrp:*enrp.HandleUpdate", "enrp:*enrp.HandleUpdate", "enrp:*enrp.HandleUpdate",
			"asap:*asap.DeregistrationResponse", "asap:*asap.DeregistrationResponse", "asap:*asap.DeregistrationResponse"}
		if !slices.Equal(got, want) {
			t.Fatalf("expiry: writes %q, want %q", got, want)
		}
		var dels []asap.PEID
		for range ids {
			if m := <-u.updates; m.Action == enrp.DelPE {
				dels = append(dels, m.PE.ID)
			}
		}
		slices.Sort(dels)
		if d := cmp.Diff(ids, dels); d != "" {
			t.Fatalf("DelPE updates (-want +got):\n%s", d)
		}
	})
}
