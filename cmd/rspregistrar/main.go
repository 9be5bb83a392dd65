// Command rspregistrar runs an RSerPool registrar: pool elements register
// with it, pool users resolve pools through it.
//
// It serves ASAP over TCP (the framing of package mapping) and, where the
// kernel has SCTP, over SCTP. With -announce it announces itself to a
// multicast group, where pool elements and pool users that listen there
// find it. It logs with log/slog to standard error and shuts down cleanly
// on SIGINT and SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/registrar"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rspregistrar:", err)
		os.Exit(1)
	}
}

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
	fs.Var(&listen, "listen", "where to serve ASAP, as network:address (tcp:HOST:PORT or sctp:HOST:PORT); repeatable, comma-separated (default tcp::3863, and sctp::3863 where the kernel has SCTP)")
	fs.DurationVar(&cfg.KeepAliveInterval, "keepalive-interval", registrar.DefaultKeepAliveInterval, "interval of keep-alives to each pool element (negative: off)")
	fs.DurationVar(&cfg.KeepAliveTimeout, "keepalive-timeout", registrar.DefaultKeepAliveTimeout, "time a pool element has to answer a keep-alive")
	fs.IntVar(&cfg.MaxBadPEReports, "max-bad-pe-reports", registrar.DefaultMaxBadPEReports, "unreachable reports after which a pool element is removed")
	fs.IntVar(&cfg.HandleResolutionItems, "resolution-items", registrar.DefaultHandleResolutionItems, "pool elements in a handle resolution that does not ask for a number")
	fs.IntVar(&cfg.MaxHandleResolutionItems, "max-resolution-items", registrar.DefaultMaxHandleResolutionItems, "most pool elements in any handle resolution")
	fs.IntVar(&cfg.MaxMessageSize, "max-message-size", registrar.DefaultMaxMessageSize, "largest ASAP message accepted, in bytes")
	fs.IntVar(&cfg.MaxPools, "max-pools", registrar.DefaultMaxPools, "most pools")
	fs.IntVar(&cfg.MaxPEsPerPool, "max-pes-per-pool", registrar.DefaultMaxPEsPerPool, "most pool elements in one pool")
	fs.Float64Var(&cfg.HandleResolutionRate, "max-hr-rate", 0, "handle resolutions per second per connection (0: unlimited)")
	fs.Float64Var(&cfg.UnreachableRate, "max-eu-rate", 0, "unreachable reports per second per connection (0: unlimited)")
	fs.StringVar(&cfg.Announce, "announce", "", "UDP multicast group to send ASAP server announces to, such as 239.0.0.50:3863 (rsplib's) or 224.0.1.185:3863 (IANA's); empty: no announces")
	fs.StringVar(&cfg.AnnounceInterface, "announce-interface", "", "network interface to send announces on (default: the system's choice)")
	fs.DurationVar(&cfg.AnnounceInterval, "announce-interval", registrar.DefaultAnnounceInterval, "announce period, stretched by the number of other registrars heard announcing")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
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

	if len(listen) == 0 {
		listen = defaultListen()
	}
	for _, spec := range listen {
		if _, _, ok := strings.Cut(spec, ":"); !ok {
			return fmt.Errorf("-listen %q: want network:address", spec)
		}
	}
	r := registrar.New(cfg)
	errc := make(chan error, len(listen))
	for _, spec := range listen {
		network, address, _ := strings.Cut(spec, ":")
		l, err := registrar.Listen(ctx, network, address)
		if err != nil {
			r.Close()
			return err
		}
		log.Info("serving ASAP", "network", network, "address", l.Addr().String(), "id", fmt.Sprintf("%08x", uint32(r.ID())))
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
