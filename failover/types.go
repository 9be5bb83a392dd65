package failover

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rsp-go/rsp/asap"
)

// Defaults of [Config]'s zero fields.
const (
	DefaultHeartbeatMisses = 3                      // issue: a silent element is noticed within three heartbeats
	DefaultConnectTimeout  = 5 * time.Second        // rsplib's session connect timeout
	DefaultMaxAttempts     = 16                     // connect attempts per failover
	DefaultRetryDelay      = 250 * time.Millisecond // rsplib's handle-resolution retry delay
	DefaultMaxRetryDelay   = 4 * time.Second        // cap of the doubling back-off
	DefaultFailoverTimeout = 30 * time.Second       // from detection to giving up
)

// Mode says what a session's data is and so what survives a failover.
type Mode uint8

const (
	// ModeReplay (the zero value): every write is a message, the element
	// acknowledges what it processed, and what it did not acknowledge is
	// replayed to the next element (at least once).
	ModeReplay Mode = iota
	// ModeNoReplay: messages, but no copy is kept; unacknowledged messages are
	// in doubt ([DoubtUnacked]).
	ModeNoReplay
	// ModeStream: a byte stream whose state belongs to the element (TLS,
	// HTTP/2). Once bytes have flowed nothing can move it ([DoubtStream]).
	ModeStream
)

func (m Mode) String() string {
	switch m {
	case ModeReplay:
		return "replay"
	case ModeNoReplay:
		return "no-replay"
	case ModeStream:
		return "stream"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// Config tunes a [Machine]. Its zero value is ready to use: ModeReplay, no
// callback, and the Default* constants for zero (or negative) numbers.
type Config struct {
	Mode Mode
	// Callback says the application set a failover callback: the machine
	// emits [Callback] actions and waits for [CallbackDone].
	Callback bool
	// HeartbeatMisses is how many heartbeats in a row may go unanswered; the
	// last of them starts a failover. Default DefaultHeartbeatMisses.
	HeartbeatMisses int
	// ConnectTimeout bounds each connect attempt, and the wait for the answer
	// to a cookie echo. Default DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// MaxAttempts bounds the connect attempts of one failover (or of the
	// initial connect), and the elements lost in a row before they
	// acknowledged any of what was replayed to them (see RetryDelay).
	// Default DefaultMaxAttempts.
	MaxAttempts int
	// RetryDelay is the first back-off before resolving the pool again when
	// every candidate failed; it doubles up to MaxRetryDelay. Defaults
	// DefaultRetryDelay and DefaultMaxRetryDelay.
	//
	// RetryDelay is also the first hold-back of a failover from an element
	// lost before it acknowledged any of the messages the last failover
	// replayed to it (such elements may be refusing what is replayed):
	// the n-th such loss in a row holds the failover back RetryDelay times
	// 2^(n-1), at most FailoverTimeout ([StateHolding]), and the
	// MaxAttempts-th fails with [ErrReplayUnacked].
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// FailoverTimeout bounds one failover, from its detection to the
	// indication, and the initial connect. Default DefaultFailoverTimeout.
	FailoverTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.HeartbeatMisses <= 0 {
		c.HeartbeatMisses = DefaultHeartbeatMisses
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = DefaultRetryDelay
	}
	if c.MaxRetryDelay <= 0 {
		c.MaxRetryDelay = DefaultMaxRetryDelay
	}
	if c.MaxRetryDelay < c.RetryDelay {
		c.MaxRetryDelay = c.RetryDelay
	}
	if c.FailoverTimeout <= 0 {
		c.FailoverTimeout = DefaultFailoverTimeout
	}
	return c
}

// Candidate is a pool element the session may connect to: what a resolution
// or a business card names. The machine tells candidates apart by PE.ID.
type Candidate struct {
	PE asap.PoolElement
}

// ID returns the candidate's pool element identifier.
func (c Candidate) ID() asap.PEID { return c.PE.ID }

// StreamState is what the session knows of its data when it detects a loss;
// the machine derives the [Doubt] from it and the [Mode].
type StreamState struct {
	// Unacked is the number of messages sent to the element and not
	// acknowledged.
	Unacked int
	// PartialRead: the application's Read has taken part of a message from
	// the element and the rest has not arrived.
	PartialRead bool
	// Lost: messages from the element are known to be missing (a gap in its
	// sequence numbers); they cannot be asked for again.
	Lost bool
	// Used: any byte has flowed, either way, since the session opened.
	Used bool
	// Acked is the cumulative acknowledgement: the highest sequence number
	// of the messages to the element (and the elements before it) that
	// are acknowledged. The machine compares it with the one at the last
	// replay to tell an element lost before it acknowledged anything of
	// what was replayed to it (see [Config.RetryDelay]).
	Acked uint64
}

// Doubt is a set of reasons why the application's view of the stream may
// not be whole on another element.
type Doubt uint8

// Reasons for doubt; the package documentation says what settles each.
const (
	DoubtPartialRead Doubt = 1 << iota // part of a message was read; callback settles
	DoubtUnacked                       // unacked messages and no replay; callback settles
	DoubtLost                          // messages from the element lost; accepted cookie echo or callback settles
	DoubtStream                        // element-bound byte stream used; nothing settles
)

func (d Doubt) String() string {
	if d == 0 {
		return "none"
	}
	var s []string
	for _, n := range []struct {
		d    Doubt
		name string
	}{{DoubtPartialRead, "partial-read"}, {DoubtUnacked, "unacked"}, {DoubtLost, "lost"}, {DoubtStream, "stream"}} {
		if d&n.d != 0 {
			s = append(s, n.name)
			d &^= n.d
		}
	}
	if d != 0 {
		s = append(s, fmt.Sprintf("%#x", uint8(d)))
	}
	return strings.Join(s, "|")
}

// EventKind names an [Event].
type EventKind uint8

// Events. The fields of [Event] each kind reads are named after it.
const (
	_                    EventKind = iota
	Open                           // start the initial connect: Candidates (tried first), Deadline (optional cap)
	Connected                      // the attempt to PE connected
	ConnectFailed                  // the attempt to PE failed: Err
	TransportError                 // the connection to PE broke: Err, Stream
	HeartbeatMiss                  // a heartbeat to PE went unanswered: Stream
	HeartbeatAck                   // a sign of life from PE
	FailoverRequest                // the application asks to fail over: Stream
	Resolved                       // answer to Resolve: Candidates in the pool's order, or Err
	CookieReceived                 // an ASAP_COOKIE arrived: Cookie
	BusinessCardReceived           // an ASAP_BUSINESS_CARD arrived: Candidates in the card's order
	CookieEchoResult               // the new PE answered the resume: Accepted if it took up the state the cookie carries
	CallbackDone                   // the failover callback returned: Err (refusal) or Settled
	ReplayDone                     // the replay is sent: Replayed
	Timer                          // the timer set to Deadline fired
	Close                          // the application closed the session
	GoAway                         // PE announced it is leaving (GOAWAY): fail over without reporting it: Stream
)

var eventNames = [...]string{Open: "Open", Connected: "Connected", ConnectFailed: "ConnectFailed",
	TransportError: "TransportError", HeartbeatMiss: "HeartbeatMiss", HeartbeatAck: "HeartbeatAck",
	FailoverRequest: "FailoverRequest", Resolved: "Resolved", CookieReceived: "CookieReceived",
	BusinessCardReceived: "BusinessCardReceived", CookieEchoResult: "CookieEchoResult",
	CallbackDone: "CallbackDone", ReplayDone: "ReplayDone", Timer: "Timer", Close: "Close", GoAway: "GoAway"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) && eventNames[k] != "" {
		return eventNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is something that happened to the session. Only the fields its Kind
// reads matter.
type Event struct {
	Kind       EventKind
	PE         asap.PEID   // Connected, ConnectFailed, TransportError, HeartbeatMiss, HeartbeatAck, CookieEchoResult
	Candidates []Candidate // Open, Resolved, BusinessCardReceived
	Cookie     []byte      // CookieReceived (copied)
	Err        error       // ConnectFailed, TransportError, Resolved, CallbackDone (non-nil: refused)
	Stream     StreamState // TransportError, HeartbeatMiss, FailoverRequest, GoAway
	Settled    Doubt       // CallbackDone: the doubt the callback settled
	Accepted   bool        // CookieEchoResult
	Replayed   int         // ReplayDone
	Deadline   time.Time   // Open: the caller's deadline, if any
}

// ActionKind names an [Action].
type ActionKind uint8

// Actions. The fields of [Action] each kind sets are named after it.
const (
	_                 ActionKind = iota
	ReportUnreachable            // report PE unreachable to the registrar: Err (why)
	Disconnect                   // abort the connection (or the connect under way) to PE
	Resolve                      // resolve the pool; answer Resolved
	Connect                      // connect to Candidate (PE) before Deadline; answer Connected or ConnectFailed
	SendCookieEcho               // send ASAP_COOKIE_ECHO with Cookie to PE
	Callback                     // call the failover callback: Old, New, Doubt; answer CallbackDone
	Replay                       // resend the unacknowledged messages to PE; answer ReplayDone
	Established                  // the initial connect reached PE
	Indicate                     // failover indication: Old, New, Replayed
	Fail                         // the session is lost: Err (an *Error)
)

var actionNames = [...]string{ReportUnreachable: "ReportUnreachable", Disconnect: "Disconnect",
	Resolve: "Resolve", Connect: "Connect", SendCookieEcho: "SendCookieEcho", Callback: "Callback",
	Replay: "Replay", Established: "Established", Indicate: "Indicate", Fail: "Fail"}

func (k ActionKind) String() string {
	if int(k) < len(actionNames) && actionNames[k] != "" {
		return actionNames[k]
	}
	return fmt.Sprintf("ActionKind(%d)", uint8(k))
}

// Action is something the session must do. Only the fields its Kind sets
// matter.
type Action struct {
	Kind      ActionKind
	PE        asap.PEID // ReportUnreachable, Disconnect, Connect, SendCookieEcho, Replay, Established
	Candidate Candidate // Connect
	Deadline  time.Time // Connect: the attempt's deadline
	Cookie    []byte    // SendCookieEcho (the machine's copy: do not modify)
	Old, New  asap.PEID // Callback, Indicate
	Doubt     Doubt     // Callback: what is in doubt and the callback may settle
	Replayed  int       // Indicate
	Err       error     // ReportUnreachable, Fail
}

// State is where a [Machine] is in a session's life.
type State uint8

// States.
const (
	StateIdle       State = iota // before Open
	StateResolving               // waiting for Resolved
	StateBackoff                 // waiting to resolve again
	StateConnecting              // waiting for Connected or ConnectFailed
	StateEchoing                 // waiting for the answer to the cookie echo
	StateCalling                 // waiting for CallbackDone
	StateReplaying               // waiting for ReplayDone
	StateConnected               // connected; no failover under way
	StateFailed                  // ended by Fail
	StateClosed                  // ended by Close
	StateHolding                 // lost an element that acknowledged none of its replay: waiting to fail over
)

var stateNames = [...]string{"Idle", "Resolving", "Backoff", "Connecting", "Echoing", "Calling",
	"Replaying", "Connected", "Failed", "Closed", "Holding"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Sentinel errors: a failed session's error is an [*Error] that
// errors.Is one of them.
var (
	// ErrDataInDoubt: data is in doubt and nothing could settle it; the
	// session fails rather than splice two elements' streams.
	ErrDataInDoubt = errors.New("failover: data in doubt, not spliced onto another pool element")
	// ErrTimeout: the failover (or initial connect) deadline passed. It has
	// a Timeout method that returns true.
	ErrTimeout error = timeoutError{}
	// ErrAttemptsExhausted: Config.MaxAttempts connect attempts failed.
	ErrAttemptsExhausted = errors.New("failover: connect attempts exhausted")
	// ErrRefused: the failover callback refused with an error that wraps
	// ErrRefused, which ends the session; any other error refuses only the
	// element at hand.
	ErrRefused = errors.New("failover: refused by the application")
	// ErrReplayUnacked: Config.MaxAttempts elements in a row were lost
	// before they acknowledged any of the messages replayed to them; they
	// seem to refuse what is replayed (a message over their size limit,
	// say), and replaying it to more of them would not help.
	ErrReplayUnacked = errors.New("failover: pool elements lost in a row before they acknowledged any message replayed to them")
)

// Causes the machine records itself (in [Error.Cause] and in the Err of
// [ReportUnreachable]).
var (
	ErrNoCandidates     = errors.New("failover: no pool element left to try")
	ErrConnectTimeout   = errors.New("failover: connect attempt timed out")
	ErrHeartbeatsMissed = errors.New("failover: heartbeats missed")
	ErrRequested        = errors.New("failover: requested by the application")
	ErrGoAway           = errors.New("failover: pool element is going away")
)

type timeoutError struct{}

func (timeoutError) Error() string { return "failover: deadline exceeded" }
func (timeoutError) Timeout() bool { return true }

// Error is the error of a [Fail] action.
type Error struct {
	Err   error     // ErrDataInDoubt, ErrTimeout, ErrAttemptsExhausted, ErrRefused or ErrReplayUnacked
	Cause error     // what the last step met (a connect error, a refusal, ...); may be nil
	Lost  asap.PEID // the element the session lost; 0 for the initial connect
	Doubt Doubt     // with ErrDataInDoubt: what was in doubt
}

func (e *Error) Error() string {
	s := e.Err.Error()
	if e.Lost != 0 {
		s += fmt.Sprintf(" (lost pool element %#08x)", uint32(e.Lost))
	}
	if e.Doubt != 0 {
		s += " (in doubt: " + e.Doubt.String() + ")"
	}
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Unwrap returns Err and Cause, so that errors.Is finds either.
func (e *Error) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.Cause}
}

// Timeout reports whether the failover ran out of time.
func (e *Error) Timeout() bool { return errors.Is(e.Err, ErrTimeout) }

// String describes the action briefly, naming elements in hex, for logs.
func (a Action) String() string {
	s := a.Kind.String()
	switch a.Kind {
	case ReportUnreachable:
		s += fmt.Sprintf("(%#08x: %v)", uint32(a.PE), a.Err)
	case Disconnect, SendCookieEcho, Replay, Established:
		s += fmt.Sprintf("(%#08x)", uint32(a.PE))
	case Connect:
		s += fmt.Sprintf("(%#08x by %s)", uint32(a.PE), a.Deadline.Format(time.RFC3339Nano))
	case Callback:
		s += fmt.Sprintf("(%#08x -> %#08x, in doubt: %v)", uint32(a.Old), uint32(a.New), a.Doubt)
	case Indicate:
		s += fmt.Sprintf("(%#08x -> %#08x, %d replayed)", uint32(a.Old), uint32(a.New), a.Replayed)
	case Fail:
		s += fmt.Sprintf("(%v)", a.Err)
	}
	return s
}

// String describes the event briefly, naming elements in hex, for logs.
func (e Event) String() string {
	s := e.Kind.String()
	switch e.Kind {
	case Connected, HeartbeatAck:
		s += fmt.Sprintf("(%#08x)", uint32(e.PE))
	case ConnectFailed, TransportError:
		s += fmt.Sprintf("(%#08x: %v)", uint32(e.PE), e.Err)
	case HeartbeatMiss, GoAway:
		s += fmt.Sprintf("(%#08x)", uint32(e.PE))
	case Open, Resolved, BusinessCardReceived:
		ids := make([]string, len(e.Candidates))
		for i, c := range e.Candidates {
			ids[i] = fmt.Sprintf("%#08x", uint32(c.ID()))
		}
		s += "(" + strings.Join(ids, " ")
		if e.Err != nil {
			s += fmt.Sprint(e.Err)
		}
		s += ")"
	case CookieEchoResult:
		s += fmt.Sprintf("(%#08x accepted=%v)", uint32(e.PE), e.Accepted)
	case CallbackDone:
		s += fmt.Sprintf("(err=%v settled=%v)", e.Err, e.Settled)
	case ReplayDone:
		s += fmt.Sprintf("(%d)", e.Replayed)
	}
	return s
}
