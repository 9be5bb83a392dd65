package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/policy"
)

// registerPE registers a pool element reached at tcp:127.0.0.1:port in pool
// h through an endpoint of its own, as a server process would.
func registerPE(t *testing.T, reg, h string, port uint16) *endpoint.Registration {
	t.Helper()
	ep := endpoint.New(endpoint.Config{Registrars: []string{reg}})
	t.Cleanup(func() { ep.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := ep.Register(ctx, asap.PoolHandle(h), asap.PoolElement{
		UserTransport: asap.Transport{Kind: asap.ParamTCPTransport, Port: port, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
		Policy:        policy.Policy{Type: policy.RoundRobin},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// peLines returns the lines of resolve's table after its header.
func peLines(t *testing.T, out string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) < 2 || !regexp.MustCompile(`^PE\s+TRANSPORT\s+POLICY\s+HOME$`).MatchString(lines[1]) {
		t.Fatalf("no table header in the output:\n%s", out)
	}
	return lines[2:]
}

func TestResolve(t *testing.T) {
	t.Parallel()
	r, reg := startRegistrar(t)
	a := registerPE(t, reg, "web", 8001)
	b := registerPE(t, reg, "web", 8002)

	out, errOut, err := runCommand(t, runResolve, "", "-registrar", reg, "web")
	if err != nil {
		t.Fatalf("resolve: %v\n%s", err, errOut)
	}
	if first := strings.SplitN(out, "\n", 2)[0]; first != `pool "web", policy RR` {
		t.Errorf("first line %q, want the pool and its policy", first)
	}
	lines := peLines(t, out)
	if len(lines) != 2 {
		t.Fatalf("%d pool elements listed, want 2:\n%s", len(lines), out)
	}
	for _, x := range []struct {
		reg  *endpoint.Registration
		port int
	}{{a, 8001}, {b, 8002}} {
		want := regexp.MustCompile(fmt.Sprintf(`^%08x\s+tcp:127\.0\.0\.1:%d\s+RR\s+%08x$`, uint32(x.reg.ID()), x.port, uint32(r.ID())))
		found := false
		for _, l := range lines {
			found = found || want.MatchString(l)
		}
		if !found {
			t.Errorf("no line matches %v:\n%s", want, out)
		}
	}

	// -n asks for fewer elements.
	out, errOut, err = runCommand(t, runResolve, "", "-registrar", reg, "-n", "1", "web")
	if err != nil {
		t.Fatalf("resolve -n 1: %v\n%s", err, errOut)
	}
	if lines := peLines(t, out); len(lines) != 1 {
		t.Errorf("resolve -n 1 listed %d pool elements, want 1:\n%s", len(lines), out)
	}
}

// TestResolveEnvironment checks that resolve finds the registrar through
// RSP_REGISTRARS when -registrar is not given.
func TestResolveEnvironment(t *testing.T) {
	_, reg := startRegistrar(t)
	p := registerPE(t, reg, "env", 8003)
	t.Setenv(endpoint.EnvRegistrars, "tcp:"+testutil.FreeAddr(t)+","+reg)
	out, errOut, err := runCommand(t, runResolve, "", "env")
	if err != nil {
		t.Fatalf("resolve: %v\n%s", err, errOut)
	}
	if lines := peLines(t, out); len(lines) != 1 || !strings.HasPrefix(lines[0], fmt.Sprintf("%08x ", uint32(p.ID()))) {
		t.Errorf("want the one pool element %08x:\n%s", uint32(p.ID()), out)
	}
}

func TestResolveErrors(t *testing.T) {
	t.Parallel()
	_, reg := startRegistrar(t)
	registerPE(t, reg, "known", 8004)
	out, _, err := runCommand(t, runResolve, "", "-registrar", reg, "unknown")
	if !errors.Is(err, endpoint.ErrUnknownPool) || !strings.Contains(err.Error(), `"unknown"`) {
		t.Errorf("unknown pool: err = %v, want an unknown pool error naming the pool", err)
	}
	if out != "" {
		t.Errorf("unknown pool: output %q, want none", out)
	}

	start := time.Now()
	_, _, err = runCommand(t, runResolve, "", "-registrar", "tcp:"+testutil.FreeAddr(t), "known")
	if !errors.Is(err, endpoint.ErrNoRegistrar) {
		t.Errorf("no registrar: err = %v, want %v", err, endpoint.ErrNoRegistrar)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("no registrar: the error took %v", d)
	}
}

var echoServerLine = regexp.MustCompile(`echo server ([0-9a-f]{8}) in pool "([^"]*)" on (\S+)\n`)

// startEcho runs the echo command and returns it with its pool element
// identifier and listening address once it is registered.
func startEcho(t *testing.T, args ...string) (*running, string, string) {
	t.Helper()
	e := startCommand(t, runEcho, nil, append([]string{"-listen", "127.0.0.1:0"}, args...)...)
	var m []string
	waitFor(t, "the echo server to register", func() bool {
		if e.ended() {
			t.Fatalf("echo ended: %v\n%s", e.err, e.stderr)
		}
		m = echoServerLine.FindStringSubmatch(e.stderr.String())
		return m != nil
	})
	return e, m[1], m[3]
}

func TestEcho(t *testing.T) {
	t.Parallel()
	r, reg := startRegistrar(t)
	e, id, addr := startEcho(t, "-registrar", reg, "-pool", "echo-test", "-policy", "wrr:5")

	// The registrar holds the server at its address with its policy.
	pes := poolElements(r, "echo-test")
	if len(pes) != 1 {
		t.Fatalf("pool has %d elements, want 1", len(pes))
	}
	pe := pes[0]
	if got := fmt.Sprintf("%08x", uint32(pe.ID)); got != id {
		t.Errorf("registered PE %s, the server says %s", got, id)
	}
	if got := transportString(pe.UserTransport); got != "tcp:"+addr {
		t.Errorf("registered transport %s, want tcp:%s", got, addr)
	}
	if pe.Policy.Type != policy.WeightedRoundRobin || pe.Policy.Weight != 5 {
		t.Errorf("registered policy %+v, want weighted round robin with weight 5", pe.Policy)
	}

	// A client dialing the pool gets its bytes back.
	d := rsp.Dialer{Registrars: []string{reg}, Timeout: 5 * time.Second, Session: rsp.SessionConfig{FailoverTimeout: time.Second}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", "pool:echo-test")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := []byte("hello, pool\x00\xff")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != string(msg) {
		t.Errorf("echoed %q, want %q", got, msg)
	}

	// Cancelling ends the server although the client stays connected,
	// deregisters it and tells the client's session to go elsewhere:
	// there is no other element, so the session fails.
	if err := e.stop(t); err != nil {
		t.Errorf("echo ended with %v", err)
	}
	if pes := poolElements(r, "echo-test"); len(pes) != 0 {
		t.Errorf("pool still has %d elements after the server ended", len(pes))
	}
	if n, err := c.Read(got); err == nil {
		t.Errorf("read %d bytes from an ended server", n)
	}
}

func TestEchoPoolOfTwo(t *testing.T) {
	t.Parallel()
	r, reg := startRegistrar(t)
	_, id1, _ := startEcho(t, "-registrar", reg, "-pool", "two")
	_, id2, _ := startEcho(t, "-registrar", reg, "-pool", "two")
	if n := len(poolElements(r, "two")); n != 2 {
		t.Fatalf("pool has %d elements, want 2", n)
	}
	// Round robin spreads new connections over both servers.
	ep := endpoint.New(endpoint.Config{Registrars: []string{reg}, CacheLifetime: -1})
	defer ep.Close()
	d := rsp.Dialer{Endpoint: ep, Timeout: 5 * time.Second}
	seen := map[string]bool{}
	for range 4 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := d.DialContext(ctx, "tcp", "pool:two")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		e, _ := rsp.PoolElementOf(c)
		seen[fmt.Sprintf("%08x", uint32(e.ID))] = true
		c.Close()
	}
	if !seen[id1] || !seen[id2] {
		t.Errorf("connections reached %v, want both %s and %s", seen, id1, id2)
	}
}

func TestTerminal(t *testing.T) {
	t.Parallel()
	_, reg := startRegistrar(t)
	_, id, _ := startEcho(t, "-registrar", reg, "-pool", "term")

	out, errOut, err := runCommand(t, runTerminal, "hello\n\nworld, again\nno newline", "-registrar", reg, "term")
	if err != nil {
		t.Fatalf("terminal: %v\n%s", err, errOut)
	}
	want := ""
	for _, l := range []string{"hello", "", "world, again", "no newline"} {
		want += "from PE " + id + "> " + l + "\n"
	}
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	if w := `connected to PE ` + id + ` of pool "term"`; !strings.Contains(errOut, w) {
		t.Errorf("standard error lacks %q:\n%s", w, errOut)
	}
}

// TestTerminalInterrupt checks that the terminal ends when interrupted
// while it waits for standard input.
func TestTerminalInterrupt(t *testing.T) {
	t.Parallel()
	_, reg := startRegistrar(t)
	startEcho(t, "-registrar", reg, "-pool", "term")
	in, w := io.Pipe()
	defer w.Close()
	term := startCommand(t, runTerminal, in, "-registrar", reg, "term")
	waitFor(t, "the terminal to connect", func() bool { return strings.Contains(term.stderr.String(), "connected to PE") })
	if _, err := io.WriteString(w, "ping\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reply", func() bool { return strings.Contains(term.stdout.String(), "> ping\n") })
	if err := term.stop(t); err != nil {
		t.Errorf("terminal ended with %v", err)
	}
}

func TestTerminalErrors(t *testing.T) {
	t.Parallel()
	_, reg := startRegistrar(t)
	if _, _, err := runCommand(t, runTerminal, "x\n", "-registrar", reg, "nopool"); !errors.Is(err, endpoint.ErrUnknownPool) {
		t.Errorf("unknown pool: err = %v, want %v", err, endpoint.ErrUnknownPool)
	}

	// A server that does not answer a line within -wait.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	registerPE(t, reg, "mute", uint16(l.Addr().(*net.TCPAddr).Port))
	start := time.Now()
	_, _, err = runCommand(t, runTerminal, "hello?\n", "-registrar", reg, "-wait", "200ms", "mute")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("mute server: err = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("mute server: the timeout took %v", d)
	}
}

func TestRegister(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		addr string
		kind asap.ParamType
		pol  string
		want policy.Policy
	}{
		{"tcp:127.0.0.1:8080", asap.ParamTCPTransport, "rr", policy.Policy{Type: policy.RoundRobin}},
		{"udp:127.0.0.1:5353", asap.ParamUDPTransport, "pri:7", policy.Policy{Type: policy.Priority, Priority: 7}},
		{"127.0.0.1:9000", asap.ParamTCPTransport, "wrand:3", policy.Policy{Type: policy.WeightedRandom, Weight: 3}},
	} {
		t.Run(tt.addr, func(t *testing.T) {
			t.Parallel()
			r, reg := startRegistrar(t)
			cmd := startCommand(t, runRegister, nil, "-registrar", reg, "-policy", tt.pol, "svc", tt.addr)
			var pes []asap.PoolElement
			waitFor(t, "the registration", func() bool {
				if cmd.ended() {
					t.Fatalf("register ended: %v\n%s", cmd.err, cmd.stderr)
				}
				pes = poolElements(r, "svc")
				return len(pes) > 0
			})
			if len(pes) != 1 {
				t.Fatalf("pool has %d elements, want 1", len(pes))
			}
			pe := pes[0]
			_, hostPort, _ := strings.Cut(tt.addr, ":")
			if !strings.Contains(hostPort, ":") {
				hostPort = tt.addr
			}
			host, port, _ := net.SplitHostPort(hostPort)
			tr := pe.UserTransport
			if tr.Kind != tt.kind || strconv.Itoa(int(tr.Port)) != port || len(tr.Addrs) != 1 || tr.Addrs[0].String() != host {
				t.Errorf("registered transport %s, want %s", transportString(tr), tt.addr)
			}
			if pe.Policy.Type != tt.want.Type || pe.Policy.Weight != tt.want.Weight || pe.Policy.Priority != tt.want.Priority {
				t.Errorf("registered policy %+v, want %+v", pe.Policy, tt.want)
			}
			waitFor(t, "the announcement", func() bool { return strings.Contains(cmd.stderr.String(), "interrupt to deregister") })
			if w := fmt.Sprintf("registered %s in pool \"svc\" as PE %08x", tt.addr, uint32(pe.ID)); !strings.Contains(cmd.stderr.String(), w) {
				t.Errorf("standard error lacks %q:\n%s", w, cmd.stderr)
			}

			// The process's shared registrar connection stays open after
			// the command ends: the element leaves because it
			// deregistered.
			if err := cmd.stop(t); err != nil {
				t.Errorf("register ended with %v", err)
			}
			if pes := poolElements(r, "svc"); len(pes) != 0 {
				t.Errorf("pool still has %d elements after the command ended", len(pes))
			}
		})
	}
}

// TestRegisterRefused checks that a registration the registrar refuses is
// an error.
func TestRegisterRefused(t *testing.T) {
	t.Parallel()
	_, reg := startRegistrar(t)
	registerPE(t, reg, "rr-pool", 8005)
	// A pool's policy is set by its first element; another is refused.
	_, _, err := runCommand(t, runRegister, "", "-registrar", reg, "-policy", "rand", "rr-pool", "tcp:127.0.0.1:8006")
	var re *endpoint.RegistrationError
	if !errors.As(err, &re) {
		t.Errorf("err = %v, want a refused registration", err)
	}
	if err == nil || !strings.Contains(err.Error(), "the pool's policy is RR") {
		t.Errorf("err = %v, want it to name the pool's policy", err)
	}
}

// TestTerminalFailsOver: the terminal's session moves to another echo
// server when its own is stopped, and the next line is echoed by the
// other, with no error.
func TestTerminalFailsOver(t *testing.T) {
	t.Parallel()
	r, reg := startRegistrar(t)
	e1, id1, _ := startEcho(t, "-registrar", reg, "-pool", "fo")
	e2, id2, _ := startEcho(t, "-registrar", reg, "-pool", "fo")
	if n := len(poolElements(r, "fo")); n != 2 {
		t.Fatalf("pool has %d elements, want 2", n)
	}
	in, w := io.Pipe()
	defer w.Close()
	term := startCommand(t, runTerminal, in, "-registrar", reg, "fo")
	io.WriteString(w, "one\n")
	waitFor(t, "the first reply", func() bool { return strings.Contains(term.stdout.String(), "> one\n") })
	first, other := id1, id2
	victim := e1
	if !strings.Contains(term.stdout.String(), "from PE "+id1+"> one") {
		first, other, victim = id2, id1, e2
	}
	if err := victim.stop(t); err != nil {
		t.Errorf("echo ended with %v", err)
	}
	io.WriteString(w, "two\n")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(term.stdout.String(), "from PE "+other+"> two\n") {
		if time.Now().After(deadline) {
			var err error
			if term.ended() {
				err = term.err
			}
			t.Fatalf("no reply from the other server %s (terminal ended: %v); terminal output:\n%s\n%s", other, err, term.stdout, term.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if term.ended() {
		t.Fatalf("the terminal ended: %v\n%s", term.err, term.stderr)
	}
	if strings.Contains(term.stdout.String(), "from PE "+first+"> two") {
		t.Error("the stopped server answered")
	}
	if err := term.stop(t); err != nil {
		t.Errorf("terminal ended with %v", err)
	}
}

// TestEchoInterruptMovesSessions: an interrupted echo server shuts down
// gracefully: a session streaming to it carries on on the pool's other
// server, every echo once and in order, with no error.
func TestEchoInterruptMovesSessions(t *testing.T) {
	t.Parallel()
	_, reg := startRegistrar(t)
	e1, id1, _ := startEcho(t, "-registrar", reg, "-pool", "move")
	e2, id2, _ := startEcho(t, "-registrar", reg, "-pool", "move")
	servers := map[string]*running{id1: e1, id2: e2}
	ep := endpoint.New(endpoint.Config{Registrars: []string{reg}, CacheLifetime: -1})
	defer ep.Close()
	d := rsp.Dialer{Endpoint: ep, Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", "pool:move")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := c.(*rsp.Session)
	s.SetDeadline(time.Now().Add(20 * time.Second))
	first := fmt.Sprintf("%08x", uint32(s.Element().ID))
	for i := range 60 {
		if i == 20 {
			if err := servers[first].stop(t); err != nil {
				t.Errorf("echo ended with %v", err)
			}
		}
		msg := fmt.Sprintf("m%02d", i)
		if _, err := s.WriteMsg([]byte(msg), rsp.WriteOptions{AckRequest: true}); err != nil {
			t.Fatalf("write %s: %v", msg, err)
		}
		m, err := s.ReadMsg()
		if err != nil || string(m.Data) != msg {
			t.Fatalf("read %q, %v; want %s", m.Data, err, msg)
		}
	}
	if now := fmt.Sprintf("%08x", uint32(s.Element().ID)); now == first || s.Failovers() != 1 {
		t.Errorf("session on %s after %d failovers, want one away from %s", now, s.Failovers(), first)
	}
}
