package rsp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
)

// ASAPConn is a connection over SCTP to a pool element that speaks RFC
// 5352's control channel but not rsp's sessions: rsplib's elements in
// enhanced mode. It is a net.Conn whose Write sends one message and whose
// Read reads the bytes of the data messages in order; ASAP control
// messages (PPID 11) are kept out of the data: the element's latest
// cookie ([ASAPConn.Cookie]) and business card.
//
// When its association fails, the next Read or Write fails over as
// rsplib's pool users do: it reports the element unreachable, connects to
// another (the business card's order first, then a fresh resolution, never
// one that failed), sends it the latest cookie (ASAP_COOKIE_ECHO) before
// anything else, and goes on there; a Write that could not be sent is sent
// to the new element. Nothing else is replayed: what was sent to the old
// element and not answered is lost, as with rsplib (an element's messages
// carry no acknowledgements). What the old element sent before it failed
// and was not yet read (a failed Write finds it so) is read first: its
// data messages come before the new element's, and its last cookie is the
// one echoed. An element that stops answering without
// closing is not noticed by the kernel's SCTP heartbeats; the application
// that times out calls [ASAPConn.Failover], as rsplib's rsp_forcefailover.
// Toward the element only the application's data and RFC 5352 messages go.
type ASAPConn struct {
	d      *Dialer
	handle asap.PoolHandle

	rmu  sync.Mutex // one reader
	rbuf []byte
	rest []byte
	// early holds the data messages a failover found unread on the
	// failed association, for Read before anything of the next one.
	early []earlyMsg

	mu        sync.Mutex
	c         *mapping.ControlConn
	pe        asap.PoolElement
	failed    []asap.PEID
	cookie    []byte
	card      *asap.BusinessCard
	ppid      uint32
	failovers int
	closed    bool
	rdl, wdl  time.Time // the deadlines, for every association in turn
}

// earlyMsg is a data message read from a failed association.
type earlyMsg struct {
	b    []byte
	ppid uint32
}

// drainWait bounds how long a failover reads what is left on the failed
// association: a dead association's queued messages come at once, a
// stopped element's association holds nothing more.
const drainWait = 50 * time.Millisecond

// errNoFailover: no element took the connection over.
var errNoFailover = errors.New("rsp: no other pool element took the connection over")

func newASAPConn(d *Dialer, handle asap.PoolHandle, pe asap.PoolElement, mc mapping.Conn) *ASAPConn {
	a := &ASAPConn{d: d, handle: handle, pe: pe}
	a.install(mc, pe)
	return a
}

// install makes mc, to element pe, the connection.
func (a *ASAPConn) install(mc mapping.Conn, pe asap.PoolElement) {
	cc := mapping.NewControlConn(mc)
	cc.OnControl = func(m asap.Message) {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.control(m)
	}
	a.c, a.pe = cc, pe
	cc.SetReadDeadline(a.rdl)
	cc.SetWriteDeadline(a.wdl)
}

func (a *ASAPConn) conn() (*mapping.ControlConn, asap.PoolElement) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.c, a.pe
}

// Read reads data, a message at a time, failing over when the
// association fails.
func (a *ASAPConn) Read(b []byte) (int, error) {
	a.rmu.Lock()
	defer a.rmu.Unlock()
	for len(a.rest) == 0 {
		if a.rbuf == nil {
			a.rbuf = make([]byte, 64<<10)
		}
		a.mu.Lock()
		if len(a.early) > 0 {
			m := a.early[0]
			a.early = a.early[1:]
			a.ppid = m.ppid
			a.mu.Unlock()
			a.rest = m.b
			continue
		}
		a.mu.Unlock()
		c, pe := a.conn()
		n, ppid, err := c.ReadMsg(a.rbuf)
		if err != nil {
			if !a.mayFailOver(err) {
				return 0, err
			}
			if ferr := a.failover(context.Background(), pe.ID, err); ferr != nil {
				return 0, ferr
			}
			continue
		}
		a.mu.Lock()
		a.ppid = ppid
		a.mu.Unlock()
		a.rest = a.rbuf[:n]
	}
	n := copy(b, a.rest)
	a.rest = a.rest[n:]
	return n, nil
}

// Write sends b as one data message with the PPID of the last data
// message read (0 before), failing over when the association fails.
func (a *ASAPConn) Write(b []byte) (int, error) {
	a.mu.Lock()
	ppid := a.ppid
	a.mu.Unlock()
	if err := a.WriteMsg(b, ppid); err != nil {
		return 0, err
	}
	return len(b), nil
}

// WriteMsg sends b as one data message with the given PPID (not 11),
// failing over when the association fails.
func (a *ASAPConn) WriteMsg(b []byte, ppid uint32) error {
	for {
		c, pe := a.conn()
		err := c.WriteMsg(b, ppid)
		if err == nil || !a.mayFailOver(err) {
			return err
		}
		if ferr := a.failover(context.Background(), pe.ID, err); ferr != nil {
			return ferr
		}
	}
}

// mayFailOver tells a failed association from errors of the caller's own
// making: a deadline, or Close.
func (a *ASAPConn) mayFailOver(err error) bool {
	a.mu.Lock()
	closed := a.closed
	a.mu.Unlock()
	return !closed && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, mapping.ErrMessageTooLong)
}

// Failover moves the connection to another element now, as after a
// failure of the present one (rsplib's rsp_forcefailover): for an element
// that stopped answering without closing.
func (a *ASAPConn) Failover(ctx context.Context) error {
	_, pe := a.conn()
	return a.failover(ctx, pe.ID, errors.New("failover asked for"))
}

// failover replaces the connection to element from, unless another caller
// did so already.
func (a *ASAPConn) failover(ctx context.Context, from asap.PEID, cause error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return &net.OpError{Op: "failover", Net: "sctp", Err: net.ErrClosed}
	}
	if a.pe.ID != from {
		return nil // moved already
	}
	cfg := a.d.Session.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.FailoverTimeout)
	defer cancel()
	// A failover from a Write (or Failover) may leave messages unread
	// that came before the failure, the element's last cookie among
	// them. With no Read going on (one that is reads them itself, or
	// its failover came after it read them all), read them now.
	if a.rmu.TryLock() {
		a.drain()
		a.rmu.Unlock()
	}
	a.c.Close()
	a.failed = append(a.failed, from)
	ep := a.d.endpoint()
	ep.ReportUnreachable(ctx, a.handle, from)
	var lastErr error = cause
	for attempt := 0; attempt < cfg.MaxFailoverAttempts && ctx.Err() == nil; attempt++ {
		var cands []asap.PoolElement
		if a.card != nil {
			cands = append(cands, a.card.PEs...)
		}
		ep.Invalidate(a.handle)
		if res, err := ep.Resolve(ctx, a.handle); err == nil {
			cands = append(cands, res.PEs...)
		}
		for _, pe := range cands {
			if slices.Contains(a.failed, pe.ID) {
				continue
			}
			t, ok := usableTransport("tcp", pe.UserTransport)
			if !ok || t.Kind != asap.ParamSCTPTransport {
				continue
			}
			var md mapping.Dialer
			dctx, dcancel := ctx, context.CancelFunc(func() {})
			if a.d.Timeout > 0 {
				dctx, dcancel = context.WithTimeout(ctx, a.d.Timeout)
			}
			mc, err := md.DialContext(dctx, "sctp", sctpAddress(t))
			dcancel()
			if err != nil {
				lastErr = err
				a.failed = append(a.failed, pe.ID)
				ep.ReportUnreachable(ctx, a.handle, pe.ID)
				continue
			}
			old := a.pe
			a.install(mc, pe)
			if a.cookie != nil {
				if err := a.c.WriteControl(&asap.CookieEcho{Cookie: a.cookie}); err != nil {
					lastErr = err
					a.c.Close()
					a.pe = old
					continue
				}
			}
			a.failovers++
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(cfg.FailoverBackoff):
		}
	}
	return &net.OpError{Op: "failover", Net: "sctp", Err: fmt.Errorf("%w in pool %q: %w", errNoFailover, a.handle, lastErr)}
}

// drain reads what is left on the present association, within drainWait:
// the control messages update the cookie and business card, the data
// messages are kept for Read. The caller holds a.rmu and a.mu.
func (a *ASAPConn) drain() {
	a.c.SetReadDeadline(time.Now().Add(drainWait))
	buf := make([]byte, 64<<10)
	for {
		// OnControl takes a.mu: hand the control messages over after
		// the read instead.
		var ctl []asap.Message
		a.c.OnControl = func(m asap.Message) { ctl = append(ctl, m) }
		n, ppid, err := a.c.ReadMsg(buf)
		for _, m := range ctl {
			a.control(m)
		}
		if err != nil {
			return
		}
		a.early = append(a.early, earlyMsg{b: append([]byte(nil), buf[:n]...), ppid: ppid})
	}
}

// control keeps what a control message from the element carries. The
// caller holds a.mu.
func (a *ASAPConn) control(m asap.Message) {
	switch m := m.(type) {
	case *asap.Cookie:
		a.cookie = m.Cookie
	case *asap.BusinessCard:
		a.card = m
	}
}

// Cookie returns the latest ASAP cookie an element of the connection sent,
// or nil: what a failover echoes to the next element.
func (a *ASAPConn) Cookie() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cookie
}

// Element returns the pool element the connection is to now.
func (a *ASAPConn) Element() Element {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Element{Handle: string(a.handle), PoolElement: a.pe}
}

// Failovers returns how many times the connection moved to another
// element.
func (a *ASAPConn) Failovers() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.failovers
}

// Close closes the connection.
func (a *ASAPConn) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	return a.c.Close()
}

// LocalAddr returns the present association's local address.
func (a *ASAPConn) LocalAddr() net.Addr { c, _ := a.conn(); return c.LocalAddr() }

// RemoteAddr returns the present element's address.
func (a *ASAPConn) RemoteAddr() net.Addr { c, _ := a.conn(); return c.RemoteAddr() }

// SetDeadline sets the read and write deadlines, as net.Conn does; they
// hold for the associations of later failovers too.
func (a *ASAPConn) SetDeadline(t time.Time) error {
	if err := a.SetReadDeadline(t); err != nil {
		return err
	}
	return a.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline, as net.Conn does.
func (a *ASAPConn) SetReadDeadline(t time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rdl = t
	return a.c.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline, as net.Conn does.
func (a *ASAPConn) SetWriteDeadline(t time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.wdl = t
	return a.c.SetWriteDeadline(t)
}
