package failover

import (
	"errors"
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

// openAt connects the initial element 1 (from a resolution answering 1, 2, 3)
// at time 0; the steps that follow start from StateConnected.
func openTo1() []step {
	return []step{
		{0, Event{Kind: Open}, []Action{{Kind: Resolve}}, 30 * time.Second, StateResolving},
		{0, Event{Kind: Resolved, Candidates: cands(1, 2, 3)}, []Action{connect(1, 5*time.Second)}, 5 * time.Second, StateConnecting},
		{time.Millisecond, Event{Kind: Connected, PE: 1}, []Action{{Kind: Established, PE: 1}}, none, StateConnected},
	}
}

func TestMachine(t *testing.T) {
	sec := time.Second
	ms := time.Millisecond
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"reset fails over at once to the next in the pool's order", Config{}, append(openTo1(),
			step{10 * sec, Event{Kind: TransportError, PE: 1, Err: errReset}, []Action{
				disconnect(1), unreachable(1, errReset), {Kind: Resolve}}, 40 * sec, StateResolving},
			step{10*sec + ms, Event{Kind: Resolved, Candidates: cands(1, 2, 3)}, []Action{
				connect(2, 15*sec+ms)}, 15*sec + ms, StateConnecting},
			step{10*sec + 2*ms, Event{Kind: Connected, PE: 2}, []Action{{Kind: Replay, PE: 2}}, 40 * sec, StateReplaying},
			step{10*sec + 3*ms, Event{Kind: ReplayDone, Replayed: 7}, []Action{
				{Kind: Indicate, Old: 1, New: 2, Replayed: 7}}, none, StateConnected},
		)},
		{"initial connect tries the Open candidates first, then resolves", Config{}, []step{
			{0, Event{Kind: Open, Candidates: cands(9)}, []Action{connect(9, 5*sec)}, 5 * sec, StateConnecting},
			{ms, Event{Kind: ConnectFailed, PE: 9, Err: errRefuse}, []Action{unreachable(9, errRefuse), {Kind: Resolve}}, 30 * sec, StateResolving},
			{2 * ms, Event{Kind: Resolved, Candidates: cands(9, 4)}, []Action{connect(4, 5*sec+2*ms)}, 5*sec + 2*ms, StateConnecting},
			{3 * ms, Event{Kind: Connected, PE: 4}, []Action{{Kind: Established, PE: 4}}, none, StateConnected},
		}},
		{"callback refusal moves on to the next element", Config{Callback: true}, append(openTo1(),
			step{sec, Event{Kind: TransportError, PE: 1, Err: errReset}, []Action{
				disconnect(1), unreachable(1, errReset), {Kind: Resolve}}, 31 * sec, StateResolving},
			step{sec, Event{Kind: Resolved, Candidates: cands(2, 3)}, []Action{connect(2, 6*sec)}, 6 * sec, StateConnecting},
			step{sec, Event{Kind: Connected, PE: 2}, []Action{{Kind: Callback, Old: 1, New: 2}}, 31 * sec, StateCalling},
			step{sec, Event{Kind: CallbackDone, Err: errNo}, []Action{disconnect(2), connect(3, 6*sec)}, 6 * sec, StateConnecting},
			step{sec, Event{Kind: Connected, PE: 3}, []Action{{Kind: Callback, Old: 1, New: 3}}, 31 * sec, StateCalling},
			step{sec, Event{Kind: CallbackDone}, []Action{{Kind: Replay, PE: 3}}, 31 * sec, StateReplaying},
			step{sec, Event{Kind: ReplayDone}, []Action{{Kind: Indicate, Old: 1, New: 3}}, none, StateConnected},
		)},
		{"a partly read message and no callback: fail at once, connect nowhere", Config{}, append(openTo1(),
			step{sec, Event{Kind: TransportError, PE: 1, Err: errReset, Stream: StreamState{PartialRead: true}}, []Action{
				disconnect(1), unreachable(1, errReset), failWith(ErrDataInDoubt)}, none, StateFailed},
		)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { run(t, tt.cfg, tt.steps) })
	}
}
