package registrar

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/rsp-go/rsp/asap"
)

// Defaults of the registrar's timers and limits. The timers are rsplib's.
const (
	DefaultKeepAliveInterval        = 5 * time.Second
	DefaultKeepAliveTimeout         = 5 * time.Second
	DefaultMaxBadPEReports          = 3
	DefaultHandleResolutionItems    = 3
	DefaultMaxHandleResolutionItems = 128
	DefaultMaxMessageSize           = 65535
	DefaultMaxPools                 = 100000
	DefaultMaxPEsPerPool            = 100000
	DefaultMinRegistrationLife      = time.Second
	DefaultMaxRegistrationLife      = time.Hour
	DefaultAnnounceInterval         = time.Second
	DefaultAnnounceTimeout          = 5 * time.Second
	DefaultWriteTimeout             = 5 * time.Second
	DefaultSendQueue                = 256

	// Limits against peers that misbehave (see Config). A resolution
	// rate of 1000 per second and connection is far above what a pool
	// user with a resolution cache asks for (rsp's endpoint caches for a
	// second), and ten unreachable reports a second above what a pool
	// user meets; a frame of 64 KiB arriving over 10 s is 52 kbit/s.
	DefaultHandleResolutionRate = 1000
	DefaultUnreachableRate      = 10
	DefaultFrameTimeout         = 10 * time.Second
	DefaultMaxConns             = 4096
	DefaultMaxConnsPerAddr      = 256
)

// Config configures a Registrar. The zero value is a working registrar with
// rsplib's defaults and a random server identifier.
type Config struct {
	// ID is the registrar's server identifier; 0 picks a random non-zero one.
	ID asap.ServerID

	// KeepAliveInterval is how often the registrar checks each pool element
	// it is home for with ASAP_ENDPOINT_KEEP_ALIVE (jittered by ±25 %), and
	// KeepAliveTimeout how long it waits for the acknowledgement before it
	// removes the element. Zero means the default; a negative interval turns
	// periodic keep-alives off (the probe after an unreachable report stays).
	// An overdue answer gets another KeepAliveTimeout when the registrar's
	// schedule runs behind, or when the element's peer answers its
	// keep-alives in order but late and has not yet come to this one
	// (KeepAliveTimeoutsExtended counts both): the registrar removes no
	// element for its own slowness, nor for a backlog its peer works
	// through.
	KeepAliveInterval time.Duration
	KeepAliveTimeout  time.Duration

	// MaxBadPEReports (MAX-BAD-PE-REPORT) applies to pool elements the
	// registrar cannot probe (homed at another registrar, or taken over
	// without a connection): one is removed once this many distinct peer
	// addresses reported it with ASAP_ENDPOINT_UNREACHABLE. An element the
	// registrar is home for is probed with a keep-alive at each report
	// instead, and stays if it answers.
	MaxBadPEReports int

	// HandleResolutionItems is how many pool elements a handle resolution
	// returns when the request does not say; MaxHandleResolutionItems caps
	// any answer.
	HandleResolutionItems    int
	MaxHandleResolutionItems int

	// MaxMessageSize is the largest ASAP message accepted; a longer one is
	// discarded.
	MaxMessageSize int
	// MaxPools and MaxPEsPerPool bound the handlespace; registrations beyond
	// them are refused with "lack of resources".
	MaxPools      int
	MaxPEsPerPool int

	// MinRegistrationLife and MaxRegistrationLife clamp the registration
	// life a pool element asks for. The infinite life (-1 on the wire)
	// gets the maximum, as any life above it does: an element that asks
	// for an infinite life lives MaxRegistrationLife unless it
	// re-registers, and is removed earlier when its connection ends or it
	// stops answering keep-alives. A life below -1 is refused with
	// "invalid values".
	MinRegistrationLife time.Duration
	MaxRegistrationLife time.Duration

	// HandleResolutionRate and UnreachableRate limit each peer connection's
	// handle resolutions and unreachable reports per second, with bursts
	// of as many (zero: DefaultHandleResolutionRate and
	// DefaultUnreachableRate; negative: no limit). Requests over the
	// limit are answered with "lack of resources" (resolutions) or
	// ignored (reports); over TCP the connection is then read no faster
	// than its limits allow, so that a flood waits in its own socket.
	HandleResolutionRate float64
	UnreachableRate      float64

	// FrameTimeout bounds, over TCP, the time from a frame's first byte
	// to its last: a peer that trickles a message in is disconnected
	// (zero: DefaultFrameTimeout; negative: no bound). It applies to the
	// connections of listeners made by Registrar.Listen and to
	// *mapping.TCPConn connections given to ServeConn.
	FrameTimeout time.Duration
	// MaxConns and MaxConnsPerAddr bound the peer connections (and SCTP
	// associations) served at once, in all and from one peer address;
	// a connection over either limit is closed at once (zero:
	// DefaultMaxConns and DefaultMaxConnsPerAddr; negative: no limit).
	MaxConns        int
	MaxConnsPerAddr int

	// WriteTimeout bounds each send to a peer (a send may take up to about
	// twice it before the peer is dropped). SendQueue is how many messages
	// may wait for a slow peer: answers to its own requests wait for room,
	// so that a peer that sends faster than it reads is read more slowly;
	// keep-alives that find the queue full wait and are tried again
	// (KeepAlivesDeferred counts them), so that a registrar slow to write
	// drops no peer and no element; other messages the registrar sends of
	// its own accord (expiry notices) drop the peer when its queue is
	// full. A peer that does not read is dropped by the write timeout.
	// Over SCTP all
	// associations share one socket and its send buffer: when a peer that
	// does not read keeps that buffer full for WriteTimeout, its
	// association is aborted, and the others wait until then.
	WriteTimeout time.Duration
	SendQueue    int

	// Announce, when set, is the UDP multicast group ("239.0.0.50:3863",
	// rsplib's; the IANA group is 224.0.1.185:3863) to which the registrar
	// sends ASAP_SERVER_ANNOUNCE every (N+1) AnnounceInterval (T6), N
	// being the other registrars heard announcing there within
	// AnnounceTimeout (T7), so that the group hears about one announce per
	// interval. An announce lists the registrar's ASAP listeners (TCP and
	// SCTP); a listener on an unspecified address is announced with the
	// addresses of AnnounceInterface, or else as the unspecified address,
	// which receivers replace with the announce's source address.
	// AnnounceInterface names the interface to send on ("": the system's
	// choice).
	Announce          string
	AnnounceInterface string
	AnnounceInterval  time.Duration
	AnnounceTimeout   time.Duration

	// TLSConfig, when set, makes the Listen method and ListenAndServe
	// serve ASAP over TCP with TLS 1.3: the registrar's certificate, and
	// for mutual TLS ClientAuth (tls.RequireAndVerifyClientCert) and
	// ClientCAs. nil means plain TCP. SCTP listeners never use TLS (see
	// the package documentation). HandshakeTimeout bounds each TLS
	// handshake (zero: mapping.DefaultHandshakeTimeout).
	TLSConfig        *tls.Config
	HandshakeTimeout time.Duration

	// Authorize, when set, decides whether a peer may make a
	// registration, re-registration or deregistration in a pool; Rules'
	// Authorize method is one such rule. A refused request is answered
	// with cause "rejected due to security considerations" (0xa) and
	// logged with its peer. nil allows every request, as rsplib does.
	// It is called from the connections' goroutines, concurrently.
	Authorize func(p Peer, op Op, pool asap.PoolHandle) bool

	// ENRP configures the registrar's peers: the other registrars of its
	// pool, with which it shares the handlespace (see ENRPConfig).
	ENRP ENRPConfig

	// Logger receives the registrar's logs; nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.KeepAliveInterval, DefaultKeepAliveInterval)
	def(&c.KeepAliveTimeout, DefaultKeepAliveTimeout)
	def(&c.MinRegistrationLife, DefaultMinRegistrationLife)
	def(&c.MaxRegistrationLife, DefaultMaxRegistrationLife)
	def(&c.WriteTimeout, DefaultWriteTimeout)
	def(&c.AnnounceInterval, DefaultAnnounceInterval)
	def(&c.AnnounceTimeout, DefaultAnnounceTimeout)
	defInt(&c.MaxBadPEReports, DefaultMaxBadPEReports)
	defInt(&c.HandleResolutionItems, DefaultHandleResolutionItems)
	defInt(&c.MaxHandleResolutionItems, DefaultMaxHandleResolutionItems)
	defInt(&c.MaxMessageSize, DefaultMaxMessageSize)
	defInt(&c.MaxPools, DefaultMaxPools)
	defInt(&c.MaxPEsPerPool, DefaultMaxPEsPerPool)
	defInt(&c.SendQueue, DefaultSendQueue)
	def(&c.FrameTimeout, DefaultFrameTimeout)
	defLimit := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defLimit(&c.MaxConns, DefaultMaxConns)
	defLimit(&c.MaxConnsPerAddr, DefaultMaxConnsPerAddr)
	if c.HandleResolutionRate == 0 {
		c.HandleResolutionRate = DefaultHandleResolutionRate
	}
	if c.UnreachableRate == 0 {
		c.UnreachableRate = DefaultUnreachableRate
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
