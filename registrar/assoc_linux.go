package registrar

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rsp-go/rsp/internal/sctp"
	"github.com/rsp-go/rsp/mapping"
)

// assocListener is a one-to-many SCTP socket that serves every association
// with ASAP: Serve reads the messages of all of them in batches, handles
// them and sends the answers with one write. Its Accept only waits for
// Close: there is nothing to accept.
type assocListener struct {
	p    *sctp.PacketConn
	done chan struct{}
	once sync.Once

	// wmu serializes writes, so that the socket's write deadline is the
	// one the writer set; deadline is it.
	wmu      sync.Mutex
	deadline time.Time

	mu    sync.Mutex
	peers map[sctp.AssocID]*peerConn
}

// Batched reads of an association socket: how many messages one read
// takes at most, from any number of associations.
const assocReadBatch = 64

// listenAssociations opens a one-to-many SCTP socket for a registrar.
func listenAssociations(network, address string) (mapping.Listener, error) {
	laddr, err := sctp.ResolveAddr(network, address)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	p, err := sctp.ListenPacket(network, laddr)
	if err != nil {
		return nil, err
	}
	return &assocListener{p: p, done: make(chan struct{}), peers: make(map[sctp.AssocID]*peerConn)}, nil
}

func (l *assocListener) Accept() (mapping.Conn, error) {
	<-l.done
	return nil, &net.OpError{Op: "accept", Net: "sctp", Addr: l.p.Addr(), Err: net.ErrClosed}
}

func (l *assocListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.p.Close()
}

func (l *assocListener) Addr() net.Addr { return l.p.Addr() }

// listenSCTP opens an association socket where the kernel has SCTP; ok
// is false where it has not.
func listenSCTP(network, address string) (l mapping.Listener, ok bool, err error) {
	if !sctp.Supported() {
		return nil, false, nil
	}
	l, err = listenAssociations(network, address)
	return l, true, err
}

// serveOwn serves l if it is an association socket; ok is false if not.
func (r *Registrar) serveOwn(l mapping.Listener) (ok bool, err error) {
	al, ok := l.(*assocListener)
	if !ok {
		return false, nil
	}
	return true, r.serveAssociations(al)
}

// serveAssociations is Serve for an association socket.
func (r *Registrar) serveAssociations(l *assocListener) error {
	slot := min(readBatchSlot, r.cfg.MaxMessageSize)
	ms := make([]sctp.Message, assocReadBatch)
	for i := range ms {
		ms[i].Buf = make([]byte, slot)
	}
	var touched []*peerConn
	var out []sctp.Message
	var backoff time.Duration
	for {
		n, err := l.p.ReadBatch(ms, r.cfg.MaxMessageSize)
		for i := range ms[:n] {
			m := &ms[i]
			switch m.Event {
			case sctp.AssocUp:
				l.peer(r, m.Assoc)
			case sctp.AssocDown:
				l.ended(m.Assoc)
			default:
				pc := l.peer(r, m.Assoc)
				if pc != nil && !pc.c.(*assocConn).closed.Load() {
					if !pc.batching {
						pc.batching = true
						touched = append(touched, pc)
					}
					pc.take(m.Buf[:m.N], m.PPID, m.Err)
				}
				if cap(m.Buf) > slot {
					m.Buf = make([]byte, slot) // keep no large buffer
				}
			}
		}
		// The answers of all associations go out together, except those
		// of a peer with messages queued before them, which follow
		// those.
		for _, pc := range touched {
			pc.batching = false
			pc.flushAcks()
			flushHeld(&pc.enrpHeld)
			id := pc.c.(*assocConn).id
			for i, m := range pc.replies {
				if pc.pending.Load() == 0 {
					out = append(out, sctp.Message{Buf: m.Buf, PPID: m.PPID, Assoc: id})
				} else {
					pc.sendBytes(m.Buf)
				}
				pc.replies[i] = mapping.Msg{}
			}
			pc.replies = pc.replies[:0]
		}
		clear(touched)
		touched = touched[:0]
		if len(out) > 0 {
			l.write(r, out)
			for i := range out {
				b := out[i].Buf[:0]
				bufPool.Put(&b)
				out[i] = sctp.Message{}
			}
			out = out[:0]
		}
		switch {
		case err == nil:
			backoff = 0
		case errors.Is(err, net.ErrClosed):
			return err
		default:
			// An error of the socket, such as one an ICMP message
			// left, is reported once by a read; the socket goes on.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			r.cfg.Logger.Warn("reading the association socket failed; reading on", "err", err, "delay", backoff)
			select {
			case <-time.After(backoff):
			case <-l.done:
			}
		}
	}
}

// peer returns the peer connection of association id, making it when the
// association is new; nil once the registrar is closed. Reader only.
func (l *assocListener) peer(r *Registrar, id sctp.AssocID) *peerConn {
	l.mu.Lock()
	pc := l.peers[id]
	l.mu.Unlock()
	if pc != nil {
		return pc
	}
	ac := &assocConn{r: r, l: l, id: id, peer: &sctp.Addr{}}
	if a, err := l.p.PeerAddr(id); err == nil {
		ac.peer = a
	}
	pc = newPeerConn(r, ac)
	r.mu.Lock()
	if r.closed || !r.admitLocked(pc) {
		r.mu.Unlock()
		ac.Close()
		return nil
	}
	r.wg.Add(1)
	r.mu.Unlock()
	l.mu.Lock()
	l.peers[id] = pc
	l.mu.Unlock()
	go pc.writeLoop()
	return pc
}

// ended forgets association id, which is gone, and its pool elements.
// Reader only.
func (l *assocListener) ended(id sctp.AssocID) {
	l.mu.Lock()
	pc := l.peers[id]
	delete(l.peers, id)
	l.mu.Unlock()
	if pc != nil {
		pc.c.(*assocConn).gone.Store(true)
		pc.r.cfg.Logger.Debug("association ended", "peer", pc.c.RemoteAddr())
		pc.cleanup()
	}
}

// write sends ms, each to its association. A message that an association
// refuses (it is going away) is dropped; the association's end comes as an
// event. When the socket's send buffer stays full for WriteTimeout, which
// a peer that does not read causes, the association that holds most of it
// is aborted.
func (l *assocListener) write(r *Registrar, ms []sctp.Message) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	var first error
	for aborts := 0; len(ms) > 0; {
		if d, renew := r.writeDeadline(l.deadline); renew {
			l.deadline = d
			l.p.SetWriteDeadline(d)
		}
		n, err := l.p.WriteBatch(ms)
		ms = ms[n:]
		if err == nil {
			break
		}
		if first == nil {
			first = err
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && aborts < 3 {
			aborts++
			l.abortHog(r)
			l.deadline = time.Time{}
			continue
		}
		if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		// The association refuses it: it is going away. Its other
		// messages are dropped too.
		gone := ms[0].Assoc
		r.cfg.Logger.Debug("messages to an association not sent", "assoc", gone, "err", err)
		ms = slices.DeleteFunc(ms, func(m sctp.Message) bool { return m.Assoc == gone })
	}
	return first
}

// abortHog aborts the association that keeps the socket's send buffer
// full: the one whose peer has closed its receive window, as a peer does
// that sends requests and does not read the answers. The smallest window
// below hogWindow is taken.
func (l *assocListener) abortHog(r *Registrar) {
	l.mu.Lock()
	ids := make([]sctp.AssocID, 0, len(l.peers))
	for id := range l.peers {
		ids = append(ids, id)
	}
	l.mu.Unlock()
	hog, least := sctp.AssocID(0), hogWindow
	for _, id := range ids {
		if st, err := l.p.Status(id); err == nil && st.PeerWindow < least {
			hog, least = id, st.PeerWindow
		}
	}
	if least == hogWindow {
		r.cfg.Logger.Warn("send buffer full, and no peer has closed its window")
		return
	}
	l.mu.Lock()
	pc := l.peers[hog]
	l.mu.Unlock()
	if pc != nil {
		r.cfg.Logger.Warn("peer does not keep up; aborting its association", "peer", pc.c.RemoteAddr(), "window", least)
		pc.close()
	} else {
		l.p.Abort(hog)
	}
}

// hogWindow is the peer receive window under which a peer counts as not
// reading: less than one full-sized packet.
const hogWindow = 1500

// assocConn is one association of an association socket, as the peer
// connection sees it. Its messages are read by Serve; writes go through the
// socket. Deadlines are the socket's, set by the listener.
type assocConn struct {
	r      *Registrar
	l      *assocListener
	id     sctp.AssocID
	peer   *sctp.Addr
	closed atomic.Bool // Close was called
	gone   atomic.Bool // the association ended
}

var errReadByServe = errors.New("registrar: the messages of an association are read by Serve")

func (c *assocConn) ReadMsg([]byte) (int, uint32, error) {
	return 0, 0, &net.OpError{Op: "read", Net: "sctp", Addr: c.peer, Err: errReadByServe}
}

func (c *assocConn) WriteMsg(b []byte, ppid uint32) error {
	if c.closed.Load() || c.gone.Load() {
		return &net.OpError{Op: "write", Net: "sctp", Addr: c.peer, Err: net.ErrClosed}
	}
	return c.l.write(c.r, []sctp.Message{{Buf: b, PPID: ppid, Assoc: c.id}})
}

// Close aborts the association, unless it has ended already.
func (c *assocConn) Close() error {
	if c.closed.Swap(true) {
		return &net.OpError{Op: "close", Net: "sctp", Addr: c.peer, Err: net.ErrClosed}
	}
	if !c.gone.Load() {
		c.l.p.Abort(c.id)
	}
	return nil
}

func (c *assocConn) LocalAddr() net.Addr              { return c.l.p.Addr() }
func (c *assocConn) RemoteAddr() net.Addr             { return c.peer }
func (c *assocConn) SetDeadline(time.Time) error      { return nil }
func (c *assocConn) SetReadDeadline(time.Time) error  { return nil }
func (c *assocConn) SetWriteDeadline(time.Time) error { return nil }

// PeerAddrs returns the peer's addresses in the association.
func (c *assocConn) PeerAddrs() ([]netip.Addr, error) { return c.peer.IPs, nil }
