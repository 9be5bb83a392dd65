package failover

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/rsp-go/rsp/asap"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// none is a step's expected deadline when the machine needs no timer.
const none = time.Duration(-1)

// step is one event at t0+at, the actions it must produce and the deadline
// (relative to t0) the machine must want afterwards.
type step struct {
	at       time.Duration
	ev       Event
	want     []Action
	deadline time.Duration
	state    State
}

func cand(id asap.PEID) Candidate { return Candidate{PE: asap.PoolElement{ID: id}} }

func cands(ids ...asap.PEID) []Candidate {
	var cs []Candidate
	for _, id := range ids {
		cs = append(cs, cand(id))
	}
	return cs
}

func connect(id asap.PEID, deadline time.Duration) Action {
	return Action{Kind: Connect, PE: id, Candidate: cand(id), Deadline: t0.Add(deadline)}
}

func unreachable(id asap.PEID, err error) Action {
	return Action{Kind: ReportUnreachable, PE: id, Err: err}
}

func disconnect(id asap.PEID) Action { return Action{Kind: Disconnect, PE: id} }

var (
	errReset  = errors.New("connection reset by peer")
	errRefuse = errors.New("connection refused")
	errNo     = errors.New("application says no")
)

// failWith is a Fail action whose error errors.Is sentinel (cmpopts.EquateErrors).
func failWith(sentinel error) Action { return Action{Kind: Fail, Err: sentinel} }

var cmpOpts = cmp.Options{cmpopts.EquateErrors(), cmpopts.EquateEmpty()}

func run(t *testing.T, cfg Config, steps []step) *Machine {
	t.Helper()
	m := New(cfg)
	for i, s := range steps {
		got := m.Handle(t0.Add(s.at), s.ev)
		if diff := cmp.Diff(s.want, got, cmpOpts); diff != "" {
			t.Fatalf("step %d (%v at %v): actions (-want +got):\n%s", i, s.ev.Kind, s.at, diff)
		}
		wantDL := time.Time{}
		if s.deadline != none {
			wantDL = t0.Add(s.deadline)
		}
		if got := m.Deadline(); !got.Equal(wantDL) {
			t.Fatalf("step %d (%v at %v): deadline %v, want %v", i, s.ev.Kind, s.at, got.Sub(t0), s.deadline)
		}
		if m.State() != s.state {
			t.Fatalf("step %d (%v at %v): state %v, want %v", i, s.ev.Kind, s.at, m.State(), s.state)
		}
	}
	return m
}

// openTo1 connects the initial element 1 (from a resolution answering 1, 2,
// 3) at time 0 under cfg; the steps that follow start from StateConnected.
func openTo1(cfg Config) []step {
	cfg = cfg.withDefaults()
	return []step{
		{0, Event{Kind: Open}, []Action{{Kind: Resolve}}, cfg.FailoverTimeout, StateResolving},
		{0, Event{Kind: Resolved, Candidates: cands(1, 2, 3)}, []Action{connect(1, cfg.ConnectTimeout)}, cfg.ConnectTimeout, StateConnecting},
		{0, Event{Kind: Connected, PE: 1}, []Action{{Kind: Established, PE: 1}}, none, StateConnected},
	}
}

const (
	sec = time.Second
	ms  = time.Millisecond
)

var (
	errResolve = errors.New("no registrar answered")
	// small is a configuration whose numbers are easy to follow.
	small = Config{ConnectTimeout: sec, FailoverTimeout: 3 * sec, RetryDelay: 500 * ms, MaxRetryDelay: sec}
)

func with(c Config, f func(*Config)) Config { f(&c); return c }

type machineTest struct {
	name  string
	cfg   Config
	steps []step
	check func(t *testing.T, m *Machine)
}

func runTests(t *testing.T, tests []machineTest) {
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := run(t, tt.cfg, tt.steps)
			if tt.check != nil {
				tt.check(t, m)
			}
		})
	}
}

// wantErr checks the machine's error against every target.
func wantErr(targets ...error) func(*testing.T, *Machine) {
	return func(t *testing.T, m *Machine) {
		t.Helper()
		for _, target := range targets {
			if !errors.Is(m.Err(), target) {
				t.Errorf("Err() = %v, not errors.Is %v", m.Err(), target)
			}
		}
	}
}

func TestMachine(t *testing.T) {
	runTests(t, []machineTest{
		{name: "reset fails over at once to the next in the pool's order", cfg: Config{}, steps: append(openTo1(Config{}),
			step{10 * sec, Event{Kind: TransportError, PE: 1, Err: errReset}, []Action{
				disconnect(1), unreachable(1, errReset), {Kind: Resolve}}, 40 * sec, StateResolving},
			step{10*sec + ms, Event{Kind: Resolved, Candidates: cands(1, 2, 3)}, []Action{
				connect(2, 15*sec+ms)}, 15*sec + ms, StateConnecting},
			step{10*sec + 2*ms, Event{Kind: Connected, PE: 2}, []Action{{Kind: Replay, PE: 2}}, 40 * sec, StateReplaying},
			step{10*sec + 3*ms, Event{Kind: ReplayDone, Replayed: 7}, []Action{
				{Kind: Indicate, Old: 1, New: 2, Replayed: 7}}, none, StateConnected},
		)},
		{name: "initial connect tries the Open candidates first, then resolves", cfg: Config{}, steps: []step{
			{0, Event{Kind: Open, Candidates: cands(9)}, []Action{connect(9, 5*sec)}, 5 * sec, StateConnecting},
			{ms, Event{Kind: ConnectFailed, PE: 9, Err: errRefuse}, []Action{unreachable(9, errRefuse), {Kind: Resolve}}, 30 * sec, StateResolving},
			{2 * ms, Event{Kind: Resolved, Candidates: cands(9, 4)}, []Action{connect(4, 5*sec+2*ms)}, 5*sec + 2*ms, StateConnecting},
			{3 * ms, Event{Kind: Connected, PE: 4}, []Action{{Kind: Established, PE: 4}}, none, StateConnected},
		}},
		{name: "initial connect is capped by the Open deadline", cfg: Config{}, steps: []step{
			{0, Event{Kind: Open, Deadline: t0.Add(2 * sec)}, []Action{{Kind: Resolve}}, 2 * sec, StateResolving},
			{sec, Event{Kind: Resolved, Candidates: cands(4)}, []Action{connect(4, 2*sec)}, 2 * sec, StateConnecting},
			{2 * sec, Event{Kind: Timer}, []Action{disconnect(4), failWith(ErrTimeout)}, none, StateFailed},
		}, check: func(t *testing.T, m *Machine) {
			var e *Error
			if !errors.As(m.Err(), &e) || !e.Timeout() || e.Lost != 0 {
				t.Errorf("Err() = %#v, want a timeout *Error with no lost element", m.Err())
			}
		}},
		{name: "an Open deadline already past fails at once", cfg: Config{}, steps: []step{
			{sec, Event{Kind: Open, Deadline: t0}, []Action{failWith(ErrTimeout)}, none, StateFailed},
		}},
		{name: "heartbeat misses fail over on the limit; a sign of life restarts the count", cfg: Config{}, steps: append(openTo1(Config{}),
			step{1 * sec, Event{Kind: HeartbeatMiss, PE: 1}, nil, none, StateConnected},
			step{2 * sec, Event{Kind: HeartbeatMiss, PE: 1}, nil, none, StateConnected},
			step{2*sec + ms, Event{Kind: HeartbeatAck, PE: 1}, nil, none, StateConnected},
			step{3 * sec, Event{Kind: HeartbeatMiss, PE: 1}, nil, none, StateConnected},
			step{3 * sec, Event{Kind: HeartbeatMiss, PE: 7}, nil, none, StateConnected}, // not the connected element
			step{4 * sec, Event{Kind: HeartbeatMiss, PE: 1}, nil, none, StateConnected},
			step{5 * sec, Event{Kind: HeartbeatMiss, PE: 1}, []Action{
				disconnect(1), unreachable(1, ErrHeartbeatsMissed), {Kind: Resolve}}, 35 * sec, StateResolving},
		)},
		{name: "one heartbeat miss is enough when the limit is 1", cfg: Config{HeartbeatMisses: 1}, steps: append(openTo1(Config{}),
			step{1 * sec, Event{Kind: HeartbeatMiss, PE: 1}, []Action{
				disconnect(1), unreachable(1, ErrHeartbeatsMissed), {Kind: Resolve}}, 31 * sec, StateResolving},
		)},
		{name: "explicit request fails over and reports the element", cfg: small, steps: append(openTo1(small),
			step{sec, Event{Kind: FailoverRequest}, []Action{
				disconnect(1), unreachable(1, ErrRequested), {Kind: Resolve}}, 4 * sec, StateResolving},
			step{sec, Event{Kind: FailoverRequest}, nil, 4 * sec, StateResolving}, // ignored during a failover
		)},
		{name: "business card order first, then a fresh resolution", cfg: small, steps: append(openTo1(small),
			step{sec, Event{Kind: BusinessCardReceived, Candidates: cands(1, 3, 2)}, nil, none, StateConnected},
			step{2 * sec, Event{Kind: TransportError, PE: 1, Err: errReset}, []Action{
				disconnect(1), unreachable(1, errReset), connect(3, 3*sec)}, 3 * sec, StateConnecting},
			step{2 * sec, Event{Kind: ConnectFailed, PE: 3, Err: errRefuse}, []Action{
				unreachable(3, errRefuse), connect(2, 3*sec)}, 3 * sec, StateConnecting},
			step{2 * sec, Event{Kind: ConnectFailed, PE: 2, Err: errRefuse}, []Action{
				unreachable(2, errRefuse), {Kind: Resolve}}, 5 * sec, StateResolving},
			step{2 * sec, Event{Kind: Resolved, Candidates: cands(2, 4, 1, 5)}, []Action{connect(4, 3*sec)}, 3 * sec, StateConnecting},
			step{2 * sec, Event{Kind: Connected, PE: 4}, []Action{{Kind: Replay, PE: 4}}, 5 * sec, StateReplaying},
			step{2 * sec, Event{Kind: ReplayDone}, []Action{{Kind: Indicate, Old: 1, New: 4}}, none, StateConnected},
		)},
		{name: "the lost element and the tried ones are never chosen again in one failover", cfg: small, steps: append(openTo1(small),
			step{sec, Event{Kind: TransportError, PE: 1, Err: errReset}, []Action{
				disconnect(1), unreachable(1, errReset), {Kind: Resolve}}, 4 * sec, StateResolving},
			step{sec, Event{Kind: Resolved, Candidates: cands(1)}, nil, sec + 500*ms, StateBackoff},
			step{sec + 500*ms, Event{Kind: Timer}, []Action{{Kind: Resolve}}, 4 * sec, StateResolving},
			step{sec + 600*ms, Event{Kind: Resolved, Candidates: cands(1, 2)}, []Action{connect(2, 2*sec+600*ms)}, 2*sec + 600*ms, StateConnecting},
			step{sec + 700*ms, Event{Kind: ConnectFailed, PE: 2, Err: errRefuse}, []Action{unreachable(2, errRefuse)}, 2*sec + 700*ms, StateBackoff},
			step{2*sec + 700*ms, Event{Kind: Timer}, []Action{{Kind: Resolve}}, 4 * sec, StateResolving},
			step{2*sec + 800*ms, Event{Kind: Resolved, Candidates: cands(2, 1, 5)}, []Action{connect(5, 3*sec+800*ms)}, 3*sec + 800*ms, StateConnecting},
			step{2*sec + 900*ms, Event{Kind: Connected, PE: 5}, []Action{{Kind: Replay, PE: 5}}, 4 * sec, StateReplaying},
			step{2*sec + 900*ms, Event{Kind: ReplayDone, Replayed: 1}, []Action{{Kind: Indicate, Old: 1, New: 5, Replayed: 1}}, none, StateConnected},
			// The next failover may choose 1 and 2 again; 5 is the one lost now
			// (after it acknowledged the message replayed to it).
			step{5 * sec, Event{Kind: TransportError, PE: 5, Err: errReset, Stream: StreamState{Acked: 1}}, []Action{
				disconnect(5), unreachable(5, errReset), {Kind: Resolve}}, 8 * sec, StateResolving},
			step{5 * sec, Event{Kind: Resolved, Candidates: cands(5, 2, 1)}, []Action{connect(2, 6*sec)}, 6 * sec, StateConnecting},
		)},
		{name: "all candidates fail: resolution retried with back-off until the deadline, then fail", cfg: small, steps: append(openTo1(small),
			step{10 * sec, Event{Kind: TransportError, PE: 1, Err: errReset}, []Action{
				disconnect(1), unreachable(1, errReset), {Kind: Resolve}}, 13 * sec, StateResolving},
			step{10 * sec, Event{Kind: Resolved, Candidates: cands(1, 2)}, []Action{connect(2, 11*sec)}, 11 * sec, StateConnecting},
			step{10*sec + 100*ms, Event{Kind: ConnectFailed, PE: 2, Err: errRefuse}, []Action{unreachable(2, errRefuse)}, 10*sec + 600*ms, StateBackoff},
			step{10*sec + 600*ms, Event{Kind: Timer}, []Action{{Kind: Resolve}}, 13 * sec, StateResolving},
			step{10*sec + 600*ms, Event{Kind: Resolved, Candidates: cands(2, 1)}, nil, 11*sec + 600*ms, StateBackoff}, // back-off doubled
			step{11*sec + 600*ms, Event{Kind: Timer}, []Action{{Kind: Resolve}}, 13 * sec, StateResolving},
			step{11*sec + 700*ms, Event{Kind: Resolved, Err: errResolve}, nil, 12*sec + 700*ms, StateBackoff}, // capped at 1 s
			step{12*sec + 700*ms, Event{Kind: Timer}, []Action{{Kind: Resolve}}, 13 * sec, StateResolving},
			// Another back-off would end past the deadline: nothing can be tried, fail now.
			step{12*sec + 800*ms, Event{Kind: Resolved}, []Action{failWith(ErrTimeout)}, none, StateFailed},
			step{12*sec + 900*ms, Event{Kind: Resolved, Candidates: cands(3)}, nil, none, StateFailed},
		), check: func(t *testing.T, m *Machine) {
			wantErr(ErrTimeout, ErrNoCandidates)(t, m)
			var e *Error
			if errors.As(m.Err(), &e) && (e.Lost != 1 || !e.Timeout()) {
				t.Errorf("Err() = %#v, want the lost element 1 and a timeout", e)
			}
		}},
		{name: "a resolution that never answers fails at the failover deadline", cfg: small, steps: append(openTo1(small),
			step{sec, Event{Kind: TransportError, PE: 1, Err: errReset}, []Action{
				disconnect(1), unreachable(1, errReset), {Kind: Resolve}}, 4 * sec, StateResolving},
			step{4 * sec, Event{Kind: Timer}, []Action{failWith(ErrTimeout)}, none, StateFailed},
		), check: wantErr(ErrTimeout, errReset)},
		{name: "an attempt that runs out of time is abandoned, reported, and its late success closed", cfg: small, steps: append(openTo1(small),
			step{sec, Event{Kind: BusinessCardReceived, Candidates: cands(2, 3)}, nil, none, StateConnected},
			step{10 * sec, Event{Kind: TransportError, PE: 1, Err: errReset}, []Action{
				disconnect(1), unreachable(1, errReset), connect(2, 11*sec)}, 11 * sec, StateConnecting},
			step{11 * sec, Event{Kind: Timer}, []Action{disconnect(2), unreachable(2, ErrConnectTimeout), connect(3, 12*sec)}, 12 * sec, StateConnecting},
			step{11*sec + 500*ms, Event{Kind: Connected, PE: 2}, []Action{disconnect(2)}, 12 * sec, StateConnecting},
			step{11*sec + 600*ms, Event{Kind: ConnectFailed, PE: 2, Err: errRefuse}, nil, 12 * sec, StateConnecting},
			step{11*sec + 700*ms, Event{Kind: Connected, PE: 3}, []Action{{Kind: Replay, PE: 3}}, 13 * sec, StateReplaying},
		)},
		{name: "a late event runs each expired timer at its own time", cfg: small, steps: append(openTo1(small),
			step{sec, Event{Kind: BusinessCardReceived, Candidates: cands(2, 3)}, nil, none, StateConnected},
			step{10 * sec, Event{Kind: TransportError, PE: 1, Err: errReset}, []Action{
				disconnect(1), unreachable(1, errReset), connect(2, 11*sec)}, 11 * sec, StateConnecting},
			// Both attempts ran out (at 11 s and 12 s) before this event at 12.5 s.
			step{12*sec + 500*ms, Event{Kind: HeartbeatAck, PE: 9}, []Action{
				disconnect(2), unreachable(2, ErrConnectTimeout), connect(3, 12*sec),
				disconnect(3), unreachable(3, ErrConnectTimeout), {Kind: Resolve}}, 13 * sec, StateResolving},
		)},
		{name: "connect attempts are bounded", cfg: with(small, func(c *Config) { c.MaxAttempts = 2 }), steps: append(openTo1(small),
			step{sec, Event{Kind: BusinessCardReceived, Candidates: cands(2, 3, 4)}, nil, none, StateConnected},
			step{sec, Event{Kind: TransportError, PE: 1, Err: errReset}, []Action{
				disconnect(1), unreachable(1, errReset), connect(2, 2*sec)}, 2 * sec, StateConnecting},
			step{sec, Event{Kind: ConnectFailed, PE: 2, Err: errRefuse}, []Action{unreachable(2, errRefuse), connect(3, 2*sec)}, 2 * sec, StateConnecting},
			step{sec, Event{Kind: ConnectFailed, PE: 3, Err: errRefuse}, []Action{unreachable(3, errRefuse), failWith(ErrAttemptsExhausted)}, none, StateFailed},
		), check: wantErr(ErrAttemptsExhausted, errRefuse)},
		{name: "callback refusal moves on to the next element", cfg: Config{Callback: true}, steps: append(openTo1(Config{}),
			step{sec, Event{Kind: TransportError, PE: 1, Err: errReset}, []Action{
				disconnect(1), unreachable(1, errReset), {Kind: Resolve}}, 31 * sec, StateResolving},
			step{sec, Event{Kind: Resolved, Candidates: cands(2, 3)}, []Action{connect(2, 6*sec)}, 6 * sec, StateConnecting},
			step{sec, Event{Kind: Connected, PE: 2}, []Action{{Kind: Callback, Old: 1, New: 2}}, 31 * sec, StateCalling},
			step{sec, Event{Kind: CallbackDone, Err: errNo}, []Action{disconnect(2), connect(3, 6*sec)}, 6 * sec, StateConnecting},
			step{sec, Event{Kind: Connected, PE: 3}, []Action{{Kind: Callback, Old: 1, New: 3}}, 31 * sec, StateCalling},
			step{sec, Event{Kind: CallbackDone}, []Action{{Kind: Replay, PE: 3}}, 31 * sec, StateReplaying},
			step{sec, Event{Kind: ReplayDone}, []Action{{Kind: Indicate, Old: 1, New: 3}}, none, StateConnected},
		)},
		{name: "callback refusal of the last allowed attempt fails", cfg: Config{Callback: true, MaxAttempts: 1}, steps: append(openTo1(Config{}),
			step{sec, Event{Kind: BusinessCardReceived, Candidates: cands(2, 3)}, nil, none, StateConnected},
			step{sec, Event{Kind: TransportError, PE: 1, Err: errReset}, []Action{
				disconnect(1), unreachable(1, errReset), connect(2, 6*sec)}, 6 * sec, StateConnecting},
			step{sec, Event{Kind: Connected, PE: 2}, []Action{{Kind: Callback, Old: 1, New: 2}}, 31 * sec, StateCalling},
			step{sec, Event{Kind: CallbackDone, Err: errNo}, []Action{disconnect(2), failWith(ErrAttemptsExhausted)}, none, StateFailed},
		), check: wantErr(ErrAttemptsExhausted, errNo)},
		{name: "a refusal wrapping ErrRefused ends the session", cfg: Config{Callback: true}, steps: append(openTo1(Config{}),
			step{sec, Event{Kind: BusinessCardReceived, Candidates: cands(2, 3)}, nil, none, StateConnected},
			step{sec, Event{Kind: TransportError, PE: 1, Err: errReset}, []Action{
				disconnect(1), unreachable(1, errReset), connect(2, 6*sec)}, 6 * sec, StateConnecting},
			step{sec, Event{Kind: Connected, PE: 2}, []Action{{Kind: Callback, Old: 1, New: 2}}, 31 * sec, StateCalling},
			step{sec, Event{Kind: CallbackDone, Err: fmt.Errorf("stale state: %w", ErrRefused)}, []Action{disconnect(2), failWith(ErrRefused)}, none, StateFailed},
		), check: wantErr(ErrRefused)},
		{name: "GOAWAY fails over without reporting the element", cfg: small, steps: append(openTo1(small),
			step{sec, Event{Kind: GoAway, PE: 3}, nil, none, StateConnected}, // not the connected element
			step{sec, Event{Kind: GoAway, PE: 1}, []Action{disconnect(1), {Kind: Resolve}}, 4 * sec, StateResolving},
			step{sec, Event{Kind: Resolved, Candidates: cands(1, 2)}, []Action{connect(2, 2*sec)}, 2 * sec, StateConnecting},
		)},
		{name: "a callback that never returns fails at the deadline and its element is disconnected",
			cfg: with(small, func(c *Config) { c.Callback = true }), steps: append(openTo1(small),
				step{sec, Event{Kind: FailoverRequest}, []Action{disconnect(1), unreachable(1, ErrRequested), {Kind: Resolve}}, 4 * sec, StateResolving},
				step{sec, Event{Kind: Resolved, Candidates: cands(2)}, []Action{connect(2, 2*sec)}, 2 * sec, StateConnecting},
				step{sec, Event{Kind: Connected, PE: 2}, []Action{{Kind: Callback, Old: 1, New: 2}}, 4 * sec, StateCalling},
				step{4 * sec, Event{Kind: Timer}, []Action{disconnect(2), failWith(ErrTimeout)}, none, StateFailed},
				step{5 * sec, Event{Kind: CallbackDone}, nil, none, StateFailed},
			)},
		{name: "cookie echoed only once one was received, and the newest", cfg: small, steps: append(openTo1(small),
			step{sec, Event{Kind: TransportError, PE: 1, Err: errReset}, []Action{
				disconnect(1), unreachable(1, errReset), {Kind: Resolve}}, 4 * sec, StateResolving},
			step{sec, Event{Kind: Resolved, Candidates: cands(2, 3)}, []Action{connect(2, 2*sec)}, 2 * sec, StateConnecting},
			step{sec, Event{Kind: Connected, PE: 2}, []Action{{Kind: Replay, PE: 2}}, 4 * sec, StateReplaying}, // no cookie, no echo
			step{sec, Event{Kind: ReplayDone}, []Action{{Kind: Indicate, Old: 1, New: 2}}, none, StateConnected},
			step{2 * sec, Event{Kind: CookieReceived, Cookie: []byte("one")}, nil, none, StateConnected},
			step{3 * sec, Event{Kind: CookieReceived, Cookie: []byte("two")}, nil, none, StateConnected},
			step{3 * sec, Event{Kind: CookieReceived}, nil, none, StateConnected}, // an empty cookie keeps the last
			step{4 * sec, Event{Kind: TransportError, PE: 2, Err: errReset}, []Action{
				disconnect(2), unreachable(2, errReset), {Kind: Resolve}}, 7 * sec, StateResolving},
			step{4 * sec, Event{Kind: Resolved, Candidates: cands(1, 2, 3)}, []Action{connect(1, 5*sec)}, 5 * sec, StateConnecting},
			step{4 * sec, Event{Kind: Connected, PE: 1}, []Action{
				{Kind: SendCookieEcho, PE: 1, Cookie: []byte("two")}, {Kind: Replay, PE: 1}}, 7 * sec, StateReplaying},
		)},
		{name: "a cookie before Open is not kept", cfg: small, steps: []step{
			{0, Event{Kind: CookieReceived, Cookie: []byte("stray")}, nil, none, StateIdle},
			{0, Event{Kind: Open, Candidates: cands(1)}, []Action{connect(1, sec)}, sec, StateConnecting},
			{0, Event{Kind: Connected, PE: 1}, []Action{{Kind: Established, PE: 1}}, none, StateConnected},
			{0, Event{Kind: FailoverRequest}, []Action{disconnect(1), unreachable(1, ErrRequested), {Kind: Resolve}}, 3 * sec, StateResolving},
			{0, Event{Kind: Resolved, Candidates: cands(2)}, []Action{connect(2, sec)}, sec, StateConnecting},
			{0, Event{Kind: Connected, PE: 2}, []Action{{Kind: Replay, PE: 2}}, 3 * sec, StateReplaying},
		}},
		{name: "a Connected for an element not being connected is disconnected", cfg: small, steps: append(openTo1(small),
			step{sec, Event{Kind: Connected, PE: 8}, []Action{disconnect(8)}, none, StateConnected},
			step{sec, Event{Kind: Connected, PE: 1}, nil, none, StateConnected}, // the live one: left alone
		)},
		{name: "the new element breaking during replay is reported and the next tried", cfg: small, steps: append(openTo1(small),
			step{sec, Event{Kind: TransportError, PE: 1, Err: errReset}, []Action{
				disconnect(1), unreachable(1, errReset), {Kind: Resolve}}, 4 * sec, StateResolving},
			step{sec, Event{Kind: Resolved, Candidates: cands(2, 3)}, []Action{connect(2, 2*sec)}, 2 * sec, StateConnecting},
			step{sec, Event{Kind: Connected, PE: 2}, []Action{{Kind: Replay, PE: 2}}, 4 * sec, StateReplaying},
			step{sec, Event{Kind: TransportError, PE: 1, Err: errReset}, nil, 4 * sec, StateReplaying}, // the old one: stale
			step{sec, Event{Kind: TransportError, PE: 2, Err: errReset}, []Action{
				disconnect(2), unreachable(2, errReset), connect(3, 2*sec)}, 2 * sec, StateConnecting},
			step{sec, Event{Kind: Connected, PE: 3}, []Action{{Kind: Replay, PE: 3}}, 4 * sec, StateReplaying},
			step{sec, Event{Kind: ReplayDone, Replayed: 4}, []Action{{Kind: Indicate, Old: 1, New: 3, Replayed: 4}}, none, StateConnected},
		)},
		{name: "heartbeat limit on the new element during the callback", cfg: with(small, func(c *Config) { c.Callback = true; c.HeartbeatMisses = 2 }), steps: append(openTo1(small),
			step{sec, Event{Kind: HeartbeatMiss, PE: 1}, nil, none, StateConnected},
			step{sec, Event{Kind: HeartbeatMiss, PE: 1}, []Action{disconnect(1), unreachable(1, ErrHeartbeatsMissed), {Kind: Resolve}}, 4 * sec, StateResolving},
			step{sec, Event{Kind: Resolved, Candidates: cands(2, 3)}, []Action{connect(2, 2*sec)}, 2 * sec, StateConnecting},
			step{sec, Event{Kind: Connected, PE: 2}, []Action{{Kind: Callback, Old: 1, New: 2}}, 4 * sec, StateCalling},
			step{sec, Event{Kind: HeartbeatMiss, PE: 2}, nil, 4 * sec, StateCalling},
			step{sec, Event{Kind: HeartbeatMiss, PE: 2}, []Action{disconnect(2), unreachable(2, ErrHeartbeatsMissed), connect(3, 2*sec)}, 2 * sec, StateConnecting},
			step{sec, Event{Kind: CallbackDone}, nil, 2 * sec, StateConnecting}, // the abandoned callback's answer
		)},
		{name: "Close ends the machine; later events do nothing", cfg: small, steps: append(openTo1(small),
			step{sec, Event{Kind: TransportError, PE: 1, Err: errReset}, []Action{
				disconnect(1), unreachable(1, errReset), {Kind: Resolve}}, 4 * sec, StateResolving},
			step{sec, Event{Kind: Close}, nil, none, StateClosed},
			step{sec, Event{Kind: Resolved, Candidates: cands(2)}, nil, none, StateClosed},
			step{9 * sec, Event{Kind: Timer}, nil, none, StateClosed},
		)},
	})
}

// failoverTo2 loses element 1 at 1 s with the snapshot st and reaches the
// connect to element 2 (named by a business card), under small timings.
func failoverTo2(st StreamState, first ...Action) []step {
	return append(openTo1(small),
		step{0, Event{Kind: BusinessCardReceived, Candidates: cands(2, 3)}, nil, none, StateConnected},
		step{sec, Event{Kind: TransportError, PE: 1, Err: errReset, Stream: st},
			append([]Action{disconnect(1), unreachable(1, errReset)}, first...), 2 * sec, StateConnecting},
	)
}

func TestMachineDataInDoubt(t *testing.T) {
	cookie := step{0, Event{Kind: CookieReceived, Cookie: []byte("c")}, nil, none, StateConnected}
	echo := Action{Kind: SendCookieEcho, PE: 2, Cookie: []byte("c")}
	withCookie := func(steps []step) []step {
		// the cookie arrives while element 1 is connected (before the business card)
		return append(append(steps[:3:3], cookie), steps[3:]...)
	}
	conn2 := connect(2, 2*sec)
	lostOne := func(st StreamState) []step {
		return append(openTo1(small),
			step{sec, Event{Kind: TransportError, PE: 1, Err: errReset, Stream: st}, []Action{
				disconnect(1), unreachable(1, errReset), failWith(ErrDataInDoubt)}, none, StateFailed})
	}
	runTests(t, []machineTest{
		{name: "partly read message, no callback: fail at once", cfg: small,
			steps: lostOne(StreamState{PartialRead: true}), check: wantErr(ErrDataInDoubt, errReset)},
		{name: "stream mode, bytes used: fail at once, even with a callback", cfg: with(small, func(c *Config) { c.Mode = ModeStream; c.Callback = true }),
			steps: lostOne(StreamState{Used: true}), check: func(t *testing.T, m *Machine) {
				var e *Error
				if !errors.As(m.Err(), &e) || e.Doubt != DoubtStream || !errors.Is(e, ErrDataInDoubt) {
					t.Errorf("Err() = %#v, want ErrDataInDoubt with DoubtStream", m.Err())
				}
			}},
		{name: "stream mode, nothing used yet: reconnect, no replay", cfg: with(small, func(c *Config) { c.Mode = ModeStream }),
			steps: append(failoverTo2(StreamState{Unacked: 0}, conn2),
				step{sec, Event{Kind: Connected, PE: 2}, []Action{{Kind: Indicate, Old: 1, New: 2}}, none, StateConnected})},
		{name: "no replay with unacked messages, no callback: fail at once", cfg: with(small, func(c *Config) { c.Mode = ModeNoReplay }),
			steps: lostOne(StreamState{Unacked: 3, Used: true})},
		{name: "no replay, nothing unacked: fail over without replay", cfg: with(small, func(c *Config) { c.Mode = ModeNoReplay }),
			steps: append(failoverTo2(StreamState{Used: true}, conn2),
				step{sec, Event{Kind: Connected, PE: 2}, []Action{{Kind: Indicate, Old: 1, New: 2}}, none, StateConnected})},
		{name: "replay mode: unacked messages are replayed, not in doubt", cfg: small,
			steps: append(failoverTo2(StreamState{Unacked: 3, Used: true}, conn2),
				step{sec, Event{Kind: Connected, PE: 2}, []Action{{Kind: Replay, PE: 2}}, 4 * sec, StateReplaying},
				step{sec, Event{Kind: ReplayDone, Replayed: 3}, []Action{{Kind: Indicate, Old: 1, New: 2, Replayed: 3}}, none, StateConnected})},
		{name: "no replay, unacked: the callback settles it", cfg: with(small, func(c *Config) { c.Mode = ModeNoReplay; c.Callback = true }),
			steps: append(failoverTo2(StreamState{Unacked: 2}, conn2),
				step{sec, Event{Kind: Connected, PE: 2}, []Action{{Kind: Callback, Old: 1, New: 2, Doubt: DoubtUnacked}}, 4 * sec, StateCalling},
				step{sec, Event{Kind: CallbackDone, Settled: DoubtUnacked}, []Action{{Kind: Indicate, Old: 1, New: 2}}, none, StateConnected})},
		{name: "a callback that accepts without settling leaves the doubt: fail", cfg: with(small, func(c *Config) { c.Callback = true }),
			steps: append(failoverTo2(StreamState{PartialRead: true}, conn2),
				step{sec, Event{Kind: Connected, PE: 2}, []Action{{Kind: Callback, Old: 1, New: 2, Doubt: DoubtPartialRead}}, 4 * sec, StateCalling},
				step{sec, Event{Kind: CallbackDone, Settled: DoubtLost}, []Action{disconnect(2), failWith(ErrDataInDoubt)}, none, StateFailed}),
			check: func(t *testing.T, m *Machine) {
				var e *Error
				if !errors.As(m.Err(), &e) || e.Doubt != DoubtPartialRead {
					t.Errorf("Err() = %#v, want the partial read in doubt", m.Err())
				}
			}},
		{name: "partly read message settled by the callback", cfg: with(small, func(c *Config) { c.Callback = true }),
			steps: append(failoverTo2(StreamState{PartialRead: true, Unacked: 1}, conn2),
				step{sec, Event{Kind: Connected, PE: 2}, []Action{{Kind: Callback, Old: 1, New: 2, Doubt: DoubtPartialRead}}, 4 * sec, StateCalling},
				step{sec, Event{Kind: CallbackDone, Settled: DoubtPartialRead}, []Action{{Kind: Replay, PE: 2}}, 4 * sec, StateReplaying},
				step{sec, Event{Kind: ReplayDone, Replayed: 1}, []Action{{Kind: Indicate, Old: 1, New: 2, Replayed: 1}}, none, StateConnected})},
		{name: "lost messages, no cookie, no callback: fail at once", cfg: small,
			steps: lostOne(StreamState{Lost: true})},
		{name: "lost messages settled by a cookie echo the new element accepts", cfg: small,
			steps: append(withCookie(failoverTo2(StreamState{Lost: true}, conn2)),
				step{sec, Event{Kind: Connected, PE: 2}, []Action{echo}, 2 * sec, StateEchoing},
				step{sec, Event{Kind: CookieEchoResult, PE: 3, Accepted: true}, nil, 2 * sec, StateEchoing}, // another element's answer
				step{sec + ms, Event{Kind: CookieEchoResult, PE: 2, Accepted: true}, []Action{{Kind: Replay, PE: 2}}, 4 * sec, StateReplaying},
				step{sec + ms, Event{Kind: ReplayDone}, []Action{{Kind: Indicate, Old: 1, New: 2}}, none, StateConnected})},
		{name: "lost messages, cookie rejected, no callback: fail", cfg: small,
			steps: append(withCookie(failoverTo2(StreamState{Lost: true}, conn2)),
				step{sec, Event{Kind: Connected, PE: 2}, []Action{echo}, 2 * sec, StateEchoing},
				step{sec, Event{Kind: CookieEchoResult, PE: 2}, []Action{disconnect(2), failWith(ErrDataInDoubt)}, none, StateFailed})},
		{name: "lost messages, echo unanswered: the callback is asked and settles", cfg: with(small, func(c *Config) { c.Callback = true }),
			steps: append(withCookie(failoverTo2(StreamState{Lost: true}, conn2)),
				step{sec, Event{Kind: Connected, PE: 2}, []Action{echo}, 2 * sec, StateEchoing},
				step{2 * sec, Event{Kind: Timer}, []Action{{Kind: Callback, Old: 1, New: 2, Doubt: DoubtLost}}, 4 * sec, StateCalling},
				step{2 * sec, Event{Kind: CallbackDone, Settled: DoubtLost}, []Action{{Kind: Replay, PE: 2}}, 4 * sec, StateReplaying})},
		{name: "doubt of a new element that breaks adds to the failover's", cfg: small,
			steps: append(failoverTo2(StreamState{}, conn2),
				step{sec, Event{Kind: Connected, PE: 2}, []Action{{Kind: Replay, PE: 2}}, 4 * sec, StateReplaying},
				step{sec, Event{Kind: TransportError, PE: 2, Err: errReset, Stream: StreamState{PartialRead: true}}, []Action{
					disconnect(2), unreachable(2, errReset), failWith(ErrDataInDoubt)}, none, StateFailed})},
	})
}

func TestConfigDefaults(t *testing.T) {
	want := Config{HeartbeatMisses: 3, ConnectTimeout: 5 * sec, MaxAttempts: 16,
		RetryDelay: 250 * ms, MaxRetryDelay: 4 * sec, FailoverTimeout: 30 * sec}
	if diff := cmp.Diff(want, New(Config{}).Config()); diff != "" {
		t.Errorf("zero Config (-want +got):\n%s", diff)
	}
	got := New(Config{Mode: ModeStream, Callback: true, HeartbeatMisses: -1, RetryDelay: 10 * sec, MaxRetryDelay: sec}).Config()
	want = Config{Mode: ModeStream, Callback: true, HeartbeatMisses: 3, ConnectTimeout: 5 * sec, MaxAttempts: 16,
		RetryDelay: 10 * sec, MaxRetryDelay: 10 * sec, FailoverTimeout: 30 * sec}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("set Config (-want +got):\n%s", diff)
	}
}

func TestStrings(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{Action{Kind: Indicate, Old: 0x1a, New: 0xbeef, Replayed: 3}.String(), "Indicate(0x0000001a -> 0x0000beef, 3 replayed)"},
		{Action{Kind: Callback, Old: 1, New: 2, Doubt: DoubtPartialRead | DoubtLost}.String(), "Callback(0x00000001 -> 0x00000002, in doubt: partial-read|lost)"},
		{Event{Kind: Resolved, Candidates: cands(1, 2)}.String(), "Resolved(0x00000001 0x00000002)"},
		{Event{Kind: CallbackDone, Settled: DoubtUnacked}.String(), "CallbackDone(err=<nil> settled=unacked)"},
		{Doubt(0).String(), "none"},
		{(DoubtStream | 0x80).String(), "stream|0x80"},
		{EventKind(99).String(), "EventKind(99)"},
		{StateEchoing.String(), "Echoing"},
		{StateHolding.String(), "Holding"},
		{ModeNoReplay.String(), "no-replay"},
		{(&Error{Err: ErrDataInDoubt, Lost: 0x10, Doubt: DoubtLost, Cause: errReset}).Error(),
			"failover: data in doubt, not spliced onto another pool element (lost pool element 0x00000010) (in doubt: lost): connection reset by peer"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	var ne interface{ Timeout() bool }
	if !errors.As(&Error{Err: ErrTimeout}, &ne) || !ne.Timeout() || (&Error{Err: ErrRefused}).Timeout() {
		t.Error("Timeout() wrong")
	}
}

// replayLoss loses element from at at, with the acknowledgement acked in
// its snapshot, and fails over to element to, replaying one message. hold
// is the hold-back the loss must wait before the failover starts (0: none).
// Under small timings.
func replayLoss(at time.Duration, from, to asap.PEID, acked uint64, hold time.Duration) []step {
	loss := Event{Kind: TransportError, PE: from, Err: errReset, Stream: StreamState{Unacked: 1, Acked: acked}}
	var steps []step
	if hold > 0 {
		steps = append(steps,
			step{at, loss, []Action{disconnect(from)}, at + hold, StateHolding},
			step{at + hold, Event{Kind: Timer}, []Action{unreachable(from, errReset), {Kind: Resolve}}, at + hold + 3*sec, StateResolving})
	} else {
		steps = append(steps,
			step{at, loss, []Action{disconnect(from), unreachable(from, errReset), {Kind: Resolve}}, at + 3*sec, StateResolving})
	}
	start := at + hold
	return append(steps,
		step{start, Event{Kind: Resolved, Candidates: cands(from, to)}, []Action{connect(to, start+sec)}, start + sec, StateConnecting},
		step{start, Event{Kind: Connected, PE: to}, []Action{{Kind: Replay, PE: to}}, start + 3*sec, StateReplaying},
		step{start, Event{Kind: ReplayDone, Replayed: 1}, []Action{{Kind: Indicate, Old: from, New: to, Replayed: 1}}, none, StateConnected})
}

func concat(parts ...[]step) []step {
	var all []step
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}

// TestMachineReplayUnacked: an element lost before it acknowledged any of
// the messages the last failover replayed to it holds the next failover
// back (small: RetryDelay 500 ms, FailoverTimeout 3 s), longer for each
// such loss in a row, and the MaxAttempts-th gives up.
func TestMachineReplayUnacked(t *testing.T) {
	giveUp := with(small, func(c *Config) { c.MaxAttempts = 3 })
	runTests(t, []machineTest{
		{name: "the first loss after an acknowledged replay does not wait", cfg: small, steps: concat(openTo1(small),
			replayLoss(sec, 1, 2, 0, 0), // no replay before: no wait
			replayLoss(2*sec, 2, 3, 1, 0),
		)},
		{name: "a failover that replayed nothing does not count", cfg: small, steps: concat(openTo1(small),
			replayLoss(sec, 1, 2, 0, 0)[:3],
			[]step{{sec, Event{Kind: ReplayDone}, []Action{{Kind: Indicate, Old: 1, New: 2}}, none, StateConnected}},
			replayLoss(2*sec, 2, 3, 0, 0),
		)},
		{name: "losses in a row wait RetryDelay, 2x, 4x, capped at FailoverTimeout", cfg: small, steps: concat(openTo1(small),
			replayLoss(sec, 1, 2, 0, 0),
			replayLoss(2*sec, 2, 3, 0, 500*ms),
			replayLoss(3*sec, 3, 4, 0, sec),
			replayLoss(5*sec, 4, 5, 0, 2*sec),
			replayLoss(8*sec, 5, 6, 0, 3*sec), // 4 s, capped
			replayLoss(12*sec, 6, 7, 0, 3*sec),
		)},
		{name: "an acknowledgement in between resets the count", cfg: small, steps: concat(openTo1(small),
			replayLoss(sec, 1, 2, 0, 0),
			replayLoss(2*sec, 2, 3, 0, 500*ms),
			replayLoss(3*sec, 3, 4, 0, sec),
			replayLoss(5*sec, 4, 5, 1, 0), // 4 acknowledged message 1
			replayLoss(6*sec, 5, 6, 1, 500*ms),
		)},
		{name: "the MaxAttempts-th loss in a row gives up", cfg: giveUp, steps: concat(openTo1(giveUp),
			replayLoss(sec, 1, 2, 0, 0),
			replayLoss(2*sec, 2, 3, 0, 500*ms),
			replayLoss(3*sec, 3, 4, 0, sec),
			[]step{
				{5 * sec, Event{Kind: TransportError, PE: 4, Err: errReset, Stream: StreamState{Unacked: 1}}, []Action{
					disconnect(4), failWith(ErrReplayUnacked)}, none, StateFailed},
				{5 * sec, Event{Kind: Resolved, Candidates: cands(5)}, nil, none, StateFailed},
			},
		), check: func(t *testing.T, m *Machine) {
			wantErr(ErrReplayUnacked, errReset)(t, m)
			var e *Error
			if !errors.As(m.Err(), &e) || e.Lost != 4 || e.Timeout() {
				t.Errorf("Err() = %#v, want element 4 lost, no timeout", m.Err())
			}
		}},
		{name: "a GOAWAY counts; its element is not reported after the hold-back", cfg: small, steps: concat(openTo1(small),
			replayLoss(sec, 1, 2, 0, 0),
			[]step{
				{2 * sec, Event{Kind: GoAway, PE: 2}, []Action{disconnect(2)}, 2*sec + 500*ms, StateHolding},
				{2*sec + 500*ms, Event{Kind: Timer}, []Action{{Kind: Resolve}}, 5*sec + 500*ms, StateResolving},
			},
		)},
		{name: "during the hold-back the machine waits; a late event runs the hold-back's end first", cfg: small, steps: concat(openTo1(small),
			replayLoss(sec, 1, 2, 0, 0),
			[]step{
				{2 * sec, Event{Kind: TransportError, PE: 2, Err: errReset}, []Action{disconnect(2)}, 2*sec + 500*ms, StateHolding},
				{2 * sec, Event{Kind: TransportError, PE: 2, Err: errReset}, nil, 2*sec + 500*ms, StateHolding}, // stale
				{2 * sec, Event{Kind: FailoverRequest}, nil, 2*sec + 500*ms, StateHolding},
				{2 * sec, Event{Kind: BusinessCardReceived, Candidates: cands(3)}, nil, 2*sec + 500*ms, StateHolding},
				{2 * sec, Event{Kind: Connected, PE: 9}, []Action{disconnect(9)}, 2*sec + 500*ms, StateHolding},
				// The failover starts at the hold-back's end, its deadline from there.
				{3 * sec, Event{Kind: Resolved, Candidates: cands(4)}, []Action{
					unreachable(2, errReset), connect(3, 3*sec+500*ms)}, 3*sec + 500*ms, StateConnecting},
			},
		)},
		{name: "Close during the hold-back ends the machine", cfg: small, steps: concat(openTo1(small),
			replayLoss(sec, 1, 2, 0, 0),
			[]step{
				{2 * sec, Event{Kind: TransportError, PE: 2, Err: errReset}, []Action{disconnect(2)}, 2*sec + 500*ms, StateHolding},
				{2*sec + 100*ms, Event{Kind: Close}, nil, none, StateClosed},
				{3 * sec, Event{Kind: Timer}, nil, none, StateClosed},
			},
		)},
	})
}
