package rsp

import (
	"context"
	"net"
	"sync"
	"sync/atomic"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/internal/sctp"
	"github.com/rsp-go/rsp/mapping"
)

// sctpConn is a connection to or from a pool element over SCTP. Data
// travels as messages with a data PPID; ASAP control messages (PPID 11:
// cookies, business cards) are taken out of the data and kept. Writes carry
// the PPID of the last data message read, or PPID 0, so that replies match
// requests.
type sctpConn struct {
	*sctp.Conn
	ppid atomic.Uint32

	mu     sync.Mutex
	cookie []byte
	card   *asap.BusinessCard
}

// Read reads the data of the next data message.
func (c *sctpConn) Read(b []byte) (int, error) {
	for {
		n, info, err := c.Conn.ReadMsg(b)
		if err != nil {
			return n, err
		}
		if info.PPID == mapping.PPIDASAP {
			c.control(b[:n])
			continue
		}
		c.ppid.Store(info.PPID)
		return n, nil
	}
}

// control keeps what a pool element's control message carries.
func (c *sctpConn) control(b []byte) {
	m, _ := asap.Unmarshal(b)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch m := m.(type) {
	case *asap.Cookie:
		c.cookie = append([]byte(nil), m.Cookie...)
	case *asap.BusinessCard:
		c.card = m
	}
}

// Write sends b as one data message.
func (c *sctpConn) Write(b []byte) (int, error) {
	if err := c.Conn.WriteMsg(b, sctp.SndInfo{PPID: c.ppid.Load()}); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Cookie returns the last ASAP cookie the pool element sent, or nil.
func (c *sctpConn) Cookie() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cookie
}

// dialSCTP connects to an SCTP pool element.
func dialSCTP(ctx context.Context, t asap.Transport) (net.Conn, error) {
	c, err := sctp.Dial(ctx, "sctp", &sctp.Addr{IPs: t.Addrs, Port: int(t.Port)}, nil)
	if err != nil {
		return nil, err
	}
	return &sctpConn{Conn: c}, nil
}

// sctpListener is a net.Listener over an SCTP listening socket.
type sctpListener struct {
	l *sctp.Listener
}

func listenSCTP(local string) (*sctpListener, error) {
	laddr, err := sctp.ResolveAddr("sctp", local)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: "sctp", Err: err}
	}
	l, err := sctp.Listen("sctp", laddr)
	if err != nil {
		return nil, err
	}
	return &sctpListener{l}, nil
}

func (l *sctpListener) Accept() (net.Conn, error) {
	c, err := l.l.Accept()
	if err != nil {
		return nil, err
	}
	return &sctpConn{Conn: c}, nil
}

func (l *sctpListener) Close() error   { return l.l.Close() }
func (l *sctpListener) Addr() net.Addr { return l.l.Addr() }
