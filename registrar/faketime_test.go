package registrar

import (
	"net"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
)

// addrConn is one end of an in-memory stream that claims a loopback TCP
// peer address, so that the registrar takes it for a TCP connection.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// pipeClient connects a client to r over an in-memory stream framed by the
// TCP mapping with its default heartbeats, on both ends: the registrar's
// end serves as a TCP connection from 127.0.0.1:port. For tests on fake
// time (testing/synctest), where loopback sockets cannot be used.
func pipeClient(t *testing.T, r *Registrar, port int) *client {
	t.Helper()
	x, y := net.Pipe()
	r.ServeConn(mapping.NewTCPConn(addrConn{x, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}}, mapping.Config{}))
	c := mapping.NewTCPConn(addrConn{y, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3863}}, mapping.Config{})
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, buf: make([]byte, 65536)}
}

// answerKeepAlives reads c's messages in a goroutine until the connection
// ends, as an endpoint's reader does (which also answers the mapping's
// heartbeats): it answers keep-alives, counts every message by type and
// passes on those that are not keep-alives. The second channel yields the
// counts and the error that ended the connection.
func answerKeepAlives(c *client) (<-chan asap.Message, <-chan peResult) {
	res := make(chan peResult, 1)
	msgs := make(chan asap.Message, 16)
	go func() {
		counts := map[asap.MessageType]int{}
		buf := make([]byte, 65536)
		for {
			c.c.SetReadDeadline(time.Time{})
			n, _, err := c.c.ReadMsg(buf)
			if err != nil {
				res <- peResult{counts, err}
				return
			}
			m, err := asap.Unmarshal(slices.Clone(buf[:n]))
			if err != nil {
				continue
			}
			counts[m.Type()]++
			ka, ok := m.(*asap.EndpointKeepAlive)
			if !ok {
				select {
				case msgs <- m:
				default:
				}
				continue
			}
			{
				b, _ := (&asap.EndpointKeepAliveAck{Handle: ka.Handle, ID: ka.ID}).AppendBinary(nil)
				if err := c.c.WriteMsg(b, mapping.PPIDASAP); err != nil {
					res <- peResult{counts, err}
					return
				}
			}
		}
	}()
	return msgs, res
}

type peResult struct {
	counts map[asap.MessageType]int
	err    error
}

// A pool element over TCP with a keep-alive interval of 30 s, longer than
// the registrar's write timeout and the mapping's heartbeat interval, stays
// registered for ten minutes, on one connection and one registration; an
// idle pool user's connection lasts as long.
func TestLongKeepAliveIntervalOverTCP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := New(Config{KeepAliveInterval: 30 * time.Second, MaxRegistrationLife: time.Hour})
		defer r.Close()
		pe := pipeClient(t, r, 5001)
		pu := pipeClient(t, r, 5002)
		pel := loopbackPE(0x30, 7, rr)
		pel.Life = time.Hour
		if resp := pe.register("echo", pel); resp.Reject {
			t.Fatalf("registration refused: %+v", resp)
		}
		_, peDone := answerKeepAlives(pe)
		puMsgs, puDone := answerKeepAlives(pu)
		resolve := func(when string) {
			t.Helper()
			pu.send(&asap.HandleResolution{Handle: "echo"})
			select {
			case m := <-puMsgs:
				if hr, ok := m.(*asap.HandleResolutionResponse); !ok || len(hr.PEs) != 1 {
					t.Fatalf("%s: got %T %+v, want a resolution with one element", when, m, m)
				}
			case res := <-puDone:
				t.Fatalf("%s: pool user's connection ended: %v", when, res.err)
			}
		}
		resolve("first resolution")

		time.Sleep(10 * time.Minute)

		if got := ids(r, "echo"); len(got) != 1 || got[0] != 0x30 {
			t.Fatalf("after ten minutes pool echo holds %v, want [0x30]", got)
		}
		select {
		case res := <-peDone:
			t.Fatalf("pool element's connection ended: %v (%v)", res.err, res.counts)
		default:
		}
		// The pool user's connection, idle for ten minutes, still
		// answers.
		resolve("resolution after ten idle minutes")
		pe.c.Close()
		res := <-peDone
		// About 20 keep-alives in ten minutes, all on the first
		// connection, and no expiry notice.
		if n := res.counts[asap.TypeEndpointKeepAlive]; n < 15 || n > 27 {
			t.Fatalf("%d keep-alives in ten minutes at a 30 s interval (±25 %%)", n)
		}
		if n := res.counts[asap.TypeDeregistrationResponse]; n != 0 {
			t.Fatalf("%d deregistration notices", n)
		}
	})
}

// On fake time at the default intervals: the keep-alive schedule keeps the
// elements that answer, each probed at 5 s ± 25 %, and removes those that
// do not within the keep-alive timeout.
func TestKeepAliveScheduleDefaultIntervals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := New(Config{})
		defer r.Close()
		pe := pipeClient(t, r, 5003)
		const n = 200
		for id := range asap.PEID(n) {
			el := loopbackPE(id+1, 7, rr)
			el.Life = time.Hour
			if resp := pe.register("many", el); resp.Reject {
				t.Fatalf("registration %d refused: %+v", id+1, resp)
			}
		}
		// Answer the keep-alives of the even identifiers only.
		kas := make(map[asap.PEID]int)
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 65536)
			pe.c.SetReadDeadline(time.Time{})
			for {
				k, _, err := pe.c.ReadMsg(buf)
				if err != nil {
					return
				}
				m, err := asap.Unmarshal(buf[:k])
				ka, ok := m.(*asap.EndpointKeepAlive)
				if err != nil || !ok {
					continue
				}
				kas[ka.ID]++
				if ka.ID%2 == 0 {
					b, _ := (&asap.EndpointKeepAliveAck{Handle: ka.Handle, ID: ka.ID}).AppendBinary(nil)
					if pe.c.WriteMsg(b, mapping.PPIDASAP) != nil {
						return
					}
				}
			}
		}()
		// The first keep-alives go out within 5 s ± 25 %; the silent
		// elements are removed 5 s later.
		time.Sleep(DefaultKeepAliveInterval*5/4 + DefaultKeepAliveTimeout + clockGranularity)
		got := ids(r, "many")
		for _, id := range got {
			if id%2 != 0 {
				t.Fatalf("element %d, which does not answer, is still there", id)
			}
		}
		if len(got) != n/2 {
			t.Fatalf("%d elements left, want the %d that answer", len(got), n/2)
		}
		time.Sleep(time.Minute)
		if got := len(ids(r, "many")); got != n/2 {
			t.Fatalf("%d elements left after another minute, want %d", got, n/2)
		}
		pe.c.Close()
		<-done
		// About 71 s at 5 s ± 25 %: 11 to 19 keep-alives each.
		for id := asap.PEID(2); id <= n; id += 2 {
			if c := kas[id]; c < 11 || c > 19 {
				t.Fatalf("element %d got %d keep-alives in about 71 s", id, c)
			}
		}
	})
}

// A connection whose writer falls behind (here its peer stops reading for
// a while, as a loaded load generator or a registrar busy registering
// does) while many of its elements come due fills its send queue: the
// keep-alives that find it full wait and are sent later, and neither the
// connection nor any of its elements is lost; each waits once, until the
// writer has made room. A peer that never reads is still dropped, by the
// write timeout.
func TestKeepAlivesWaitForFullSendQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := New(Config{KeepAliveInterval: time.Second, SendQueue: 4})
		defer r.Close()
		slow := pipeClient(t, r, 5004)
		deaf := pipeClient(t, r, 5005)
		const n = 50
		for id := range asap.PEID(n) {
			for i, c := range []*client{slow, deaf} {
				el := loopbackPE(id+1+asap.PEID(i)*n, 7, rr)
				el.Life = time.Hour
				if resp := c.register("busy", el); resp.Reject {
					t.Fatalf("registration %d refused: %+v", id+1, resp)
				}
			}
		}
		// Every element comes due within 1.25 s; the slow peer reads
		// nothing for 3 s, the deaf one never again.
		time.Sleep(3 * time.Second)
		// Each element's keep-alive waits once, off the schedule, until
		// the writer has made room: not tried again and again.
		if d := r.KeepAlivesDeferred(); d == 0 || d > 2*n {
			t.Fatalf("keep-alives waited for a full send queue %d times in a 3 s stall of %d elements", d, 2*n)
		}
		_, slowDone := answerKeepAlives(slow)
		time.Sleep(DefaultWriteTimeout*3 + DefaultKeepAliveTimeout)
		select {
		case res := <-slowDone:
			t.Fatalf("the slow peer's connection ended: %v (%v)", res.err, res.counts)
		default:
		}
		got := ids(r, "busy")
		if len(got) != n {
			t.Fatalf("pool holds %d elements, want the slow peer's %d: %v", len(got), n, got)
		}
		for _, id := range got {
			if id > n {
				t.Fatalf("element %d of the peer that never reads is still registered", id)
			}
		}
		slow.c.Close()
		res := <-slowDone
		// About 15 s at 1 s ± 25 %, the first 3 s stalled: every element
		// got keep-alives after the stall.
		if k := res.counts[asap.TypeEndpointKeepAlive]; k < 8*n {
			t.Fatalf("%d keep-alives to %d elements in about 15 s", k, n)
		}
	})
}

// A peer that answers every keep-alive, in order, but more slowly than
// they come (a loaded pool element, or a multiplexer of many elements
// whose process is starved), so that its keep-alives wait longer than
// KeepAliveTimeout in the send queue and its buffers before it reads
// them, keeps all its elements: the registrar sees it answer, late, the
// keep-alives sent before the overdue one, and gives that one more time
// (counted by KeepAliveTimeoutsExtended) instead of removing it. An
// element such a peer skips is still removed: the peer answered a
// keep-alive sent after it.
func TestSlowPeerKeepsItsElements(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := New(Config{KeepAliveInterval: time.Second})
		defer r.Close()
		slow := pipeClient(t, r, 5008)
		const n = 300
		for id := range asap.PEID(n) {
			el := loopbackPE(id+1, 7, rr)
			el.Life = time.Hour
			if resp := slow.register("slow", el); resp.Reject {
				t.Fatalf("registration %d refused: %+v", id+1, resp)
			}
		}
		// 300 keep-alives a second come due; the peer reads them at
		// once into a backlog of its own and answers 25 a second, in
		// order, all but those of element 7.
		backlog := make(chan *asap.EndpointKeepAlive, 1<<16)
		go func() {
			defer close(backlog)
			buf := make([]byte, 65536)
			slow.c.SetReadDeadline(time.Time{})
			for {
				k, _, err := slow.c.ReadMsg(buf)
				if err != nil {
					return
				}
				m, err := asap.Unmarshal(slices.Clone(buf[:k]))
				if ka, ok := m.(*asap.EndpointKeepAlive); ok && err == nil {
					backlog <- ka
				}
			}
		}()
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				case <-time.After(40 * time.Millisecond):
				}
				var ka *asap.EndpointKeepAlive
				select {
				case ka = <-backlog:
				case <-stop:
					return
				}
				if ka == nil {
					return
				}
				if ka.ID == 7 {
					continue
				}
				b, _ := (&asap.EndpointKeepAliveAck{Handle: ka.Handle, ID: ka.ID}).AppendBinary(nil)
				if slow.c.WriteMsg(b, mapping.PPIDASAP) != nil {
					return
				}
			}
		}()
		time.Sleep(40 * time.Second)
		close(stop)
		<-done
		got := ids(r, "slow")
		if len(got) != n-1 || slices.Contains(got, 7) {
			t.Errorf("after 40 s the slow peer keeps %d of its %d elements (element 7 kept: %v), want all but element 7", len(got), n, slices.Contains(got, 7))
		}
		if r.KeepAliveTimeoutsExtended() == 0 {
			t.Error("no keep-alive timeout was extended")
		}
	})
}
