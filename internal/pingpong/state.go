package pingpong

import (
	"errors"
	"fmt"
	"io"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
)

// Server is the state a PingPong pool element keeps for one pool user:
// the number of its next reply.
type Server struct {
	replyNo uint64
}

// NewServer returns the state of a new user's element: replies count from
// 1.
func NewServer() *Server { return &Server{replyNo: 1} }

// CookieEcho takes the cookie a user that failed over echoed: the replies
// go on from its reply number. A cookie that is not the service's is an
// error, on which rsplib's element ends the association.
func (s *Server) CookieEcho(b []byte) error {
	c, err := ParseCookie(b)
	if err != nil {
		return err
	}
	s.replyNo = c.ReplyNo
	return nil
}

// Answer returns the Pong for p and the cookie to send after it, and
// counts the reply.
func (s *Server) Answer(p Ping) (Pong, Cookie) {
	pong := Pong{MessageNo: p.MessageNo, ReplyNo: s.replyNo, Data: p.Data}
	s.replyNo++
	return pong, Cookie{ReplyNo: s.replyNo}
}

// Client is the state of a PingPong pool user: the number of its next
// Ping and the last reply number seen.
type Client struct {
	next      uint64
	lastReply uint64
	// Gaps counts the Pongs whose reply number did not follow the one
	// before, as rsplib's client reports "Detected gap".
	Gaps int
}

// NextPing returns the next Ping, numbered from 1, carrying data.
func (c *Client) NextPing(data []byte) Ping {
	c.next++
	return Ping{MessageNo: c.next, Data: data}
}

// Pong takes an answer and reports whether its reply number follows the
// last one.
func (c *Client) Pong(p Pong) (inOrder bool) {
	inOrder = p.ReplyNo == c.lastReply+1
	if !inOrder {
		c.Gaps++
	}
	c.lastReply = p.ReplyNo
	return inOrder
}

// LastReplyNo is the reply number of the last Pong taken.
func (c *Client) LastReplyNo() uint64 { return c.lastReply }

// ErrBadCookieEcho ends a connection whose user echoed a cookie that is
// not the service's.
var ErrBadCookieEcho = errors.New("pingpong: bad cookie echo")

// Serve answers the PingPong pool user on c until the association ends:
// a Pong on PPID 33 for every Ping and an ASAP cookie after each. A cookie
// echo restores the reply number. A bad cookie echo or a message that is
// not a Ping ends the connection, as it does in rsplib's element. Serve
// returns nil at the end of the association, else the error; it closes c.
// c's OnControl is Serve's.
func Serve(c *mapping.ControlConn) error {
	defer c.Close()
	s := NewServer()
	var echoErr error
	c.OnControl = func(m asap.Message) {
		if e, ok := m.(*asap.CookieEcho); ok && echoErr == nil {
			echoErr = s.CookieEcho(e.Cookie)
		}
	}
	buf := make([]byte, 65536+4)
	var out []byte
	for {
		n, ppid, err := c.ReadMsg(buf)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if echoErr != nil {
			return fmt.Errorf("%w: %w", ErrBadCookieEcho, echoErr)
		}
		if ppid != PPID {
			return fmt.Errorf("pingpong: a data message with PPID %d", ppid)
		}
		p, err := ParsePing(buf[:n])
		if err != nil {
			return err
		}
		pong, cookie := s.Answer(p)
		if out, err = pong.AppendBinary(out[:0]); err != nil {
			return err
		}
		if err := c.WriteMsg(out, PPID); err != nil {
			return err
		}
		cb, _ := cookie.AppendBinary(nil)
		if err := c.WriteControl(&asap.Cookie{Cookie: cb}); err != nil {
			return err
		}
	}
}
