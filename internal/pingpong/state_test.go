package pingpong

import (
	"errors"
	"testing"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
)

// TestFailoverNumbering: an element answers with reply numbers from 1 and
// cookies holding the next; a second element given the last cookie goes
// on, and the client sees no gap. Without the echo it starts again at 1: a
// gap.
func TestFailoverNumbering(t *testing.T) {
	var c Client
	pe := NewServer()
	var cookie Cookie
	for i := range 3 {
		var pong Pong
		ping := c.NextPing([]byte("x"))
		if ping.MessageNo != uint64(i+1) {
			t.Fatalf("ping %d numbered %d", i, ping.MessageNo)
		}
		pong, cookie = pe.Answer(ping)
		if pong.MessageNo != ping.MessageNo || pong.ReplyNo != uint64(i+1) || cookie.ReplyNo != uint64(i+2) || string(pong.Data) != "x" {
			t.Fatalf("answer %d: %+v, cookie %+v", i, pong, cookie)
		}
		if !c.Pong(pong) {
			t.Fatalf("pong %d out of order", i)
		}
	}
	next := NewServer()
	b, _ := cookie.AppendBinary(nil)
	if err := next.CookieEcho(b); err != nil {
		t.Fatal(err)
	}
	pong, _ := next.Answer(c.NextPing(nil))
	if pong.ReplyNo != 4 || pong.MessageNo != 4 || !c.Pong(pong) || c.Gaps != 0 {
		t.Fatalf("after the echo: %+v, %d gaps", pong, c.Gaps)
	}
	fresh, _ := NewServer().Answer(c.NextPing(nil))
	if c.Pong(fresh) || c.Gaps != 1 {
		t.Fatalf("a fresh element's reply %d taken as in order (gaps %d)", fresh.ReplyNo, c.Gaps)
	}
	if err := next.CookieEcho([]byte("not a cookie")); !errors.Is(err, ErrCookie) {
		t.Errorf("bad echo: %v", err)
	}
}

// TestServe runs the element over a message connection: each Ping gets its
// Pong and then a cookie on PPID 11; an echoed cookie sets the reply
// number; a bad echo ends the connection.
func TestServe(t *testing.T) {
	pe, pu := mapping.Pipe()
	done := make(chan error, 1)
	go func() { done <- Serve(mapping.NewControlConn(pe)) }()
	c := mapping.NewControlConn(pu)
	var cl Client
	werr := make(chan error, 1)
	go func() {
		// The pipe is synchronous: the user writes while it reads.
		echo, _ := Cookie{ReplyNo: 41}.AppendBinary(nil)
		err := c.WriteControl(&asap.CookieEcho{Cookie: echo})
		for range 3 {
			b, _ := cl.NextPing([]byte("hello")).AppendBinary(nil)
			if err == nil {
				err = c.WriteMsg(b, PPID)
			}
		}
		werr <- err
	}()
	buf := make([]byte, 1000)
	for i := range 3 {
		n, ppid, err := c.ReadMsg(buf)
		if err != nil || ppid != PPID {
			t.Fatalf("read: ppid %d %v", ppid, err)
		}
		pong, err := ParsePong(buf[:n])
		if err != nil || pong.MessageNo != uint64(i+1) || pong.ReplyNo != uint64(41+i) || string(pong.Data) != "hello" {
			t.Fatalf("pong %d: %+v %v", i, pong, err)
		}
		if i > 0 {
			if ck, err := ParseCookie(c.Cookie()); err != nil || ck.ReplyNo != uint64(41+i) {
				t.Fatalf("cookie before pong %d: %+v %v", i, ck, err)
			}
		}
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	// The cookie after the last Pong, read as it is on the wire.
	n, ppid, err := pu.ReadMsg(buf)
	if m, uerr := asap.Unmarshal(buf[:n]); err != nil || ppid != mapping.PPIDASAP || uerr != nil {
		t.Fatalf("after the last pong: ppid %d %v %v", ppid, err, uerr)
	} else if ck, err := ParseCookie(m.(*asap.Cookie).Cookie); err != nil || ck.ReplyNo != 44 {
		t.Fatalf("last cookie: %+v %v", ck, err)
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("Serve at the end of the association: %v", err)
	}

	pe, pu = mapping.Pipe()
	go func() { done <- Serve(mapping.NewControlConn(pe)) }()
	c = mapping.NewControlConn(pu)
	go func() {
		c.WriteControl(&asap.CookieEcho{Cookie: []byte("forged")})
		b, _ := (&Ping{MessageNo: 1}).AppendBinary(nil)
		c.WriteMsg(b, PPID)
	}()
	if err := <-done; !errors.Is(err, ErrBadCookieEcho) {
		t.Fatalf("Serve after a bad echo: %v, want ErrBadCookieEcho", err)
	}
	if _, _, err := c.ReadMsg(buf); err == nil {
		t.Fatal("the connection is still open after a bad echo")
	}
}
