package benchmarks

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap/endpoint"
)

// BenchmarkDial compares rsp.Dialer.DialContext with a plain net.Dial to the
// same server: with the resolution cached (the common case) and cold (a
// handle resolution per dial), opening a session, and with the resolution
// cached opening a plain connection.
func BenchmarkDial(b *testing.B) {
	t := startRSPRegistrar(b, "tcp", "127.0.0.1:0")
	regs := []string{"tcp:" + t.Addr}
	ep := endpoint.New(endpoint.Config{Registrars: regs})
	defer ep.Close()
	lc := rsp.ListenConfig{Endpoint: ep, LocalAddr: "127.0.0.1:0"}
	l, err := lc.Listen(context.Background(), "tcp", "pool:bench")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	b.Run("peer=net.Dial", func(b *testing.B) {
		for b.Loop() {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	})
	// The element speaks sessions: a dial opens one (a HELLO round trip
	// more), or, with Plain, a plain connection.
	for _, mode := range []struct {
		name  string
		cache time.Duration
		plain bool
	}{{"rsp=cached", time.Hour, false}, {"rsp=cold", -1, false}, {"rsp=cached-plain", time.Hour, true}} {
		b.Run(mode.name, func(b *testing.B) {
			pu := endpoint.New(endpoint.Config{Registrars: regs, CacheLifetime: mode.cache})
			defer pu.Close()
			d := rsp.Dialer{Endpoint: pu, Plain: mode.plain}
			for b.Loop() {
				c, err := d.DialContext(context.Background(), "tcp", "pool:bench")
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}
