package mapping

import (
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/rsp-go/rsp/asap"
)

// ErrNotControl is returned by ControlConn.WriteControl for an ASAP message
// that is not one of the control channel's (cookie, cookie echo, business
// card).
var ErrNotControl = errors.New("mapping: not an ASAP control channel message")

// ControlConn is a connection between a pool user and a pool element that
// carries data and, on PPID 11 (PPIDASAP), the ASAP control channel of RFC
// 5352 §3.8–3.9: ASAP_COOKIE from the element, ASAP_COOKIE_ECHO from a user
// that failed over to it, ASAP_BUSINESS_CARD either way. It works over any
// Conn: over SCTP the control messages share the association with the
// data; over the TCP mapping they travel on its channel tag 11.
//
// ReadMsg and ReadMsgInfo return data messages only. The control messages
// read on the way are taken out of the data: the latest cookie, cookie echo
// and business card are kept (a pool user keeps only the latest cookie and
// echoes it unchanged after failover), and OnControl, if set, sees each.
// ASAP messages of other types and undecodable ones on PPID 11 are dropped.
// A control message longer than the buffer given to the read is dropped too
// (the read then goes on with the next message), so give room for the
// largest cookie expected.
type ControlConn struct {
	Conn
	// OnControl, if set before the first read, is called by the reader
	// with each control message read: an *asap.Cookie, *asap.CookieEcho
	// or *asap.BusinessCard, the callee's to keep (it does not share
	// memory with the read's buffer).
	OnControl func(asap.Message)

	mu     sync.Mutex
	cookie []byte
	echo   []byte
	card   *asap.BusinessCard
}

// NewControlConn returns a ControlConn over c.
func NewControlConn(c Conn) *ControlConn { return &ControlConn{Conn: c} }

// ReadMsg reads the next data message, handling the control messages
// before it.
func (c *ControlConn) ReadMsg(b []byte) (int, uint32, error) {
	n, info, err := c.ReadMsgInfo(b)
	return n, info.PPID, err
}

// ReadMsgInfo is ReadMsg with the data message's stream and ordering where
// the transport has them.
func (c *ControlConn) ReadMsgInfo(b []byte) (int, MsgInfo, error) {
	for {
		n, info, err := ReadMsgInfo(c.Conn, b)
		if info.PPID != PPIDASAP {
			return n, info, err
		}
		if err != nil {
			if errors.Is(err, ErrMessageTooLong) {
				continue
			}
			return n, info, err
		}
		c.take(b[:n])
	}
}

// take keeps what a control message carries.
func (c *ControlConn) take(b []byte) {
	m, err := asap.Unmarshal(b)
	if err != nil {
		return
	}
	c.mu.Lock()
	// The decoded cookies alias b, the reader's buffer, which the next
	// read overwrites: what is kept, and what OnControl is given, is a
	// copy.
	switch m := m.(type) {
	case *asap.Cookie:
		m.Cookie = append([]byte(nil), m.Cookie...)
		c.cookie = m.Cookie
	case *asap.CookieEcho:
		m.Cookie = append([]byte(nil), m.Cookie...)
		c.echo = m.Cookie
	case *asap.BusinessCard:
		c.card = m
	default:
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	if c.OnControl != nil {
		c.OnControl(m)
	}
}

// WriteMsgInfo sends a data message with info, as the package's
// WriteMsgInfo does on the underlying connection. A data message must not
// use PPID 11.
func (c *ControlConn) WriteMsgInfo(b []byte, info MsgInfo) error {
	return WriteMsgInfo(c.Conn, b, info)
}

// WriteControl sends a control message on PPID 11: an asap.Cookie, an
// asap.CookieEcho or an asap.BusinessCard (or a pointer to one). Any other message fails with
// ErrNotControl, so that only RFC 5352's control messages go on the
// channel.
func (c *ControlConn) WriteControl(m asap.Message) error {
	switch m.(type) {
	case *asap.Cookie, *asap.CookieEcho, *asap.BusinessCard, asap.Cookie, asap.CookieEcho, asap.BusinessCard:
	default:
		return &net.OpError{Op: "write", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(),
			Err: fmt.Errorf("%w: %T", ErrNotControl, m)}
	}
	b, err := m.AppendBinary(nil)
	if err != nil {
		return &net.OpError{Op: "write", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	return c.Conn.WriteMsg(b, PPIDASAP)
}

// Cookie returns the latest ASAP cookie the peer (a pool element) sent, or
// nil.
func (c *ControlConn) Cookie() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cookie
}

// CookieEcho returns the cookie the peer (a pool user that failed over to
// this pool element) echoed, or nil.
func (c *ControlConn) CookieEcho() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.echo
}

// BusinessCard returns the latest business card the peer sent, or nil.
func (c *ControlConn) BusinessCard() *asap.BusinessCard {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.card
}
