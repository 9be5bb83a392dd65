package endpoint

import (
	"errors"
	"fmt"
	"sync"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
)

// errReplaced ends a registrar connection that an association from the
// registrar that took over as home replaced.
var errReplaced = errors.New("endpoint: registrar connection replaced by the new home registrar's")

// pendKey names the answer a request waits for: the message type, the pool
// handle and, for registrations, the pool element.
type pendKey struct {
	typ    asap.MessageType
	handle asap.PoolHandle
	id     asap.PEID
}

// session is one connection to the home registrar.
type session struct {
	ep  *Endpoint
	c   mapping.Conn
	wmu sync.Mutex

	mu      sync.Mutex
	pending map[pendKey][]chan asap.Message
	dead    chan struct{}
	err     error
	once    sync.Once

	homeKnown bool // a keep-alive on this connection named the home registrar; guarded by ep.mu
}

func newSession(ep *Endpoint, c mapping.Conn) *session {
	return &session{ep: ep, c: c, pending: make(map[pendKey][]chan asap.Message), dead: make(chan struct{})}
}

// expect registers a wait for the answer key names. Answers of one key
// come in the order of the requests.
func (s *session) expect(key pendKey) chan asap.Message {
	ch := make(chan asap.Message, 1)
	s.mu.Lock()
	s.pending[key] = append(s.pending[key], ch)
	s.mu.Unlock()
	return ch
}

func (s *session) forget(key pendKey, ch chan asap.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.pending[key]
	for i, c := range q {
		if c == ch {
			s.pending[key] = append(q[:i:i], q[i+1:]...)
			break
		}
	}
	if len(s.pending[key]) == 0 {
		delete(s.pending, key)
	}
}

// deliver hands an answer to the oldest request waiting for it; it reports
// whether one was waiting.
func (s *session) deliver(key pendKey, m asap.Message) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.pending[key]
	if len(q) == 0 {
		return false
	}
	q[0] <- m
	if len(q) == 1 {
		delete(s.pending, key)
	} else {
		s.pending[key] = q[1:]
	}
	return true
}

func (s *session) write(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.c.WriteMsg(b, mapping.PPIDASAP)
}

func (s *session) send(m asap.Message) error {
	b, err := m.AppendBinary(nil)
	if err != nil {
		return err
	}
	return s.write(b)
}

// fail ends the session; requests waiting on it retry elsewhere.
func (s *session) fail(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.dead)
		s.c.Close()
		s.ep.sessionEnded(s)
	})
}

func (s *session) readLoop() {
	defer s.ep.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, ppid, err := s.c.ReadMsg(buf)
		if err != nil {
			if errors.Is(err, mapping.ErrMessageTooLong) {
				continue
			}
			s.fail(err)
			return
		}
		if ppid != mapping.PPIDASAP {
			continue
		}
		m, err := asap.Unmarshal(buf[:n])
		if m == nil {
			s.ep.cfg.Logger.Debug("bad message from registrar", "err", err)
			continue
		}
		s.handle(m)
	}
}

func (s *session) handle(m asap.Message) {
	ep := s.ep
	switch m := m.(type) {
	case *asap.EndpointKeepAlive:
		ep.mu.Lock()
		var reg *Registration
		if m.ID != 0 {
			reg = ep.regs[regKey{m.Handle, m.ID}]
		} else {
			for k, r := range ep.regs {
				if k.handle == m.Handle {
					reg = r
					break
				}
			}
		}
		_, cand := ep.cands[s]
		var replaced *session
		switch {
		case reg == nil, cand && !m.Home:
			// Not ours, or a keep-alive without H on an association
			// a registrar opened: discarded silently.
			reg = nil
		case cand:
			// A registrar took over the home registrar's pool elements
			// and reached us at our transport address (RFC 5352
			// §3.4.2): this association is the registrar connection
			// from now on, without registering again; the old one
			// ends quietly.
			delete(ep.cands, s)
			replaced = ep.sess
			ep.sess = s
			ep.home = m.Server
			s.homeKnown = true
			ep.cfg.Logger.Info("a registrar took over as home", "registrar", fmt.Sprintf("%08x", uint32(m.Server)), "addr", s.c.RemoteAddr())
		case m.Home || !s.homeKnown:
			// The first keep-alive on a connection names the registrar at
			// its other end, the home registrar, also after a hunt found
			// a new one. With H the sender takes over as home registrar
			// (RFC 5352 §3.4.2); it reached us on this connection, which
			// stays the one used.
			ep.home = m.Server
			s.homeKnown = true
		}
		ep.mu.Unlock()
		if replaced != nil {
			replaced.fail(errReplaced)
		}
		if reg == nil {
			return
		}
		if err := s.send(&asap.EndpointKeepAliveAck{Handle: m.Handle, ID: reg.pe.ID}); err != nil {
			s.fail(err)
		}
	case *asap.RegistrationResponse:
		s.deliver(pendKey{asap.TypeRegistrationResponse, m.Handle, m.ID}, m)
	case *asap.DeregistrationResponse:
		if s.deliver(pendKey{asap.TypeDeregistrationResponse, m.Handle, m.ID}, m) {
			return
		}
		// Unsolicited: the registration life ran out. Register again.
		ep.mu.Lock()
		_, ours := ep.regs[regKey{m.Handle, m.ID}]
		ep.mu.Unlock()
		if ours {
			ep.cfg.Logger.Info("registration expired at the registrar; registering again", "pool", m.Handle, "pe", m.ID)
			ep.kickMaintenance()
		}
	case *asap.HandleResolutionResponse:
		s.deliver(pendKey{asap.TypeHandleResolutionResponse, m.Handle, 0}, m)
	case *asap.Error:
		ep.cfg.Logger.Warn("registrar reported an error", "causes", m.Causes)
	}
}
