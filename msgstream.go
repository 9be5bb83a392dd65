package rsp

import (
	"sync"
	"sync/atomic"

	"github.com/rsp-go/rsp/mapping"
)

// msgStream is a plain connection over a message connection (SCTP): Read
// returns the bytes of data messages in order, Write sends each buffer as
// one data message with the PPID of the last data message read (PPID 0
// before), so that replies match requests. ASAP control messages (PPID 11:
// an element's cookies and business cards) are kept out of the data.
type msgStream struct {
	mapping.Conn
	ppid atomic.Uint32

	rmu  sync.Mutex
	rbuf []byte
	rest []byte // unread part of the last data message
}

func newMsgStream(c mapping.Conn) *msgStream { return &msgStream{Conn: c} }

// Read reads data, a message at a time.
func (c *msgStream) Read(b []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.rest) == 0 {
		if c.rbuf == nil {
			c.rbuf = make([]byte, 64<<10)
		}
		n, ppid, err := c.Conn.ReadMsg(c.rbuf)
		if err != nil {
			return 0, err
		}
		if ppid == mapping.PPIDASAP {
			continue
		}
		c.ppid.Store(ppid)
		c.rest = c.rbuf[:n]
	}
	n := copy(b, c.rest)
	c.rest = c.rest[n:]
	return n, nil
}

// Write sends b as one data message.
func (c *msgStream) Write(b []byte) (int, error) {
	if err := c.Conn.WriteMsg(b, c.ppid.Load()); err != nil {
		return 0, err
	}
	return len(b), nil
}
