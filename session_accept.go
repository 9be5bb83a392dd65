package rsp

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/ulpack"
)

// prefixConn is a connection whose first bytes were read already.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// NetConn returns the underlying connection.
func (c *prefixConn) NetConn() net.Conn { return c.Conn }

// WriteThrough returns the underlying connection, which Write writes to
// unchanged (mapping.WriteThrough).
func (c *prefixConn) WriteThrough() net.Conn { return c.Conn }

// ReadThrough returns the underlying connection once the prefix is read
// (mapping.ReadThrough), nil before.
func (c *prefixConn) ReadThrough() net.Conn {
	if len(c.prefix) > 0 {
		return nil
	}
	return c.Conn
}

// CloseWrite shuts down the sending side where the connection can.
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return ErrNotSupported
}

// helloPrefix is how a session starts on the wire: the TCP mapping's data
// frame header of a HELLO, then the HELLO's own header.
func helloPrefix() []byte {
	b := mapping.AppendFrameHeader(nil, mapping.FrameHeader{Type: mapping.FrameData, Length: ulpack.HelloLen, Tag: ulpack.PPID})
	return append(b, byte(ulpack.FrameHello))
}

// sniff tells whether an accepted connection opens a session: its first
// bytes are a session HELLO. Anything else, or nothing within
// SniffTimeout, makes it a plain connection.
func (l *Listener) sniff(c net.Conn) {
	if ms, ok := c.(*msgStream); ok {
		if l.sessions {
			l.sniffSCTP(ms)
		} else {
			l.handPlain(ms)
		}
		return
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	if !l.sessions {
		l.handPlain(c)
		return
	}
	want := helloPrefix()
	got := make([]byte, 0, len(want))
	c.SetReadDeadline(time.Now().Add(l.scfg.SniffTimeout))
	match := true
	for len(got) < len(want) && match {
		n, err := c.Read(got[len(got):cap(got)])
		got = got[:len(got)+n]
		for i := len(got) - n; i < len(got); i++ {
			if got[i] != want[i] {
				match = false
			}
		}
		if err != nil {
			if n == 0 && len(got) == 0 && !isTimeout(err) {
				c.Close()
				return
			}
			match = false
		}
	}
	c.SetReadDeadline(time.Time{})
	pc := &prefixConn{Conn: c, prefix: got}
	if !match {
		l.handPlain(pc)
		return
	}
	s, err := l.openSession(mapping.NewTCPConn(pc, l.scfg.mappingConfig()), nil)
	if err != nil {
		l.log.Debug("session: refused", "remote", c.RemoteAddr(), "err", err)
		return
	}
	select {
	case l.ready <- s:
	case <-l.done:
		s.GoAway() // never served here: the pool user fails over
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// openSession reads a pool user's HELLO (unless first holds it, read
// already on the session channel) and the cookie echo it announces,
// answers it, and makes the session.
func (l *Listener) openSession(c mapping.BatchConn, first []byte) (*Session, error) {
	cfg := l.scfg
	c.SetDeadline(time.Now().Add(cfg.SniffTimeout + cfg.HeartbeatInterval))
	// A HELLO is small; a cookie echo may be up to the message limit, and
	// comes in a buffer of its own then.
	limit := cfg.MaxMessageSize + ulpack.DataLen
	readMsg := func() ([]byte, uint32, error) {
		ms := []mapping.Msg{{Buf: make([]byte, 512)}}
		n, err := c.ReadBatch(ms, limit)
		if err == nil && (n != 1 || ms[0].Err != nil) {
			err = fmt.Errorf("%w: message over the limit", ErrProtocol)
		}
		return ms[0].Buf[:ms[0].N], ms[0].PPID, err
	}
	msg, ppid := first, ulpack.PPID
	var err error
	if first == nil {
		if msg, ppid, err = readMsg(); err != nil {
			c.Close()
			return nil, err
		}
	}
	f, err := ulpack.ParseFrame(msg)
	hello, ok := f.(*ulpack.Hello)
	if err != nil || ppid != ulpack.PPID || !ok {
		b, _ := ulpack.Close{Code: ulpack.CodeProtocolError, Reason: "first frame not a HELLO"}.AppendBinary(nil)
		c.WriteMsg(b, ulpack.PPID)
		c.Close()
		return nil, fmt.Errorf("%w: session opened without HELLO: %v", ErrProtocol, err)
	}
	var echoed []byte
	if hello.Cookie {
		msg, ppid, err := readMsg()
		if err != nil {
			c.Close()
			return nil, err
		}
		m, err := asap.Unmarshal(msg)
		ce, ok := m.(*asap.CookieEcho)
		if err != nil || ppid != mapping.PPIDASAP || !ok {
			b, _ := ulpack.Close{Code: ulpack.CodeProtocolError, Reason: "HELLO announced a cookie echo, none came"}.AppendBinary(nil)
			c.WriteMsg(b, ulpack.PPID)
			c.Close()
			return nil, fmt.Errorf("%w: HELLO announced a cookie echo, none came", ErrProtocol)
		}
		echoed = ce.Cookie
	}
	next := max(hello.Next, 1)
	ack, _ := ulpack.HelloAck{Stateless: cfg.Stateless, Window: uint32(cfg.MaxUnackedMessages), ID: hello.ID, Ack: next - 1,
		MaxMessageSize: announcedMax(cfg)}.AppendBinary(nil)
	if err := c.WriteMsg(ack, ulpack.PPID); err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	self := Element{Handle: string(l.handle), PoolElement: asap.PoolElement{ID: l.ID()}}
	s := newSession(cfg, false, l.handle, hello.ID, c, self)
	s.l = l
	s.resumed = hello.Resume
	s.echoed = echoed
	s.snd.SetWindow(hello.Window)
	s.peerMax = int(hello.MaxMessageSize)
	s.rcv = ulpack.NewReceiver(cfg.receiverConfig(), next-1)
	l.opened(s)
	s.start()
	go func() {
		if card := l.businessCard(); card != nil {
			s.mu.Lock()
			s.cardTx = card
			s.mu.Unlock()
			s.wake()
		}
	}()
	return s, nil
}

// businessCard is what the listener tells its pool users: its pool and
// the other elements to fail over to, in the pool's order.
func (l *Listener) businessCard() *asap.BusinessCard {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	res, err := l.ep.Resolve(ctx, l.handle)
	if err != nil {
		return nil
	}
	card := &asap.BusinessCard{Handle: l.handle}
	for _, pe := range res.PEs {
		if pe.ID != l.ID() {
			card.PEs = append(card.PEs, pe)
		}
	}
	if len(card.PEs) == 0 {
		return nil
	}
	return card
}
