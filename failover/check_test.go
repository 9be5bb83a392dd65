package failover

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/rsp-go/rsp/asap"
)

// checker feeds a machine and checks, after every event, the invariants
// that hold whatever the events: it keeps its own account of the episode
// (initial connect or failover) from the events and actions alone.
//
// Before an event it feeds a Timer at each deadline that has passed, so
// that it knows the state the event meets; a second machine (late) gets the
// same events without those timers and must produce the same actions, as
// the doc promises that a late timer changes nothing.
type checker struct {
	t    testing.TB
	m    *Machine
	late *Machine
	cfg  Config
	now  time.Time
	log  []string // for failure messages

	episode     bool
	initial     bool
	end         time.Time // the episode's deadline
	lost        asap.PEID
	tried       map[asap.PEID]bool
	unreachable map[asap.PEID]bool
	attempts    int
	target      asap.PEID
	pending     Doubt
	cookie      []byte
	failed      bool

	// Losses of elements that acknowledged none of their replay.
	replayedTo  bool
	lossAcked   uint64 // at the detection of the episode under way
	replayAcked uint64 // at the detection of the last failover that replayed
	unacked     int    // such losses in a row
	holding     bool
	holdEnd     time.Time
	held        Event // the detection whose failover is held back
}

func newChecker(t testing.TB, cfg Config) *checker {
	return &checker{t: t, m: New(cfg), late: New(cfg), cfg: cfg.withDefaults()}
}

var errCmp = cmp.Comparer(func(a, b error) bool {
	return (a == nil) == (b == nil) && (a == nil || a.Error() == b.Error())
})

func (c *checker) fatalf(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf("%s\nafter:\n  %s", fmt.Sprintf(format, args...), joinTail(c.log, 40))
}

func joinTail(s []string, n int) string {
	if len(s) > n {
		s = s[len(s)-n:]
	}
	out := ""
	for i, l := range s {
		if i > 0 {
			out += "\n  "
		}
		out += l
	}
	return out
}

// handle feeds ev at now (never before the previous event) and returns the
// actions of the event itself and of the timers that expired before it.
func (c *checker) handle(now time.Time, ev Event) []Action {
	c.t.Helper()
	if now.Before(c.now) {
		now = c.now
	}
	var all []Action
	for d := c.m.Deadline(); !d.IsZero() && !now.Before(d); d = c.m.Deadline() {
		all = append(all, c.step(d, Event{Kind: Timer})...)
	}
	all = append(all, c.step(now, ev)...)
	lateActs := c.late.Handle(now, ev)
	if diff := cmp.Diff(all, lateActs, errCmp, cmpopts.EquateEmpty()); diff != "" {
		c.fatalf("a late event gave other actions than timers on time (-on time +late):\n%s", diff)
	}
	return all
}

func (c *checker) doubtOf(st StreamState) Doubt { return c.m.doubtOf(st) }

// unsettleable mirrors the documented rule: what no configured means can settle.
func (c *checker) unsettleable(d Doubt) Doubt {
	u := d & DoubtStream
	if !c.cfg.Callback {
		u |= d & (DoubtPartialRead | DoubtUnacked)
		if c.cookie == nil {
			u |= d & DoubtLost
		}
	}
	return u
}

var detections = []EventKind{TransportError, HeartbeatMiss, FailoverRequest, GoAway}

func (c *checker) step(now time.Time, ev Event) []Action {
	c.t.Helper()
	c.now = now
	prev, cur := c.m.State(), c.m.Current()
	acts := c.m.Handle(now, ev)
	c.log = append(c.log, fmt.Sprintf("%v %v %+v -> %v: %v", now.Sub(t0), ev, ev.Stream, c.m.State(), acts))
	if prev == StateFailed || prev == StateClosed {
		if len(acts) != 0 {
			c.fatalf("actions after the end: %v", acts)
		}
		return acts
	}
	up := prev == StateEchoing || prev == StateCalling || prev == StateReplaying || prev == StateConnected
	detected := slices.Contains(detections, ev.Kind) && up && len(acts) > 0 && acts[0].Kind == Disconnect && acts[0].PE == cur

	// The episode, as the checker sees it.
	switch {
	case prev == StateIdle && ev.Kind == Open:
		c.startEpisode(now, true)
		if !ev.Deadline.IsZero() && ev.Deadline.Before(c.end) {
			c.end = ev.Deadline
		}
	case prev == StateConnected && detected:
		if c.replayedTo && ev.Stream.Acked == c.replayAcked {
			c.unacked++
		} else {
			c.unacked = 0
		}
		c.replayedTo = false
		ev.PE = cur
		switch {
		case c.unacked >= c.cfg.MaxAttempts:
			if len(acts) != 2 || acts[1].Kind != Fail || !errors.Is(acts[1].Err, ErrReplayUnacked) {
				c.fatalf("loss %d in a row of an element that acknowledged none of its replay (MaxAttempts %d), yet not Disconnect, Fail(ErrReplayUnacked): %v",
					c.unacked, c.cfg.MaxAttempts, acts)
			}
		case c.unacked > 0:
			// RetryDelay * 2^(n-1), at most FailoverTimeout.
			hold := c.cfg.FailoverTimeout
			if f := float64(c.cfg.RetryDelay) * math.Pow(2, float64(c.unacked-1)); f < float64(hold) {
				hold = time.Duration(f)
			}
			if len(acts) != 1 || c.m.State() != StateHolding || !c.m.Deadline().Equal(now.Add(hold)) {
				c.fatalf("loss %d in a row of an element that acknowledged none of its replay: %v, state %v until %v, want only the disconnect and Holding until %v",
					c.unacked, acts, c.m.State(), c.m.Deadline().Sub(t0), now.Add(hold).Sub(t0))
			}
			c.holding, c.holdEnd, c.held = true, now.Add(hold), ev
			c.episode = false
		default:
			c.detect(now, ev, acts)
		}
	case prev == StateHolding && c.m.State() != StateHolding:
		if ev.Kind != Close {
			if ev.Kind != Timer || !now.Equal(c.holdEnd) {
				c.fatalf("the hold-back until %v ended by %v at %v", c.holdEnd.Sub(t0), ev, now.Sub(t0))
			}
			c.detect(now, c.held, acts)
		}
		c.holding = false
	case ev.Kind == ReplayDone && prev == StateReplaying:
		c.replayedTo, c.replayAcked = ev.Replayed > 0, c.lossAcked
	case detected:
		c.pending |= c.doubtOf(ev.Stream)
	case ev.Kind == CookieEchoResult && prev == StateEchoing && ev.PE == cur && ev.Accepted:
		c.pending &^= DoubtLost
	case ev.Kind == CallbackDone && prev == StateCalling && ev.Err == nil:
		c.pending &^= ev.Settled
	case ev.Kind == CookieReceived && prev != StateIdle && len(ev.Cookie) > 0:
		c.cookie = slices.Clone(ev.Cookie)
	}
	if ev.Kind == Connected && prev == StateConnecting && ev.PE == c.target && !c.initial && c.cookie != nil {
		if len(acts) == 0 || acts[0].Kind != SendCookieEcho {
			c.fatalf("connected to %d in a failover with a cookie, but no echo first: %v", ev.PE, acts)
		}
	}

	for i, a := range acts {
		switch a.Kind {
		case Connect:
			if !c.episode {
				c.fatalf("Connect outside a failover: %v", a)
			}
			if c.tried[a.PE] || c.unreachable[a.PE] {
				c.fatalf("Connect to %d, already lost, tried or reported in this failover", a.PE)
			}
			c.tried[a.PE] = true
			c.attempts++
			if c.attempts > c.cfg.MaxAttempts {
				c.fatalf("attempt %d > MaxAttempts %d", c.attempts, c.cfg.MaxAttempts)
			}
			if a.Deadline.After(c.end) || a.Candidate.ID() != a.PE {
				c.fatalf("Connect %v: deadline past the failover's %v, or candidate not PE", a, c.end.Sub(t0))
			}
			c.target = a.PE
		case ReportUnreachable:
			c.unreachable[a.PE] = true
		case SendCookieEcho:
			if c.initial || c.cookie == nil || string(a.Cookie) != string(c.cookie) || a.PE != c.target {
				c.fatalf("SendCookieEcho %q to %d: initial=%v, newest cookie %q, target %d", a.Cookie, a.PE, c.initial, c.cookie, c.target)
			}
		case Callback:
			if !c.cfg.Callback || c.initial || a.Doubt != c.pending || a.Old != c.lost || a.New != c.target {
				c.fatalf("Callback %+v: configured=%v initial=%v, want doubt %v, old %d, new %d", a, c.cfg.Callback, c.initial, c.pending, c.lost, c.target)
			}
		case Replay:
			if c.cfg.Mode != ModeReplay || c.initial || a.PE != c.target {
				c.fatalf("Replay %+v in mode %v (initial=%v, target %d)", a, c.cfg.Mode, c.initial, c.target)
			}
		case Established:
			if !c.initial || a.PE != c.target {
				c.fatalf("Established %d: initial=%v target %d", a.PE, c.initial, c.target)
			}
			c.episode = false
		case Indicate:
			if c.initial || a.Old != c.lost || a.New != c.target || a.New == c.lost {
				c.fatalf("Indicate %+v: want old %d new %d", a, c.lost, c.target)
			}
			if c.pending != 0 {
				c.fatalf("Indicate spliced onto %d with %v in doubt", a.New, c.pending)
			}
			c.episode = false
		case Fail:
			if i != len(acts)-1 || c.failed {
				c.fatalf("Fail not last, or twice: %v", acts)
			}
			c.failed = true
			var e *Error
			if !errors.As(a.Err, &e) || a.Err != c.m.Err() {
				c.fatalf("Fail error %v is not the machine's *Error %v", a.Err, c.m.Err())
			}
			if !slices.ContainsFunc([]error{ErrDataInDoubt, ErrTimeout, ErrAttemptsExhausted, ErrRefused, ErrReplayUnacked}, func(s error) bool { return errors.Is(a.Err, s) }) {
				c.fatalf("Fail error %v is none of the sentinels", a.Err)
			}
			if errors.Is(a.Err, ErrDataInDoubt) && c.pending == 0 {
				c.fatalf("Fail(ErrDataInDoubt) with nothing in doubt")
			}
			c.episode = false
		}
	}

	st, dl := c.m.State(), c.m.Deadline()
	switch st {
	case StateFailed:
		if !c.failed {
			c.fatalf("state Failed without a Fail action")
		}
	case StateHolding:
		if !c.holding || !dl.Equal(c.holdEnd) || c.m.Current() != 0 {
			c.fatalf("state Holding (deadline %v, current %d) but the checker holds=%v until %v", dl.Sub(t0), c.m.Current(), c.holding, c.holdEnd.Sub(t0))
		}
	case StateConnected, StateIdle, StateClosed:
		if !dl.IsZero() {
			c.fatalf("state %v with a deadline %v", st, dl.Sub(t0))
		}
		if st == StateConnected && c.episode {
			c.fatalf("connected without Established or Indicate")
		}
	default:
		if !c.episode {
			c.fatalf("state %v outside an episode", st)
		}
		if !now.Before(c.end) {
			c.fatalf("state %v at %v, at or past the failover deadline %v", st, now.Sub(t0), c.end.Sub(t0))
		}
		if !dl.After(now) || dl.After(c.end) {
			c.fatalf("state %v deadline %v not in (%v, %v]", st, dl.Sub(t0), now.Sub(t0), c.end.Sub(t0))
		}
	}
	return acts
}

// detect starts the failover of the detection ev (whose PE is the lost
// element) at now, with the actions acts.
func (c *checker) detect(now time.Time, ev Event, acts []Action) {
	c.t.Helper()
	c.startEpisode(now, false)
	c.lost = ev.PE
	c.lossAcked = ev.Stream.Acked
	c.tried[ev.PE] = true
	c.pending = c.doubtOf(ev.Stream)
	if c.unsettleable(c.pending) != 0 {
		if last := acts[len(acts)-1]; last.Kind != Fail || !errors.Is(last.Err, ErrDataInDoubt) {
			c.fatalf("data in doubt (%v) that nothing can settle, yet no Fail(ErrDataInDoubt): %v", c.pending, acts)
		}
	}
}

func (c *checker) startEpisode(now time.Time, initial bool) {
	c.episode, c.initial = true, initial
	c.end = now.Add(c.cfg.FailoverTimeout)
	c.lost, c.target, c.attempts, c.pending = 0, 0, 0, 0
	c.tried = map[asap.PEID]bool{}
	c.unreachable = map[asap.PEID]bool{}
}

// source is where the driver's choices come from: a random generator, or a
// fuzzer's bytes.
type source interface {
	intn(n int) int // in [0, n)
	done() bool
}

type randSource struct{ r *rand.Rand }

func (s randSource) intn(n int) int { return s.r.IntN(n) }
func (s randSource) done() bool     { return false }

type byteSource struct{ b []byte }

func (s *byteSource) intn(n int) int {
	if len(s.b) == 0 {
		return 0
	}
	v := int(s.b[0])
	s.b = s.b[1:]
	return v % n
}
func (s *byteSource) done() bool { return len(s.b) == 0 }

type timed struct {
	at time.Time
	ev Event
}

// world plays the session around a machine: it answers actions the way the
// session and the network might (late, never, wrongly), and throws in
// failures, heartbeats, cookies, business cards and stale events.
type world struct {
	c       *checker
	src     source
	now     time.Time
	pending []timed
	acked   uint64 // the cumulative acknowledgement the stream snapshots carry
}

const universe = 8 // element ids 1..8

func randConfig(src source) Config {
	return Config{
		Mode:            Mode(src.intn(3)),
		Callback:        src.intn(2) == 0,
		HeartbeatMisses: 1 + src.intn(4),
		ConnectTimeout:  time.Duration(100+src.intn(900)) * time.Millisecond,
		MaxAttempts:     1 + src.intn(10),
		RetryDelay:      time.Duration(50+src.intn(450)) * time.Millisecond,
		MaxRetryDelay:   time.Duration(100+src.intn(2000)) * time.Millisecond,
		FailoverTimeout: time.Duration(500+src.intn(7500)) * time.Millisecond,
	}
}

func (w *world) randIDs() []Candidate {
	ids := make([]int, universe)
	for i := range ids {
		j := w.src.intn(i + 1)
		ids[i], ids[j] = ids[j], i
	}
	var cs []Candidate
	for _, i := range ids {
		if w.src.intn(2) == 0 {
			cs = append(cs, cand(asap.PEID(i+1)))
		}
	}
	return cs
}

func (w *world) stream() StreamState {
	if w.src.intn(8) == 0 {
		w.acked++
	}
	return StreamState{
		Acked:       w.acked,
		Unacked:     w.src.intn(3),
		PartialRead: w.src.intn(8) == 0,
		Lost:        w.src.intn(5) == 0,
		Used:        w.src.intn(3) == 0,
	}
}

func (w *world) after() time.Time {
	return w.now.Add(time.Duration(w.src.intn(300)) * time.Millisecond)
}

func (w *world) answer(acts []Action) {
	for _, a := range acts {
		switch a.Kind {
		case Connect:
			switch k := w.src.intn(10); {
			case k < 6:
				w.pending = append(w.pending, timed{w.after(), Event{Kind: Connected, PE: a.PE}})
			case k < 8:
				w.pending = append(w.pending, timed{w.after(), Event{Kind: ConnectFailed, PE: a.PE, Err: errRefuse}})
			}
		case Resolve:
			if w.src.intn(5) == 0 {
				w.pending = append(w.pending, timed{w.after(), Event{Kind: Resolved, Err: errResolve}})
			} else if w.src.intn(6) != 0 {
				w.pending = append(w.pending, timed{w.after(), Event{Kind: Resolved, Candidates: w.randIDs()}})
			}
		case Callback:
			ev := Event{Kind: CallbackDone}
			switch w.src.intn(5) {
			case 0:
				ev.Err = errNo
			case 1:
				ev.Err = fmt.Errorf("no: %w", ErrRefused)
			case 2:
				ev.Settled = Doubt(w.src.intn(16))
			default:
				ev.Settled = a.Doubt
			}
			w.pending = append(w.pending, timed{w.after(), ev})
		case Replay:
			w.pending = append(w.pending, timed{w.after(), Event{Kind: ReplayDone, Replayed: w.src.intn(5)}})
		case SendCookieEcho:
			if w.src.intn(3) != 0 {
				w.pending = append(w.pending, timed{w.after(), Event{Kind: CookieEchoResult, PE: a.PE, Accepted: w.src.intn(2) == 0}})
			}
		case Disconnect:
			if w.src.intn(2) == 0 { // usually the session drops what it had under way
				w.pending = slices.DeleteFunc(w.pending, func(p timed) bool { return p.ev.PE == a.PE })
			}
		}
	}
}

func (w *world) feed(at time.Time, ev Event) {
	if at.Before(w.now) {
		at = w.now
	}
	w.now = at
	w.answer(w.c.handle(at, ev))
}

// noise is an event the world throws in by itself.
func (w *world) noise() Event {
	cur := w.c.m.Current()
	some := asap.PEID(w.src.intn(universe + 1))
	pe := cur
	if w.src.intn(4) == 0 {
		pe = some
	}
	switch w.src.intn(12) {
	case 0:
		return Event{Kind: TransportError, PE: pe, Err: errReset, Stream: w.stream()}
	case 1, 2:
		return Event{Kind: HeartbeatMiss, PE: pe, Stream: w.stream()}
	case 3:
		return Event{Kind: HeartbeatAck, PE: pe}
	case 4:
		return Event{Kind: FailoverRequest, Stream: w.stream()}
	case 5:
		return Event{Kind: GoAway, PE: pe, Stream: w.stream()}
	case 6:
		return Event{Kind: CookieReceived, Cookie: []byte{byte(w.src.intn(256))}[:w.src.intn(2)]}
	case 7:
		return Event{Kind: BusinessCardReceived, Candidates: w.randIDs()}
	case 8:
		return Event{Kind: Connected, PE: some}
	case 9:
		if w.src.intn(8) == 0 {
			return Event{Kind: Close}
		}
		return Event{Kind: Timer}
	default: // anything at all
		return Event{Kind: EventKind(w.src.intn(20)), PE: some, Err: errNo, Stream: w.stream(),
			Settled: Doubt(w.src.intn(16)), Accepted: w.src.intn(2) == 0, Candidates: w.randIDs()}
	}
}

// play runs one session for at most steps events, then lets time run until
// the machine is connected or has ended, which must come before the
// failover's deadline.
func play(t testing.TB, src source, steps int) {
	cfg := randConfig(src)
	w := &world{c: newChecker(t, cfg), src: src, now: t0}
	open := Event{Kind: Open}
	if src.intn(3) == 0 {
		open.Candidates = w.randIDs()
	}
	if src.intn(4) == 0 {
		open.Deadline = t0.Add(time.Duration(src.intn(3000)) * time.Millisecond)
	}
	w.feed(t0, open)
	for i := 0; i < steps && !src.done(); i++ {
		if st := w.c.m.State(); st == StateFailed || st == StateClosed {
			return
		}
		switch k := src.intn(8); {
		case k < 5 && len(w.pending) > 0:
			slices.SortStableFunc(w.pending, func(a, b timed) int { return a.at.Compare(b.at) })
			p := w.pending[0]
			w.pending = w.pending[1:]
			w.feed(p.at, p.ev)
		case k == 5 && !w.c.m.Deadline().IsZero():
			w.feed(w.c.m.Deadline(), Event{Kind: Timer})
		default:
			w.feed(w.now.Add(time.Duration(src.intn(500))*time.Millisecond), w.noise())
		}
	}
	// Nothing answers any more: the timer alone must end the episode.
	for i := 0; ; i++ {
		d := w.c.m.Deadline()
		if d.IsZero() {
			break
		}
		if i > 10000 {
			t.Fatalf("machine never settles: state %v", w.c.m.State())
		}
		w.c.handle(d, Event{Kind: Timer})
	}
}

// TestRandomized plays many sessions against a world that answers at random
// and checks the checker's invariants: never a connect to the element just
// lost (or one already tried or reported in the same failover), every
// failover over (connected or failed) before its deadline, bounded
// attempts, no splice with data in doubt, the callback told exactly what is
// in doubt, and the same actions however late the timer fires.
func TestRandomized(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 300
	}
	for seed := range uint64(n) {
		r := rand.New(rand.NewPCG(seed, 1))
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			play(t, randSource{r}, 200)
		})
	}
}

// TestCheckerCatches makes sure the checker is not blind: told that
// element 2 was already tried, it must stop the machine's Connect to it.
func TestCheckerCatches(t *testing.T) {
	ft := &fakeT{TB: t}
	c := newChecker(ft, small)
	func() {
		defer func() { _ = recover() }()
		c.handle(t0, Event{Kind: Open, Candidates: cands(1)})
		c.handle(t0, Event{Kind: Connected, PE: 1})
		c.handle(t0, Event{Kind: TransportError, PE: 1, Err: errReset})
		c.tried[2] = true
		c.handle(t0, Event{Kind: Resolved, Candidates: cands(2)})
	}()
	if !ft.failed {
		t.Fatal("the checker let a second Connect to an element through")
	}

	// Told that the last failover replayed to element 1, which then
	// acknowledged nothing, it must stop a failover without a hold-back.
	ft = &fakeT{TB: t}
	c = newChecker(ft, small)
	func() {
		defer func() { _ = recover() }()
		c.handle(t0, Event{Kind: Open, Candidates: cands(1)})
		c.handle(t0, Event{Kind: Connected, PE: 1})
		c.replayedTo = true
		c.handle(t0, Event{Kind: TransportError, PE: 1, Err: errReset})
	}()
	if !ft.failed {
		t.Fatal("the checker let a failover without its hold-back through")
	}
}

type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(string, ...any) {
	f.failed = true
	panic("fatal")
}

// FuzzMachine plays a session whose every choice (configuration, answers,
// their timing, failures, stale and arbitrary events) comes from the
// fuzzer's bytes; the checker's invariants must hold and nothing panics.
func FuzzMachine(f *testing.F) {
	for seed := range uint64(8) {
		r := rand.New(rand.NewPCG(seed, 2))
		b := make([]byte, 64+r.IntN(256))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		play(t, &byteSource{b: b}, 1000)
	})
}
