package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// serveDebug serves the runtime profiles of net/http/pprof at
// http://address/debug/pprof/ until ctx is done, for profiling a running
// registrar (go tool pprof http://address/debug/pprof/heap). The profiles
// tell anyone who can reach them about the process: listen on loopback.
func serveDebug(ctx context.Context, address string, log *slog.Logger) (net.Addr, error) {
	l, err := net.Listen("tcp", address)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("debug listener failed", "err", err)
		}
	}()
	context.AfterFunc(ctx, func() { srv.Close() })
	return l.Addr(), nil
}
