package rsp

import (
	"context"
	"log/slog"
	"time"

	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/ulpack"
)

// Defaults of SessionConfig.
const (
	DefaultHeartbeatInterval   = time.Second
	DefaultHeartbeatMisses     = 3
	DefaultMaxUnackedBytes     = 1 << 20
	DefaultMaxUnackedMessages  = 1024
	DefaultAckDelay            = 5 * time.Millisecond
	DefaultFailoverTimeout     = 10 * time.Second
	DefaultMaxFailoverAttempts = 8
	DefaultSniffTimeout        = time.Second
)

// SessionConfig configures sessions, on the Dialer (pool user) and on the
// ListenConfig (pool element). The zero value uses the defaults above.
type SessionConfig struct {
	// HeartbeatInterval is how long a session's connection may be silent
	// before it sends a heartbeat; after HeartbeatMisses intervals without
	// a sign of life from the peer the connection counts as failed (a
	// silent peer: stopped, or behind a black hole).
	HeartbeatInterval time.Duration
	HeartbeatMisses   int

	// MaxUnackedBytes and MaxUnackedMessages bound the messages sent and
	// not yet acknowledged by the peer (bytes of DATA frames, 16 bytes of
	// header each; messages also within the peer's window): Write blocks,
	// within its deadline, while the next message does not fit. After a
	// failover at most this much is replayed. MaxUnackedMessages is also
	// the window announced to the peer. A bulk stream keeps
	// MaxUnackedBytes in flight, and its replay buffer is that large: the
	// default, 1 MiB, keeps the buffer in the processor's cache; a path
	// whose bandwidth-delay product is larger needs more to be filled.
	MaxUnackedBytes    int
	MaxUnackedMessages int
	// MaxMessageSize is the largest message the session accepts and
	// sends; a longer Write is sent as several messages, a longer WriteMsg
	// fails with ErrMessageTooLong. Zero means
	// mapping.DefaultMaxMessageSize. A message the session sends is also
	// at most MaxUnackedBytes less its 16 bytes of header. Both ends
	// announce the limit when the session opens (spec/session.md 2.1,
	// 2.2), and each sends no message over the peer's
	// (Session.MaxMessageSize): a pool user's limit may be above its
	// elements'. A failover to an element whose limit is below a message
	// still to replay fails the session with an error that wraps
	// ErrMessageTooLong. Peers that predate the announcement announce
	// nothing; toward them only this limit counts, and one that closes
	// the connection on a longer message makes the session fail over
	// (see FailoverBackoff).
	MaxMessageSize int

	// AckDelay is how long an acknowledgement of a processed message
	// without an ack request may wait to be coalesced with later ones.
	AckDelay time.Duration
	// ManualAck makes the application acknowledge what it processed with
	// Session.Ack. Without it, a message counts as processed when the
	// application, having read all of it, calls Read, ReadMsg, Write,
	// WriteMsg or Close again (the implicit rule for net.Conn programs
	// that know nothing of acknowledgements).
	ManualAck bool

	// Pool user side.

	// FailoverTimeout bounds one failover, from the failure to the new
	// element's replay; MaxFailoverAttempts bounds the elements it tries.
	// FailoverBackoff is the wait between two rounds of the pool's
	// elements (zero: HeartbeatInterval / 4). An element lost before it
	// acknowledged any of the messages a failover replayed to it delays
	// the next failover by FailoverBackoff, doubled for each such element
	// in a row before it (at most FailoverTimeout); after
	// MaxFailoverAttempts of them the session fails with
	// ErrFailoverFailed, since the elements seem to refuse what is
	// replayed (the failover machine's hold-back, failover.StateHolding).
	// Close ends such a wait at once.
	FailoverTimeout     time.Duration
	MaxFailoverAttempts int
	FailoverBackoff     time.Duration
	// NoFailover makes a session fail when its element fails, as a plain
	// connection does, instead of failing over.
	NoFailover bool
	// OnFailover, if set, is called once a new element has taken the
	// session over and before the unacknowledged messages are replayed to
	// it; it may send resynchronisation messages with f.Send or f.SendMsg.
	// An error refuses the element: the session tries the next one. An
	// error that wraps failover.ErrRefused ends the session instead: its
	// reads and writes then fail with that error. A callback set for one
	// dial with WithFailoverCallback takes its place for that session.
	OnFailover func(ctx context.Context, f *Failover) error
	// Failovers, if set, receives a FailoverEvent after each failover
	// (the failover indication); a full channel drops the event.
	Failovers chan<- FailoverEvent

	// Pool element side.

	// Stateless says that each message stands alone, as for an echo or a
	// lookup service: a session may fail over to any element of the pool
	// without a cookie. Without it a session fails over only if the
	// element has handed it a cookie (Session.SetCookie), since the
	// application state behind a byte stream (HTTP/2, TLS) cannot move.
	Stateless bool
	// SniffTimeout is how long an accepted connection may take to start a
	// session before it counts as a plain connection; zero means
	// DefaultSniffTimeout.
	SniffTimeout time.Duration

	// Logger receives the sessions' logs; nil discards them.
	Logger *slog.Logger
}

func (c SessionConfig) withDefaults() SessionConfig {
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.HeartbeatMisses <= 0 {
		c.HeartbeatMisses = DefaultHeartbeatMisses
	}
	if c.MaxUnackedBytes <= 0 {
		c.MaxUnackedBytes = DefaultMaxUnackedBytes
	}
	if c.MaxUnackedMessages <= 0 {
		c.MaxUnackedMessages = DefaultMaxUnackedMessages
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = mapping.DefaultMaxMessageSize
	}
	if c.AckDelay <= 0 {
		c.AckDelay = DefaultAckDelay
	}
	if c.FailoverTimeout <= 0 {
		c.FailoverTimeout = DefaultFailoverTimeout
	}
	if c.MaxFailoverAttempts <= 0 {
		c.MaxFailoverAttempts = DefaultMaxFailoverAttempts
	}
	if c.FailoverBackoff <= 0 {
		c.FailoverBackoff = c.HeartbeatInterval / 4
	}
	if c.SniffTimeout <= 0 {
		c.SniffTimeout = DefaultSniffTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// maxMessage is the longest message a session sends: MaxMessageSize,
// within what MaxUnackedBytes can hold with its DATA header, so that no
// Write waits for room that can never come.
func (c SessionConfig) maxMessage() int {
	return max(1, min(c.MaxMessageSize, c.MaxUnackedBytes-ulpack.DataLen))
}

// senderConfig bounds the send side (ulpack.Sender counts whole DATA
// frames, headers included).
func (c SessionConfig) senderConfig() ulpack.SenderConfig {
	return ulpack.SenderConfig{MaxCount: c.MaxUnackedMessages, MaxBytes: c.MaxUnackedBytes}
}

// receiverConfig is the receive side's: the window the peer may fill, the
// acknowledgement delay.
func (c SessionConfig) receiverConfig() ulpack.ReceiverConfig {
	return ulpack.ReceiverConfig{Window: c.MaxUnackedMessages, AckDelay: c.AckDelay}
}

// mappingConfig is the TCP mapping's heartbeat configuration: a heartbeat
// after one silent interval, failure when nothing came back within
// HeartbeatMisses intervals of the peer's last sign of life (the mapping
// checks twice an interval).
func (c SessionConfig) mappingConfig() mapping.Config {
	iv := c.HeartbeatInterval
	to := time.Duration(c.HeartbeatMisses-1)*iv - iv/2
	if to <= 0 {
		to = iv / 2
	}
	return mapping.Config{
		MaxMessageSize:    c.MaxMessageSize + ulpack.DataLen,
		HeartbeatInterval: iv,
		HeartbeatTimeout:  to,
	}
}
