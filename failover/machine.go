package failover

import (
	"errors"
	"slices"
	"time"

	"github.com/rsp-go/rsp/asap"
)

// Machine drives one session's life across pool elements. It is not safe
// for concurrent use: one goroutine owns it.
type Machine struct {
	cfg   Config
	state State
	out   []Action

	// Session-wide.
	cookie []byte      // newest cookie received
	card   []Candidate // newest business card
	live   asap.PEID   // element whose connection is up, if up
	up     bool        // a connection is up (Echoing..Connected)
	misses int
	err    error

	// Elements lost before they acknowledged any of their replay: whether
	// the last failover replayed messages, the acknowledgement at its
	// detection (lossAcked, then replayAcked), how many such losses came
	// in a row, and the loss a hold-back (StateHolding) keeps for later.
	replayedTo  bool
	lossAcked   uint64
	replayAcked uint64
	unacked     int
	held        heldLoss

	// The episode under way: the initial connect or one failover.
	initial   bool
	old       asap.PEID // lost element (failover only)
	deadline  time.Time // the episode's deadline
	attempts  int
	tried     []asap.PEID // elements tried (or lost) in this episode: never chosen again
	queue     []Candidate // candidates to try in order (filtered when taken)
	resolved  bool        // this round's resolution has been asked for
	backoff   time.Duration
	wait      time.Time // Connecting: attempt deadline; Echoing: echo deadline; Backoff: its end
	target    asap.PEID // Connecting
	dialing   bool      // a Connect to target is under way
	doubt     Doubt
	lastCause error
}

// heldLoss is a loss whose failover waits in StateHolding.
type heldLoss struct {
	pe    asap.PEID
	st    StreamState
	cause error
}

// New returns a machine in StateIdle; feed it [Open] to start.
func New(cfg Config) *Machine {
	return &Machine{cfg: cfg.withDefaults()}
}

// Config returns the configuration in use, defaults filled in.
func (m *Machine) Config() Config { return m.cfg }

// State returns where the machine is.
func (m *Machine) State() State { return m.state }

// Current returns the element whose connection is up (connected, or being
// set up by a failover after it connected), or 0.
func (m *Machine) Current() asap.PEID { return m.live }

// Err returns the error of the Fail action once the machine failed, or nil.
func (m *Machine) Err() error { return m.err }

// Deadline returns when the machine needs a [Timer] event, or the zero time
// if it needs none.
func (m *Machine) Deadline() time.Time {
	switch m.state {
	case StateConnecting, StateEchoing, StateBackoff, StateHolding:
		return m.wait
	case StateResolving, StateCalling, StateReplaying:
		return m.deadline
	}
	return time.Time{}
}

// Handle feeds one event that happened at now and returns the actions to
// carry out, in order. The slice is valid until the next call.
func (m *Machine) Handle(now time.Time, ev Event) []Action {
	m.out = m.out[:0]
	if m.state == StateFailed || m.state == StateClosed {
		return nil
	}
	// Expired timers run first, each at its own time, so that how late the
	// session's timer fired changes nothing.
	for d := m.Deadline(); !d.IsZero() && !now.Before(d); d = m.Deadline() {
		m.expire(d)
	}
	if m.state == StateFailed {
		return m.out
	}
	switch ev.Kind {
	case Open:
		if m.state == StateIdle {
			m.open(now, ev)
		}
	case Connected:
		if m.dialing && ev.PE == m.target {
			m.connected(now)
		} else if !m.liveIs(ev.PE) {
			m.emit(Action{Kind: Disconnect, PE: ev.PE})
		}
	case ConnectFailed:
		if m.dialing && ev.PE == m.target {
			m.elementFailed(now, m.target, ev.Err, false)
		}
	case TransportError:
		if m.liveIs(ev.PE) {
			m.lost(now, ev.Stream, ev.Err)
		}
	case HeartbeatMiss:
		if m.liveIs(ev.PE) {
			m.misses++
			if m.misses >= m.cfg.HeartbeatMisses {
				m.lost(now, ev.Stream, ErrHeartbeatsMissed)
			}
		}
	case HeartbeatAck:
		if m.liveIs(ev.PE) {
			m.misses = 0
		}
	case FailoverRequest:
		if m.state == StateConnected {
			m.lost(now, ev.Stream, ErrRequested)
		}
	case GoAway:
		if m.liveIs(ev.PE) {
			m.lost(now, ev.Stream, ErrGoAway)
		}
	case Resolved:
		if m.state == StateResolving {
			m.onResolved(now, ev)
		}
	case CookieReceived:
		if len(ev.Cookie) > 0 && m.state != StateIdle {
			m.cookie = slices.Clone(ev.Cookie)
		}
	case BusinessCardReceived:
		if m.state != StateIdle {
			m.card = slices.Clone(ev.Candidates)
		}
	case CookieEchoResult:
		if m.state == StateEchoing && ev.PE == m.live {
			if ev.Accepted {
				m.doubt &^= DoubtLost
			}
			m.callback(now)
		}
	case CallbackDone:
		if m.state == StateCalling {
			if errors.Is(ev.Err, ErrRefused) {
				m.lastCause = ev.Err
				m.fail(ErrRefused)
			} else if ev.Err != nil {
				m.refused(now, ev.Err)
			} else {
				m.doubt &^= ev.Settled
				m.settle()
			}
		}
	case ReplayDone:
		if m.state == StateReplaying {
			m.replayedTo, m.replayAcked = ev.Replayed > 0, m.lossAcked
			m.indicate(ev.Replayed)
		}
	case Close:
		m.state = StateClosed
		m.live, m.up, m.dialing = 0, false, false
	}
	return m.out
}

func (m *Machine) emit(a Action) { m.out = append(m.out, a) }

// liveIs reports whether pe names the element whose connection is up.
func (m *Machine) liveIs(pe asap.PEID) bool {
	return m.up && pe == m.live
}

// expire runs what the timer does in the current state.
func (m *Machine) expire(now time.Time) {
	if m.state == StateHolding {
		m.failOver(now)
		return
	}
	if m.state != StateConnected && !now.Before(m.deadline) {
		m.fail(ErrTimeout)
		return
	}
	switch m.state {
	case StateConnecting:
		m.elementFailed(now, m.target, ErrConnectTimeout, true)
	case StateEchoing:
		m.callback(now) // no answer: the cookie settled nothing
	case StateBackoff:
		m.resolved = false
		m.next(now)
	}
}

// open starts the initial connect.
func (m *Machine) open(now time.Time, ev Event) {
	m.startEpisode(now, true)
	if !ev.Deadline.IsZero() && ev.Deadline.Before(m.deadline) {
		m.deadline = ev.Deadline
	}
	m.queue = append(m.queue[:0], ev.Candidates...)
	m.next(now)
}

func (m *Machine) startEpisode(now time.Time, initial bool) {
	m.initial = initial
	m.deadline = now.Add(m.cfg.FailoverTimeout)
	m.attempts = 0
	m.tried = m.tried[:0]
	m.resolved = false
	m.backoff = m.cfg.RetryDelay
	m.doubt = 0
	m.lastCause = nil
	m.old = 0
}

// lost handles the loss of the live element: in StateConnected it starts a
// failover, at once or after a hold-back; during a failover it is that
// failover's candidate failing.
func (m *Machine) lost(now time.Time, st StreamState, cause error) {
	if m.state != StateConnected {
		m.doubt |= m.doubtOf(st)
		m.elementFailed(now, m.live, cause, true)
		return
	}
	old := m.live
	m.emit(Action{Kind: Disconnect, PE: old})
	m.live, m.up, m.misses = 0, false, 0
	m.held = heldLoss{pe: old, st: st, cause: cause}
	if m.replayedTo && st.Acked == m.replayAcked {
		m.unacked++
	} else {
		m.unacked = 0
	}
	m.replayedTo = false
	if m.unacked >= m.cfg.MaxAttempts {
		e := &Error{Err: ErrReplayUnacked, Cause: cause, Lost: old}
		m.err, m.state = e, StateFailed
		m.emit(Action{Kind: Fail, Err: e})
		return
	}
	if m.unacked > 0 {
		m.state = StateHolding
		m.wait = now.Add(m.holdBack(m.unacked))
		return
	}
	m.failOver(now)
}

// holdBack is how long the n-th loss in a row of an element that
// acknowledged none of its replay holds the failover back: RetryDelay,
// doubled for each such loss before it, at most FailoverTimeout.
func (m *Machine) holdBack(n int) time.Duration {
	d := m.cfg.RetryDelay
	for i := 1; i < n && d < m.cfg.FailoverTimeout; i++ {
		d *= 2
	}
	return min(d, m.cfg.FailoverTimeout)
}

// failOver starts the failover from the held loss: its deadline runs from
// now, the end of any hold-back.
func (m *Machine) failOver(now time.Time) {
	l := m.held
	m.held = heldLoss{}
	m.startEpisode(now, false)
	m.old = l.pe
	m.lossAcked = l.st.Acked
	m.tried = append(m.tried, l.pe)
	if l.cause != ErrGoAway {
		m.emit(Action{Kind: ReportUnreachable, PE: l.pe, Err: l.cause})
	}
	m.lastCause = l.cause
	m.doubt = m.doubtOf(l.st)
	m.queue = append(m.queue[:0], m.card...)
	if m.unsettleable() != 0 {
		m.fail(ErrDataInDoubt)
		return
	}
	m.next(now)
}

// doubtOf derives the doubt of a stream snapshot under the mode.
func (m *Machine) doubtOf(st StreamState) Doubt {
	var d Doubt
	if st.PartialRead {
		d |= DoubtPartialRead
	}
	if st.Lost {
		d |= DoubtLost
	}
	if m.cfg.Mode == ModeNoReplay && st.Unacked > 0 {
		d |= DoubtUnacked
	}
	if m.cfg.Mode == ModeStream && st.Used {
		d |= DoubtStream
	}
	return d
}

// unsettleable returns the doubt that nothing configured can settle.
func (m *Machine) unsettleable() Doubt {
	d := m.doubt & DoubtStream
	if !m.cfg.Callback {
		d |= m.doubt & (DoubtPartialRead | DoubtUnacked)
		if m.cookie == nil {
			d |= m.doubt & DoubtLost
		}
	}
	return d
}

// next connects to the next candidate, or resolves, or backs off.
func (m *Machine) next(now time.Time) {
	if !now.Before(m.deadline) {
		m.fail(ErrTimeout)
		return
	}
	for len(m.queue) > 0 {
		c := m.queue[0]
		m.queue = m.queue[1:]
		if !slices.Contains(m.tried, c.ID()) {
			m.connect(now, c)
			return
		}
	}
	if !m.resolved {
		m.resolved = true
		m.state = StateResolving
		m.emit(Action{Kind: Resolve})
		return
	}
	if m.lastCause == nil {
		m.lastCause = ErrNoCandidates
	}
	end := now.Add(m.backoff)
	if !end.Before(m.deadline) {
		m.fail(ErrTimeout)
		return
	}
	m.backoff = min(2*m.backoff, m.cfg.MaxRetryDelay)
	m.state = StateBackoff
	m.wait = end
}

func (m *Machine) connect(now time.Time, c Candidate) {
	m.attempts++
	m.tried = append(m.tried, c.ID())
	m.state = StateConnecting
	m.target, m.dialing = c.ID(), true
	m.wait = now.Add(m.cfg.ConnectTimeout)
	if m.deadline.Before(m.wait) {
		m.wait = m.deadline
	}
	m.emit(Action{Kind: Connect, PE: c.ID(), Candidate: c, Deadline: m.wait})
}

func (m *Machine) onResolved(now time.Time, ev Event) {
	if ev.Err != nil {
		m.lastCause = ev.Err
	} else if len(ev.Candidates) == 0 {
		m.lastCause = ErrNoCandidates
	}
	m.queue = append(m.queue[:0], ev.Candidates...)
	m.next(now)
}

// elementFailed handles a candidate that failed to connect, ran out of
// time, or broke during the failover's later steps.
func (m *Machine) elementFailed(now time.Time, pe asap.PEID, cause error, disconnect bool) {
	if disconnect {
		m.emit(Action{Kind: Disconnect, PE: pe})
	}
	if cause != ErrGoAway {
		m.emit(Action{Kind: ReportUnreachable, PE: pe, Err: cause})
	}
	m.live, m.up, m.target, m.dialing, m.misses = 0, false, 0, false, 0
	m.lastCause = cause
	m.retry(now)
}

// refused handles a callback that refused the new element.
func (m *Machine) refused(now time.Time, cause error) {
	m.emit(Action{Kind: Disconnect, PE: m.live})
	m.live, m.up, m.misses = 0, false, 0
	m.lastCause = cause
	m.retry(now)
}

func (m *Machine) retry(now time.Time) {
	if m.unsettleable() != 0 {
		m.fail(ErrDataInDoubt)
		return
	}
	if m.attempts >= m.cfg.MaxAttempts {
		m.fail(ErrAttemptsExhausted)
		return
	}
	m.next(now)
}

// connected: the attempt to m.target succeeded.
func (m *Machine) connected(now time.Time) {
	m.live, m.up, m.target, m.dialing, m.misses = m.target, true, 0, false, 0
	if m.initial {
		m.state = StateConnected
		m.emit(Action{Kind: Established, PE: m.live})
		return
	}
	if m.cookie != nil {
		m.emit(Action{Kind: SendCookieEcho, PE: m.live, Cookie: m.cookie})
		if m.doubt&DoubtLost != 0 {
			m.state = StateEchoing
			m.wait = now.Add(m.cfg.ConnectTimeout)
			if m.deadline.Before(m.wait) {
				m.wait = m.deadline
			}
			return
		}
	}
	m.callback(now)
}

func (m *Machine) callback(now time.Time) {
	if m.cfg.Callback {
		m.state = StateCalling
		m.emit(Action{Kind: Callback, Old: m.old, New: m.live, Doubt: m.doubt})
		return
	}
	m.settle()
}

func (m *Machine) settle() {
	if m.doubt != 0 {
		m.fail(ErrDataInDoubt)
		return
	}
	if m.cfg.Mode == ModeReplay {
		m.state = StateReplaying
		m.emit(Action{Kind: Replay, PE: m.live})
		return
	}
	m.indicate(0)
}

func (m *Machine) indicate(replayed int) {
	m.state = StateConnected
	m.emit(Action{Kind: Indicate, Old: m.old, New: m.live, Replayed: replayed})
	m.doubt = 0
	m.lastCause = nil
}

// fail ends the session: it disconnects what is connected or connecting.
func (m *Machine) fail(sentinel error) {
	switch {
	case m.dialing:
		m.emit(Action{Kind: Disconnect, PE: m.target})
	case m.up:
		m.emit(Action{Kind: Disconnect, PE: m.live})
	}
	e := &Error{Err: sentinel, Cause: m.lastCause, Lost: m.old}
	if sentinel == ErrDataInDoubt {
		e.Doubt = m.doubt
	}
	m.err = e
	m.state = StateFailed
	m.live, m.up, m.target, m.dialing = 0, false, 0, false
	m.emit(Action{Kind: Fail, Err: e})
}
