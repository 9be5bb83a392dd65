// Command rspregistrar runs an RSerPool registrar: pool elements register
// with it, pool users resolve pools through it.
//
// It serves ASAP over TCP (the framing of package mapping) and, where the
// kernel has SCTP, over SCTP. With -announce it announces itself to a
// multicast group, where pool elements and pool users that listen there
// find it. With -peer and -enrp-listen it is one of a pool of registrars
// that share the handlespace with ENRP and take over each other's pool
// elements (rsplib's registrars among them, over SCTP); with
// -enrp-announce it finds its peers by multicast too. It logs with log/slog to standard error and shuts down cleanly
// on SIGINT and SIGTERM.
//
// With -tls-cert and -tls-key it serves ASAP over TCP with TLS 1.3
// ("-listen tls:HOST:PORT", or any tcp: listener); with -tls-client-ca
// too, every peer must present a certificate of that CA (mutual TLS), and
// -allow rules say which identities may register, re-register and
// deregister in which pools:
//
//	rspregistrar -listen tls::3863 -tls-cert reg.pem -tls-key reg.key \
//	    -tls-client-ca ca.pem -allow 'echo-1=echo' -allow 'web-*=web'
//
// With TLS, ENRP to the peer registrars (-peer, -enrp-listen, over tcp:)
// runs over TLS too, with the same certificate and CA, and -allow-peer
// names the identities of the registrars that may be peers (required with
// -allow, as any certificate of the CA could otherwise join). SCTP
// listeners and peers have no TLS: use them only on a private network or
// under IPsec.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/internal/tlsflag"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/registrar"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if errors.Is(err, errUsage) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rspregistrar:", err)
		os.Exit(1)
	}
}

// errUsage: the command line is wrong; what is wrong was printed.
var errUsage = errors.New("usage")

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, strings.Split(s, ",")...); return nil }

// run runs the registrar that args describe until ctx is done, logging to
// stderr.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("rspregistrar", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: rspregistrar [flags]\n\nRuns an RSerPool registrar.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var cfg registrar.Config
	var listen listFlag
	id := fs.Uint("id", 0, "server identifier (0: random)")
	fs.Var(&listen, "listen", "where to serve ASAP, as network:address (tcp:HOST:PORT, tls:HOST:PORT or sctp:HOST:PORT; with -tls-cert tcp: is TLS too); repeatable, comma-separated (default tcp::3863, and sctp::3863 where the kernel has SCTP; with TLS, tcp::3863 only)")
	fs.DurationVar(&cfg.KeepAliveInterval, "keepalive-interval", registrar.DefaultKeepAliveInterval, "interval of keep-alives to each pool element (negative: off)")
	fs.DurationVar(&cfg.KeepAliveTimeout, "keepalive-timeout", registrar.DefaultKeepAliveTimeout, "time a pool element has to answer a keep-alive")
	fs.IntVar(&cfg.MaxBadPEReports, "max-bad-pe-reports", registrar.DefaultMaxBadPEReports, "distinct reporting peers after which a pool element this registrar cannot probe is removed (its own elements are probed at each report)")
	fs.IntVar(&cfg.HandleResolutionItems, "resolution-items", registrar.DefaultHandleResolutionItems, "pool elements in a handle resolution that does not ask for a number")
	fs.IntVar(&cfg.MaxHandleResolutionItems, "max-resolution-items", registrar.DefaultMaxHandleResolutionItems, "most pool elements in any handle resolution")
	fs.IntVar(&cfg.MaxMessageSize, "max-message-size", registrar.DefaultMaxMessageSize, "largest ASAP message accepted, in bytes")
	fs.IntVar(&cfg.MaxPools, "max-pools", registrar.DefaultMaxPools, "most pools")
	fs.IntVar(&cfg.MaxPEsPerPool, "max-pes-per-pool", registrar.DefaultMaxPEsPerPool, "most pool elements in one pool")
	fs.Float64Var(&cfg.HandleResolutionRate, "max-hr-rate", registrar.DefaultHandleResolutionRate, "handle resolutions per second per connection (negative: unlimited)")
	fs.Float64Var(&cfg.UnreachableRate, "max-eu-rate", registrar.DefaultUnreachableRate, "unreachable reports per second per connection (negative: unlimited)")
	fs.DurationVar(&cfg.FrameTimeout, "frame-timeout", registrar.DefaultFrameTimeout, "time a TCP peer has to send a whole message once it started (negative: unbounded)")
	fs.IntVar(&cfg.MaxConns, "max-conns", registrar.DefaultMaxConns, "most peer connections and associations at once (negative: unlimited)")
	fs.IntVar(&cfg.MaxConnsPerAddr, "max-conns-per-addr", registrar.DefaultMaxConnsPerAddr, "most peer connections and associations at once from one address (negative: unlimited)")
	fs.StringVar(&cfg.Announce, "announce", "", "UDP multicast group to send ASAP server announces to, such as 239.0.0.50:3863 (rsplib's) or 224.0.1.185:3863 (IANA's); empty: no announces")
	fs.StringVar(&cfg.AnnounceInterface, "announce-interface", "", "network interface to send announces (ASAP, and ENRP presences with -enrp-announce) on (default: the system's choice)")
	fs.DurationVar(&cfg.AnnounceInterval, "announce-interval", registrar.DefaultAnnounceInterval, "announce period, stretched by the number of other registrars heard announcing")
	var tf tlsflag.Flags
	tf.Register(fs, "tls-client-ca", "PEM file of the CA whose client certificates the registrar requires and verifies (mutual TLS)")
	var rules registrar.Rules
	fs.Func("allow", "authorisation rule IDENTITY=POOLS[:OP,...]: the certificate identity (subject CN, SAN DNS name or URI) may register, reregister and deregister (or the OPs listed) in the pools (a name, or a prefix and *); repeatable; with any, every other request is refused", func(s string) error {
		r, err := registrar.ParseRule(s)
		if err == nil {
			rules = append(rules, r)
		}
		return err
	})
	var peers, enrpListen listFlag
	fs.Var(&peers, "peer", "an ENRP peer registrar to connect to, as network:address (tcp:HOST:PORT or sctp:HOST:PORT; rsplib's registrars speak sctp on port 9901); repeatable, comma-separated")
	fs.Var(&enrpListen, "enrp-listen", "where to accept ENRP from peer registrars, as network:address (e.g. sctp:HOST:9901 or tcp:HOST:9901); repeatable, comma-separated (default: none)")
	fs.DurationVar(&cfg.ENRP.HeartbeatInterval, "peer-heartbeat", registrar.DefaultPeerHeartbeatInterval, "interval of ENRP presences to every peer (PEER-HEARTBEAT-CYCLE)")
	fs.DurationVar(&cfg.ENRP.MaxTimeLastHeard, "peer-max-time-last-heard", registrar.DefaultPeerMaxTimeLastHeard, "silence after which a peer is probed")
	fs.DurationVar(&cfg.ENRP.MaxTimeNoResponse, "peer-max-time-no-response", registrar.DefaultPeerMaxTimeNoResponse, "time a probed peer has to answer before it is taken over")
	fs.DurationVar(&cfg.ENRP.TakeoverExpiry, "takeover-expiry", registrar.DefaultTakeoverExpiry, "time a takeover waits for its acknowledgements before asking again")
	fs.DurationVar(&cfg.ENRP.MentorWait, "mentor-wait", registrar.DefaultMentorWait, "with -peer, how long to wait for the first peer's handlespace before serving pool elements and users (negative: serve at once)")
	fs.IntVar(&cfg.ENRP.MaxPeers, "max-peers", registrar.DefaultMaxPeers, "most ENRP peers")
	fs.BoolVar(&cfg.ENRP.StaticPeers, "static-peers", false, "connect only to the -peer registrars (and accept those that connect), not to the registrars their peer lists name")
	fs.Float64Var(&cfg.ENRP.MaxMessageRate, "max-peer-rate", 0, "ENRP messages per second per peer (0: unlimited)")
	var peerIDs listFlag
	fs.Var(&peerIDs, "allow-peer", "certificate identity (a name, or a prefix and *) of registrars that may be ENRP peers over TLS; repeatable, comma-separated; needed with -allow and ENRP peers")
	fs.StringVar(&cfg.ENRP.Announce, "enrp-announce", "", "UDP multicast group to send ENRP presences to and find peer registrars in, such as "+registrar.DefaultENRPAnnounce+" (rsplib's); needs -enrp-listen; sent on -announce-interface; empty: none")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	debugListen := fs.String("debug-listen", "", "TCP address to serve the runtime's profiles (net/http/pprof) at, such as 127.0.0.1:6060; they describe the process to whoever reaches them, so keep it on loopback (default: none)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage // the flag package printed it, with the usage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg.ENRP.AnnounceInterface = cfg.AnnounceInterface
	if g := cfg.ENRP.Announce; g != "" {
		if ap, err := netip.ParseAddrPort(g); err != nil || !ap.Addr().IsMulticast() {
			return fmt.Errorf("-enrp-announce %q: want a multicast group as address:port", g)
		}
	}
	if *id > math.MaxUint32 {
		return fmt.Errorf("-id %d: want at most %d (32 bits)", *id, uint32(math.MaxUint32))
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	cfg.Logger = log
	cfg.ID = asap.ServerID(*id)
	var err error
	if cfg.TLSConfig, err = tf.Server(); err != nil {
		return err
	}
	if len(rules) > 0 {
		if cfg.TLSConfig == nil || cfg.TLSConfig.ClientCAs == nil {
			return errors.New("-allow needs mutual TLS: -tls-cert, -tls-key and -tls-client-ca")
		}
		cfg.Authorize = rules.Authorize
	}

	if len(listen) == 0 {
		listen = defaultListen()
		if cfg.TLSConfig != nil {
			// SCTP has no TLS: with TLS asked for, only TCP unless
			// -listen says otherwise.
			listen = []string{"tcp::3863"}
		}
	}
	for _, spec := range listen {
		if _, _, ok := mapping.SplitAddress(spec); !ok {
			return fmt.Errorf("-listen %q: want network:address", spec)
		}
	}
	for _, spec := range append(append([]string(nil), peers...), enrpListen...) {
		if _, _, ok := strings.Cut(spec, ":"); !ok {
			return fmt.Errorf("-peer/-enrp-listen %q: want network:address", spec)
		}
	}
	cfg.ENRP.Peers, cfg.ENRP.Listen = peers, enrpListen
	if err := enrpTLS(&cfg, peerIDs, len(rules) > 0); err != nil {
		return err
	}
	if *debugListen != "" {
		a, err := serveDebug(ctx, *debugListen, log)
		if err != nil {
			return fmt.Errorf("-debug-listen: %w", err)
		}
		log.Info("serving profiles", "url", "http://"+a.String()+"/debug/pprof/")
	}
	r := registrar.New(cfg)
	errc := make(chan error, len(listen))
	for _, spec := range listen {
		network, address, _ := mapping.SplitAddress(spec)
		l, err := r.Listen(ctx, network, address)
		if err != nil {
			r.Close()
			return err
		}
		attrs := []any{"network", network, "address", l.Addr().String(), "id", fmt.Sprintf("%08x", uint32(r.ID()))}
		if cfg.TLSConfig != nil && !strings.HasPrefix(network, "sctp") {
			attrs = append(attrs, "tls", true, "mutual", cfg.TLSConfig.ClientCAs != nil)
		}
		log.Info("serving ASAP", attrs...)
		go func() { errc <- r.Serve(l) }()
	}
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-errc:
		r.Close()
		return err
	}
	return r.Close()
}

// enrpTLS runs ENRP over TLS when the registrar has TLS: the same
// certificate, the client CA verifying peers both ways, and the
// -allow-peer identities as the peers' authorisation rule. SCTP has no
// TLS, so with TLS the ENRP links must be TCP.
func enrpTLS(cfg *registrar.Config, peerIDs []string, rules bool) error {
	e := &cfg.ENRP
	if len(e.Peers)+len(e.Listen) == 0 {
		if len(peerIDs) > 0 {
			return errors.New("-allow-peer without -peer or -enrp-listen")
		}
		return nil
	}
	if cfg.TLSConfig == nil || cfg.TLSConfig.ClientCAs == nil {
		if len(peerIDs) > 0 {
			return errors.New("-allow-peer needs mutual TLS: -tls-cert, -tls-key and -tls-client-ca")
		}
		return nil
	}
	for _, spec := range append(append([]string(nil), e.Peers...), e.Listen...) {
		if network, _, _ := mapping.SplitAddress(spec); strings.HasPrefix(network, "sctp") {
			return fmt.Errorf("-peer/-enrp-listen %q: SCTP has no TLS (with TLS, ENRP runs over tcp)", spec)
		}
	}
	ec := cfg.TLSConfig.Clone()
	ec.RootCAs = ec.ClientCAs
	e.TLSConfig = ec
	switch {
	case len(peerIDs) > 0:
		e.AuthorizePeer = registrar.PeerIdentities(peerIDs...)
	case rules:
		return errors.New("-allow with ENRP peers needs -allow-peer, the identities of the registrars: else any client certificate could join the pool of registrars")
	}
	return nil
}
