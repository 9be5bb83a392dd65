// Package testutil holds small helpers shared by the project's tests.
package testutil

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

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
	go r.Serve(l)
	t.Cleanup(func() { r.Close() })
	scheme := "tcp:"
	if cfg.TLSConfig != nil {
		scheme = "tls:"
	}
	return r, scheme + l.Addr().String()
}
