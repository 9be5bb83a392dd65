//go:build linux

package interop

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/internal/rsplibtest"
	"github.com/rsp-go/rsp/internal/testhost"
	"github.com/rsp-go/rsp/registrar"
)

// helperPEEnv, when set to a registrar's address, makes
// TestHelperSCTPSessionPE a pool element process: an rsp session echo
// element over SCTP in pool sctpecho, for the tests to kill.
const helperPEEnv = "RSP_TEST_SCTP_SESSION_PE"

// TestHelperSCTPSessionPE is not a test: run as a child process, it serves
// sessions over SCTP until it is killed.
func TestHelperSCTPSessionPE(t *testing.T) {
	reg := os.Getenv(helperPEEnv)
	if reg == "" {
		t.Skip("a helper process of TestSessionOverSCTP")
	}
	rsplibtest.ServeSCTPEcho(reg, "sctpecho")
}

// TestSessionOverSCTP: an rsp pool user's session to rsp elements over
// SCTP (each association says it speaks sessions with its adaptation
// indication) echoes messages; the element in use is killed (SIGKILL) in
// the middle, then the next one stopped (SIGSTOP: its kernel still answers
// SCTP heartbeats, the session's PINGs go unanswered), and each time the
// session fails over to another and goes on reading the echoes with no
// error, the stop noticed within the session's heartbeat misses.
func TestSessionOverSCTP(t *testing.T) {
	rsplibtest.Require(t)
	regAddr := startSCTPRegistrar(t, 3923)
	procs := map[uint32]*rsplibtest.Process{}
	for range 3 {
		p, id := startHelperPE(t, regAddr)
		procs[uint32(id)] = p
	}
	const heartbeat = 200 * time.Millisecond
	s := dialEchoSession(t, regAddr, heartbeat)
	s.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(s)
	for i := range 30 {
		var sig syscall.Signal
		switch i {
		case 10:
			sig = syscall.SIGKILL
		case 20:
			sig = syscall.SIGSTOP
		}
		if sig != 0 {
			victim := uint32(s.Element().ID)
			if procs[victim] == nil {
				t.Fatalf("the session uses PE %08x, not a helper", victim)
			}
			syscall.Kill(procs[victim].Pid, sig)
			if sig == syscall.SIGSTOP {
				defer syscall.Kill(procs[victim].Pid, syscall.SIGCONT)
			}
		}
		start := time.Now()
		msg := fmt.Sprintf("echo %d\n", i)
		if _, err := io.WriteString(s, msg); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		line, err := br.ReadString('\n')
		if err != nil || line != msg {
			t.Fatalf("echo %d: %q, %v", i, line, err)
		}
		if sig != 0 {
			took := time.Since(start)
			t.Logf("%v: echo after %v", sig, took)
			// Three heartbeats without an answer, then the failover.
			if sig == syscall.SIGSTOP && took > 4*heartbeat+time.Second {
				t.Errorf("a stopped element held the session up for %v, want about three heartbeats (%v)", took, 3*heartbeat)
			}
		}
	}
	if s.Failovers() != 2 {
		t.Errorf("Failovers() = %d, want 2", s.Failovers())
	}
	for id, p := range procs {
		if out := p.Out.String(); regexp.MustCompile("plain connection").MatchString(out) {
			t.Errorf("PE %08x served a plain connection:\n%s", id, out)
		}
	}
}

// startHelperPE starts a session echo element process registered with
// reg and waits until it serves.
func startHelperPE(t *testing.T, reg string) (*rsplibtest.Process, asap.PEID) {
	t.Helper()
	return rsplibtest.StartElementProcess(t, []string{helperPEEnv + "=" + reg}, "-test.run=^TestHelperSCTPSessionPE$", "-test.timeout=5m")
}

// TestSessionStreamsOverSCTP: over SCTP a session's messages carry the
// stream, ordering and PPID the pool user asked for to the element's
// application; a stream beyond the association's is refused with
// ErrNotSupported and the session carries on.
func TestSessionStreamsOverSCTP(t *testing.T) {
	rsplibtest.Require(t)
	regAddr := startSCTPRegistrar(t, 3933)
	lc := rsp.ListenConfig{Registrars: []string{"sctp:" + regAddr}, LocalAddr: hostAddr + ":0"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := lc.Listen(ctx, "sctp", "pool:sctpstreams")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan rsp.Message, 10)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		s, ok := c.(*rsp.Session)
		if !ok {
			t.Errorf("the element accepted a %T, want a *rsp.Session", c)
			return
		}
		for {
			m, err := s.ReadMsg()
			if err != nil {
				return
			}
			got <- m
		}
	}()
	d := rsp.Dialer{Registrars: []string{"sctp:" + regAddr}, Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "tcp", "pool:sctpstreams")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := c.(*rsp.Session)
	sent := []rsp.WriteOptions{{PPID: 7}, {PPID: 8, Stream: 2, Unordered: true}, {PPID: 9, Stream: 1}}
	for i, o := range sent {
		if _, err := s.WriteMsg([]byte{byte(i)}, o); err != nil {
			t.Fatalf("WriteMsg %+v: %v", o, err)
		}
	}
	if _, err := s.WriteMsg([]byte("x"), rsp.WriteOptions{Stream: 60000}); !errors.Is(err, rsp.ErrNotSupported) {
		t.Errorf("stream 60000: %v, want ErrNotSupported", err)
	}
	byData := map[byte]rsp.Message{}
	for range sent {
		select {
		case m := <-got:
			byData[m.Data[0]] = m
		case <-time.After(5 * time.Second):
			t.Fatalf("the element got %d of %d messages", len(byData), len(sent))
		}
	}
	for i, o := range sent {
		m := byData[byte(i)]
		if m.PPID != o.PPID || m.Stream != o.Stream || m.Unordered != o.Unordered {
			t.Errorf("message %d: ppid %d stream %d unordered %v; sent %+v", i, m.PPID, m.Stream, m.Unordered, o)
		}
	}
	if s.Failovers() != 0 {
		t.Errorf("%d failovers", s.Failovers())
	}
	// The kernel's view of the association's primary path.
	if pi, err := s.PathInfo(); err != nil || pi.RTO <= 0 || pi.PathMTU < 1280 || pi.RTT > pi.RTO {
		t.Errorf("PathInfo over SCTP: %+v, %v", pi, err)
	}
}

// TestSessionOverSCTPBlackHole: the packets to and from the element a
// session over SCTP uses are dropped (netem on its port, nothing closes);
// the session notices within about three heartbeats and goes on with
// another element, its echoes intact.
func TestSessionOverSCTPBlackHole(t *testing.T) {
	rsplibtest.Require(t)
	regAddr := startSCTPRegistrar(t, 3973)
	for range 2 {
		startHelperPE(t, regAddr)
	}
	const heartbeat = 200 * time.Millisecond
	s := dialEchoSession(t, regAddr, heartbeat)
	s.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(s)
	for i := range 10 {
		if i == 5 {
			_, port, _ := net.SplitHostPort(s.RemoteAddr().String())
			pn, _ := strconv.Atoi(port)
			testhost.BlackholePort(t, pn)
		}
		start := time.Now()
		msg := fmt.Sprintf("echo %d\n", i)
		if _, err := io.WriteString(s, msg); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		line, err := br.ReadString('\n')
		if err != nil || line != msg {
			t.Fatalf("echo %d: %q, %v", i, line, err)
		}
		if i == 5 {
			took := time.Since(start)
			t.Logf("black hole: echo after %v", took)
			if took > 4*heartbeat+time.Second {
				t.Errorf("a black-holed element held the session up for %v, want about three heartbeats (%v)", took, 3*heartbeat)
			}
		}
	}
	if s.Failovers() != 1 {
		t.Errorf("Failovers() = %d, want 1", s.Failovers())
	}
}

// startSCTPRegistrar serves an rsp registrar over SCTP on the test host's
// port until the test ends, and returns its address.
func startSCTPRegistrar(t *testing.T, port int) string {
	t.Helper()
	r := registrar.New(registrar.Config{})
	t.Cleanup(func() { r.Close() })
	addr := fmt.Sprintf("%s:%d", hostAddr, port)
	l, err := registrar.Listen(context.Background(), "sctp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(l)
	return addr
}

// dialEchoSession dials a session to pool sctpecho at the registrar reg
// with the given heartbeat interval, closed when the test ends.
func dialEchoSession(t *testing.T, reg string, heartbeat time.Duration) *rsp.Session {
	t.Helper()
	d := rsp.Dialer{Registrars: []string{"sctp:" + reg}, Timeout: 2 * time.Second,
		Session: rsp.SessionConfig{HeartbeatInterval: heartbeat}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", "pool:sctpecho")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, ok := c.(*rsp.Session)
	if !ok {
		t.Fatalf("dialing an rsp element over SCTP gave a %T, want a *rsp.Session", c)
	}
	return s
}
