// Package testutil holds small helpers shared by the project's tests.
package testutil

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/registrar"
)

// Buffer is a bytes.Buffer that a program or goroutine writes to while a
// test reads it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitFor polls cond every 10 ms until it holds, failing the test with
// "timed out waiting for what" after timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FreeAddr returns a loopback TCP address ("127.0.0.1:port") where nothing
// listens: a port the system just handed out and took back.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// StartRegistrar runs a registrar configured by cfg on a loopback TCP port
// until the test ends, and returns it with its address as endpoints and
// the -registrar flags name it ("tcp:127.0.0.1:port", or
// "tls:127.0.0.1:port" when cfg has a TLS configuration).
func StartRegistrar(t testing.TB, cfg registrar.Config) (*registrar.Registrar, string) {
	t.Helper()
	r := registrar.New(cfg)
	l, err := r.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve(l) }()
	t.Cleanup(func() {
		r.Close()
		// A registrar that could not serve (an ENRP listener whose port
		// was taken, say) fails the test that counted on it, with why.
		if err := <-served; !errors.Is(err, registrar.ErrRegistrarClosed) {
			t.Errorf("registrar %08x: Serve: %v", uint32(r.ID()), err)
		}
	})
	scheme := "tcp:"
	if cfg.TLSConfig != nil {
		scheme = "tls:"
	}
	return r, scheme + l.Addr().String()
}

// ListenTCP opens a listener of the TCP mapping on a loopback port, closed
// when the test ends. Unlike an address from FreeAddr, its port is held
// from the start: nothing else can take it (not even a connection from a
// proxy in front of it to itself, which Linux makes of a dial to a port
// that nobody listens on when the ephemeral port it picks is that port).
func ListenTCP(t testing.TB) mapping.Listener {
	t.Helper()
	var lc mapping.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// ServeENRP serves ENRP connections from peers on l for r until the test
// ends (r.ServeENRP), failing the test if it stops for another reason
// than r's Close.
func ServeENRP(t testing.TB, r *registrar.Registrar, l mapping.Listener) {
	served := make(chan error, 1)
	go func() { served <- r.ServeENRP(l) }()
	t.Cleanup(func() {
		r.Close()
		if err := <-served; !errors.Is(err, registrar.ErrRegistrarClosed) {
			t.Errorf("registrar %08x: ServeENRP: %v", uint32(r.ID()), err)
		}
	})
}

// Drain returns what ch holds now, without waiting for more.
func Drain[T any](ch <-chan T) []T {
	var got []T
	for {
		select {
		case v := <-ch:
			got = append(got, v)
		default:
			return got
		}
	}
}

// ServeEach accepts connections with accept until it fails, and serves
// each in a goroutine of its own with serve, closing it once serve
// returns. It returns at once.
func ServeEach[C interface{ Close() error }](accept func() (C, error), serve func(C)) {
	go func() {
		for {
			c, err := accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
}
