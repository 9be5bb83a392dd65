// Package rsp is Reliable Server Pooling (RSerPool) for Go: servers join a
// named pool, clients reach the pool by its name, and a session survives
// the loss of the server it was talking to.
//
// # Roles
//
// A pool element is a server. [Listen] returns a [net.Listener] that
// registers the server under a pool handle with a registrar, answers the
// registrar's keep-alives, reports its load, and deregisters on Close:
//
//	l, err := rsp.Listen("pool:echo")
//	...
//	http.Serve(l, handler)
//
// A pool user is a client. [Dial] asks a registrar for the pool's elements,
// picks one by the pool's policy, and connects to it, trying the next
// element when a connect fails and reporting the failed one to the
// registrar:
//
//	c, err := rsp.Dial("pool:echo")
//
// [Dialer.DialContext] returns a [net.Conn], as [net.Dialer.DialContext]
// does, so it plugs into net/http's Transport.DialContext as it is (the
// URL's host names the pool: http://echo/), and into gRPC's
// WithContextDialer with no wrapper type, only the closure that gRPC's
// dialer signature asks of a net.Dialer too:
//
//	tr := &http.Transport{DialContext: d.DialContext}
//	cc, err := grpc.NewClient("passthrough:///pool:echo",
//		grpc.WithTransportCredentials(insecure.NewCredentials()),
//		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
//			return d.DialContext(ctx, "tcp", addr)
//		}))
//
// A registrar (package registrar, command rspregistrar) holds the pools,
// checks the pool elements with keep-alives and answers the pool users.
// Programs find registrars through [Dialer.Registrars] and
// [ListenConfig.Registrars], or else the environment variable
// RSP_REGISTRARS, a comma-separated list such as
// "tcp:10.0.0.1:3863,sctp:10.0.0.2:3863". Registrars may also announce
// themselves to a multicast group (ASAP_SERVER_ANNOUNCE): with the group in
// RSP_ANNOUNCE ("239.0.0.50:3863") and, if needed, the interface in
// RSP_ANNOUNCE_INTERFACE, programs find the registrars they hear there.
// With neither a list nor announces, the registrar is the one on the local
// host (tcp:127.0.0.1:3863).
//
// # Sessions and plain connections
//
// A listener registers as speaking sessions (transport use 1, "data plus
// control", also over TCP; spec/session.md section 6) unless
// [ListenConfig.Plain] or a TLSConfig says otherwise; a pool holds one kind
// only (registrars refuse the other with cause 0x8). To such an element a
// Dialer opens a [*Session]: a net.Conn whose every Write is one message,
// numbered, kept until the element acknowledges it, and replayed to another
// element after a failover; Read reads the messages' bytes in order, across
// message boundaries. Its message API is [Session.WriteMsg] (with an ack
// request, DATA_SEND), [Session.ReadMsg] (DATA_INDICATION: the ack request
// and the element) and [Session.Ack]. On the element, Accept returns a
// *Session for each pool user that opened one ([Session.SetCookie],
// [Session.EchoedCookie], [Session.GoAway]) and a plain connection for any
// other client. [Listener.Shutdown] stops an element without loss: it
// deregisters, lets the applications finish what they read, and moves
// every session to another element ([Listener.Close] is immediate and
// leaves accepted connections open). To an element that does not speak sessions, and with
// [Dialer.Plain], a Dialer returns a plain connection: a *net.TCPConn, so
// that libraries that tune TCP (gRPC sets TCP_USER_TIMEOUT for its
// keepalive) find one. [PoolElementOf] tells which element a connection
// reached.
//
// Over SCTP (where the kernel has it) sessions ride the association: the
// session frames on their PPID, ASAP's cookies and business cards on PPID
// 11, and [WriteOptions.Stream] and [WriteOptions.Unordered] choose the
// SCTP stream and ordering of a message ([Message.Stream] on the other
// side). rsplib's elements register "data plus control" too; rsp's tell
// themselves apart on each association (SCTP's adaptation layer
// indication, spec/session.md section 6), so a Dialer opens a session only
// to an rsp element. To an rsplib element with a control channel it
// returns an [*ASAPConn], which sends nothing but the application's data
// and RFC 5352 messages, keeps the element's cookie, and fails over as
// rsplib's own pool users do (the last cookie echoed to the next element,
// nothing replayed).
//
// A session watches its element with heartbeats
// ([SessionConfig.HeartbeatInterval], [SessionConfig.HeartbeatMisses]): an
// element that stops answering (a stopped process, a black hole) counts as
// failed within HeartbeatMisses intervals of its last sign of life. On a
// failure the pool user reports the element unreachable, tries the
// elements of the last business card the element sent, then a fresh
// resolution, never the failed one, within [SessionConfig.FailoverTimeout]
// and [SessionConfig.MaxFailoverAttempts] (package failover decides);
// echoes the last cookie to the new element, calls
// [SessionConfig.OnFailover] (or the callback [WithFailoverCallback] set
// for that dial; it may send resynchronisation messages with
// [Failover.SendMsg], see how many of the old element's messages are still
// unread, [Failover.Unread], or refuse the element), replays what was not
// acknowledged, and sends a [FailoverEvent] to [SessionConfig.Failovers].
// The application's next Read and Write just work: the old element's
// messages not yet read come first, then the new element's.
//
// # Guarantees
//
// What holds for a session, each proven by the package's tests (the chaos
// test kills elements by reset, process kill, black hole and process stop
// under 50 sessions):
//
//   - A message the element acknowledged is never replayed. An element's
//     application acknowledges with [Session.Ack], or, for a net.Conn
//     program that knows nothing of acknowledgements, implicitly: a
//     message counts as processed when the application, having read all
//     of it, calls Read, ReadMsg, Write, WriteMsg or Close again (a reply
//     carries the acknowledgement of its request). With
//     [SessionConfig.ManualAck] only Ack acknowledges.
//   - Every message not acknowledged is replayed, in order, on every
//     failover until it is: at least once. A message may thus reach two
//     elements: one that processed it but failed before it acknowledged,
//     and the next. The bound: a message is delivered at most once per
//     element it reaches, so at most 1 + F times, F the failovers during
//     which it stayed unacknowledged, and a failover replays at most
//     [SessionConfig.MaxUnackedMessages] messages
//     ([SessionConfig.MaxUnackedBytes] bytes). Within one element nothing
//     is delivered twice. Write blocks, within its deadline, while that
//     many wait for acknowledgement.
//   - Messages an element sent and the pool user did not acknowledge are
//     lost with the element; a request replayed is answered again.
//   - Fail, never splice. A session moves only if the old element's state
//     can be taken up by another: the element handed out a cookie
//     ([Session.SetCookie]; the new element gets it back from
//     [Session.EchoedCookie]), or declared its messages stateless
//     ([SessionConfig.Stateless]), or it had processed and sent nothing
//     yet. Otherwise (an HTTP/2, gRPC or TLS server behind a session
//     knows nothing of cookies) a lost element fails the session promptly
//     with [ErrStateLost] wrapped in *net.OpError, and net/http and gRPC
//     re-dial and retry under their own rules, as after a broken TCP
//     connection: a gRPC client calls successfully again within three
//     heartbeats of its server's death or stop.
//   - A session that cannot fail over (no element takes it within the
//     bounds) fails with [ErrFailoverFailed]. Errors and deadlines are as
//     net.Conn documents: *net.OpError wrapping os.ErrDeadlineExceeded,
//     net.ErrClosed, or the cause; io.EOF once the peer closed.
//
// A plain connection is a TCP connection: it breaks when its element dies,
// and the application re-dials; every dial picks an element by the pool's
// policy, skips elements that refuse the connection, and reports
// unreachable ones, so that a dead server leaves the pool after the
// registrar's keep-alive timeout or its limit of unreachable reports.
//
// # Security
//
// rsplib authenticates nobody. rsp can run every TCP link over TLS 1.3
// (RFC 5355's mutual authentication and integrity), each configured by a
// *tls.Config, nil meaning plain TCP as rsplib has it:
//
//   - to the registrars: [Dialer.RegistrarTLSConfig] and
//     [ListenConfig.RegistrarTLSConfig] (RootCAs to verify the registrar,
//     Certificates for it to know the program by), or the registrar
//     address form "tls:HOST:PORT", also in RSP_REGISTRARS. A registrar
//     with mutual TLS (package registrar) decides by the certificate's
//     identity who may register, re-register or deregister in which pool,
//     and refuses the others with cause 0xa ("rejected due to security
//     considerations").
//   - on the data path: [ListenConfig.TLSConfig] makes a pooled listener
//     hand out *tls.Conn server connections (http.Server.Serve takes them
//     as HTTPS), and [Dialer.TLSConfig] makes the dialer verify each pool
//     element's certificate, by default for the pool handle as its DNS
//     name, skipping elements that do not verify.
//     [Dialer.DialTLSContext] fits http.Transport.DialTLSContext.
//
// Over SCTP the links stay as rsplib has them, without TLS: nothing
// authenticates the peers or protects the messages. Run SCTP only on a
// private network, or under IPsec, or listen over TCP with TLS only.
//
// # Wire protocols
//
// rsp speaks ASAP (RFC 5352) with the parameters of RFC 5354 and the
// policies of RFC 5356, as the reference implementation rsplib does: over
// kernel SCTP (PPID 11) where the kernel has it, and over TCP with the frame
// format of package mapping everywhere. Sessions speak the protocol of
// spec/session.md (package ulpack's frames) on their own channel beside
// RFC 5352's cookies and business cards; toward rsplib's elements only
// RFC 5352 messages go on PPID 11. Registration lives travel in
// milliseconds, as rsplib and Wireshark read them.
package rsp
