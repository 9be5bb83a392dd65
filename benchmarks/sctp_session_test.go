//go:build linux

package benchmarks

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/sctp"
	"github.com/rsp-go/rsp/registrar"
)

// The SCTP session benchmarks compare an rsp session over SCTP with a
// plain SCTP association (what it rides on) in the same run, inside
// User-mode Linux (.ci/uml/test-sctp); elsewhere they skip. In User-mode
// Linux a system call costs about 100 µs, so the 64-byte rates measure
// system calls, and the results vary much from run to run: compare the
// peers of one run (benchstat -col /peer).

// sctpPair returns the two ends of an SCTP association ("sctp") or of an
// rsp session over SCTP ("rsp-sctp").
func sctpPair(b *testing.B, peer string) (client, server net.Conn) {
	b.Helper()
	if !sctp.Supported() {
		b.Skip("the kernel has no SCTP; run with .ci/uml/test-sctp")
	}
	if peer == "sctp" {
		lo := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
		l, err := sctp.Listen("sctp", &sctp.Addr{IPs: lo})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		acc := make(chan net.Conn, 1)
		go func() { c, _ := l.Accept(); acc <- c }()
		c, err := sctp.Dial(context.Background(), "sctp", &sctp.Addr{IPs: lo, Port: l.Addr().(*sctp.Addr).Port}, nil)
		if err != nil {
			b.Fatal(err)
		}
		s := <-acc
		b.Cleanup(func() { c.Close(); s.Close() })
		return c, s
	}
	r := registrar.New(registrar.Config{MaxBadPEReports: 1 << 30})
	b.Cleanup(func() { r.Close() })
	rl, err := registrar.Listen(context.Background(), "sctp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go r.Serve(rl)
	regs := []string{"sctp:" + rl.Addr().String()}
	ep := endpoint.New(endpoint.Config{Registrars: regs, CacheLifetime: -1})
	b.Cleanup(func() { ep.Close() })
	lc := rsp.ListenConfig{Endpoint: ep, LocalAddr: "127.0.0.1:0"}
	l, err := lc.Listen(context.Background(), "sctp", "pool:sctpbench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	d := rsp.Dialer{Endpoint: endpoint.New(endpoint.Config{Registrars: regs})}
	b.Cleanup(func() { d.Endpoint.Close() })
	acc := make(chan net.Conn, 1)
	go func() { c, _ := l.Accept(); acc <- c }()
	c, err := d.DialContext(context.Background(), "tcp", "pool:sctpbench")
	if err != nil {
		b.Fatal(err)
	}
	s := <-acc
	if _, ok := c.(*rsp.Session); !ok {
		b.Fatalf("dialed %T, want a session over SCTP", c)
	}
	b.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// BenchmarkSCTPBulk: one way bulk transfer in 32 KiB writes, until the
// reader has everything, over a plain SCTP association and over a session
// riding one.
func BenchmarkSCTPBulk(b *testing.B) {
	benchBulk(b, sctpPair, "sctp", "rsp-sctp")
}

// BenchmarkSCTPMessages64: a stream of 64-byte messages, one Write each,
// over a plain SCTP association and over a session, without and with an
// ack request on every message (then the benchmark waits for the last
// one's acknowledgement).
func BenchmarkSCTPMessages64(b *testing.B) {
	benchMessages64(b, sctpPair, "sctp", "rsp-sctp")
}
