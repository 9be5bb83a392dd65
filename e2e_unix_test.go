//go:build unix

package rsp_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/internal/stall"
	"github.com/rsp-go/rsp/internal/testpki"
)

// TestGRPCOverSessionsRecovers: a gRPC client calls steadily over
// sessions to a pool of gRPC servers in processes of their own. gRPC's
// HTTP/2 stream cannot move, so when its server is killed or stopped the
// session fails at once (killed) or within three heartbeats (stopped)
// with an error, never spliced onto another server; gRPC re-dials through
// rsp and its calls succeed again within three heartbeats of the failure.
func TestGRPCOverSessionsRecovers(t *testing.T) {
	r, regs := testRegistrar(t)
	children := map[string]*childPE{}
	for range 3 {
		c := startChild(t, "grpc-s", regs[0], "grpc")
		children[c.id] = c
	}
	waitFor(t, "three gRPC servers", 5*time.Second, func() bool { return poolSize(r, "grpc-s") == 3 })

	var current string
	d := &rsp.Dialer{Endpoint: newEndpoint(t, regs), Timeout: e2eHeartbeat, Session: rsp.SessionConfig{HeartbeatInterval: e2eHeartbeat}}
	cc, err := grpc.NewClient("passthrough:///pool:grpc-s",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, "tcp", addr)
			if err == nil {
				if e, ok := rsp.PoolElementOf(c); ok {
					current = idString(e.ID)
				}
				if _, ok := c.(*rsp.Session); !ok {
					t.Errorf("dialed %T, want a session", c)
				}
			}
			return c, err
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := healthpb.NewHealthClient(cc)
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		return err
	}
	if err := call(); err != nil {
		t.Fatal(err)
	}
	for _, how := range []string{"killed", "stopped"} {
		victim := children[current]
		if victim == nil {
			t.Fatalf("no child serves %q", current)
		}
		stalls := stall.Measure(t)
		failedAt := time.Now()
		if how == "killed" {
			victim.kill()
		} else {
			victim.stop()
		}
		// Calls go on every 10 ms; the first success after the failure
		// must come within three heartbeats.
		var back time.Duration
		for time.Since(failedAt) < 5*time.Second {
			if err := call(); err == nil {
				back = time.Since(failedAt)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if back == 0 {
			t.Fatalf("server %s: no successful call within 5 s", how)
		}
		if current == victim.id {
			t.Fatalf("server %s: calls still reach it", how)
		}
		stalls.Stop()
		stalled, longest := stalls.Total()
		t.Logf("server %s: calls succeed again after %v; the process stalled for %v, at most %v at once", how, back, stalled, longest)
		if back > 3*e2eHeartbeat+e2eHeartbeat/2+stalled {
			t.Errorf("server %s: calls succeed again after %v, want within three heartbeats (%v) and the %v the process stalled", how, back, 3*e2eHeartbeat, stalled)
		}
	}
}

func idString(id asap.PEID) string { return fmt.Sprintf("%08x", uint32(id)) }

// TestTLSOverSessionFailsNotSpliced: TLS run over a session (its keys
// belong to the server) fails promptly with an error when its server
// dies, rather than going on with another server's bytes; a new dial
// reaches another server and works.
func TestTLSOverSessionFailsNotSpliced(t *testing.T) {
	ca := testpki.New(t, "ca")
	serverTLS := testpki.ServerConfig(ca.MustIssue(t, "tls-s", "tls-s"), nil)
	echo := func(c net.Conn) {
		tc := tls.Server(c, serverTLS)
		io.Copy(tc, tc)
	}
	pes, regs := startSessionPool(t, 2, "tls-s", peOptions{serve: echo})
	dial := func() (*rsp.Session, *tls.Conn) {
		s := dialSession(t, regs, "tls-s", rsp.SessionConfig{HeartbeatInterval: chaosHeartbeat})
		cfg := testpki.ClientConfig(ca.Pool())
		cfg.ServerName = "tls-s"
		tc := tls.Client(s, cfg)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := tc.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(tc, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("echo %q, %v", buf, err)
		}
		return s, tc
	}
	s, tc := dial()
	start := time.Now()
	pes[s.Element().ID].crash()
	_, err := tc.Read(make([]byte, 5))
	if !errors.Is(err, rsp.ErrStateLost) {
		t.Fatalf("TLS read after the server died: %v, want ErrStateLost", err)
	}
	if d := time.Since(start); d > 3*chaosHeartbeat {
		t.Errorf("failed after %v, want promptly", d)
	}
	if s.Failovers() != 0 {
		t.Errorf("the session failed over %d times under TLS", s.Failovers())
	}
	dial()
}

// connListener is a net.Listener fed connection by connection.
type connListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *connListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *connListener) Addr() net.Addr { return &net.TCPAddr{} }

// serve hands c to the listener's server and waits until it is closed.
func (l *connListener) serve(c net.Conn) {
	w := &waitConn{Conn: c, closed: make(chan struct{})}
	select {
	case l.ch <- w:
		<-w.closed
	case <-l.done:
	}
}

type waitConn struct {
	net.Conn
	closed chan struct{}
	once   sync.Once
}

func (c *waitConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// TestHTTPOverSessionsKilledAndSilent: an HTTP/1.1 client with keep-alive
// connections (sessions) to a pool of servers gets its answers again
// within three heartbeats of its server being killed or going silent, and
// never an answer from the dead server.
func TestHTTPOverSessionsKilledAndSilent(t *testing.T) {
	r, regs := testRegistrar(t)
	pes := map[string]*sessionPE{}
	for _, name := range []string{"a", "b", "c"} {
		l := newConnListener()
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close(); l.Close() })
		p := startSessionPE(t, regs, "web-s", peOptions{serve: l.serve, heartbeat: chaosHeartbeat})
		pes[name] = p
	}
	waitFor(t, "three servers", 2*time.Second, func() bool { return poolSize(r, "web-s") == 3 })
	d := &rsp.Dialer{Endpoint: newEndpoint(t, regs), Timeout: e2eHeartbeat, Session: rsp.SessionConfig{HeartbeatInterval: e2eHeartbeat}}
	tr := &http.Transport{DialContext: d.DialContext}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Second}
	get := func() (string, error) {
		resp, err := client.Get("http://web-s/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	first, err := get()
	if err != nil {
		t.Fatal(err)
	}
	dead := map[string]bool{}
	victim := first
	for _, how := range []string{"killed", "silent"} {
		stalls := stall.Measure(t)
		failedAt := time.Now()
		if how == "killed" {
			pes[victim].crash()
		} else {
			pes[victim].proxy.BlackHole()
		}
		dead[victim] = true
		var back time.Duration
		var name string
		for time.Since(failedAt) < 5*time.Second {
			if name, err = get(); err == nil {
				back = time.Since(failedAt)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if back == 0 {
			t.Fatalf("server %s: no answer within 5 s: %v", how, err)
		}
		if dead[name] {
			t.Fatalf("server %s: answer from dead server %s", how, name)
		}
		stalls.Stop()
		stalled, longest := stalls.Total()
		t.Logf("server %s: answers again after %v, from %s; the process stalled for %v, at most %v at once", how, back, name, stalled, longest)
		if back > 3*e2eHeartbeat+e2eHeartbeat/2+stalled {
			t.Errorf("server %s: answers again after %v, want within three heartbeats (%v) and the %v the process stalled", how, back, 3*e2eHeartbeat, stalled)
		}
		victim = name
	}
}
