// Package rsp is Reliable Server Pooling (RSerPool) for Go: servers join a
// named pool, clients reach the pool by its name, and a dead server drops
// out of the pool.
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
// [Dialer.DialContext] plugs into net/http's Transport.DialContext and
// gRPC's WithContextDialer.
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
// # Guarantees
//
// A byte stream (TLS, HTTP/2, gRPC) cannot move to another server in the
// middle of a connection: its state belongs to the first server. rsp
// therefore selects and fails over at dial time: every dial picks an
// element by the pool's policy, skips elements that refuse the connection,
// and reports unreachable ones, so that a dead server leaves the pool after
// the registrar's keep-alive timeout or its limit of unreachable reports.
// A connection that breaks returns an error like any TCP connection's
// (*net.OpError), and net/http and gRPC re-dial and retry under their own
// idempotency rules, reaching a live element.
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
// format of package mapping everywhere. Registration lives travel in
// milliseconds, as rsplib and Wireshark read them.
package rsp
