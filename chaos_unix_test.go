//go:build unix

package rsp_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/sctp"
	"github.com/rsp-go/rsp/internal/stall"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/registrar"
)

// The test binary runs as a pool element process when RSP_TEST_PE names
// its pool, registrars and delivery log: it serves stateless sessions and
// appends "session-id seq" to the log for every message it receives, with
// one write each, so that a killed process leaves a complete log. It
// listens over the network RSP_TEST_PE_NET names, TCP if unset.
func TestMain(m *testing.M) {
	if spec := os.Getenv("RSP_TEST_PE"); spec != "" {
		runChildPE(spec)
		return
	}
	os.Exit(m.Run())
}

func runChildPE(spec string) {
	pool, rest, _ := strings.Cut(spec, ",")
	reg, logPath, _ := strings.Cut(rest, ",")
	if logPath == "grpc" {
		runChildGRPC(pool, reg)
		return
	}
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	network := os.Getenv("RSP_TEST_PE_NET")
	if network == "" {
		network = "tcp"
	}
	ep := endpoint.New(endpoint.Config{Registrars: []string{reg}, CacheLifetime: -1})
	lc := rsp.ListenConfig{Endpoint: ep, LocalAddr: "127.0.0.1:0",
		Session: rsp.SessionConfig{Stateless: true, HeartbeatInterval: chaosHeartbeat}}
	l, err := lc.Listen(context.Background(), network, "pool:"+pool)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%08x\n", uint32(l.ID()))
	var mu sync.Mutex
	for {
		c, err := l.Accept()
		if err != nil {
			os.Exit(0)
		}
		go func() {
			defer c.Close()
			s, ok := c.(*rsp.Session)
			if !ok {
				return
			}
			id := s.ID()
			prefix := hex.EncodeToString(id[:]) + " "
			for {
				m, err := s.ReadMsg()
				if err != nil {
					return
				}
				mu.Lock()
				log.WriteString(prefix + strconv.FormatUint(m.Seq, 10) + "\n")
				mu.Unlock()
			}
		}()
	}
}

const chaosHeartbeat = 100 * time.Millisecond

// runChildGRPC serves gRPC's health service on a pooled session listener
// (a byte stream whose state cannot move: not stateless, no cookie).
func runChildGRPC(pool, reg string) {
	ep := endpoint.New(endpoint.Config{Registrars: []string{reg}, CacheLifetime: -1})
	lc := rsp.ListenConfig{Endpoint: ep, LocalAddr: "127.0.0.1:0", Session: rsp.SessionConfig{HeartbeatInterval: chaosHeartbeat}}
	l, err := lc.Listen(context.Background(), "tcp", "pool:"+pool)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%08x\n", uint32(l.ID()))
	g := grpc.NewServer()
	healthpb.RegisterHealthServer(g, health.NewServer())
	g.Serve(l)
	os.Exit(0)
}

// childPE is a pool element in a process of its own.
type childPE struct {
	cmd     *exec.Cmd
	log     string
	id      string
	stopped bool
}

func startChildPE(t testing.TB, pool, reg, dir string) *childPE {
	t.Helper()
	return startChildPEOver(t, "tcp", pool, reg, dir)
}

// startChildPEOver starts a pool element process that listens over
// network ("tcp" or "sctp").
func startChildPEOver(t testing.TB, network, pool, reg, dir string) *childPE {
	t.Helper()
	return startChildOver(t, network, pool, reg, filepath.Join(dir, fmt.Sprintf("pe-%d-%d.log", time.Now().UnixNano(), rand.Int())))
}

// startChild starts the test binary as a pool element process; mode is
// the path of its delivery log, or "grpc".
func startChild(t testing.TB, pool, reg, mode string) *childPE {
	t.Helper()
	return startChildOver(t, "tcp", pool, reg, mode)
}

func startChildOver(t testing.TB, network, pool, reg, mode string) *childPE {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	log := mode
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "RSP_TEST_PE="+pool+","+reg+","+log, "RSP_TEST_PE_NET="+network)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &childPE{cmd: cmd, log: log}
	t.Cleanup(func() { c.kill() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("pool element process: %v", err)
	}
	c.id = strings.TrimSpace(line)
	return c
}

func (c *childPE) kill() {
	if c.cmd.ProcessState != nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.cmd.Wait()
}

// stop stops the process (SIGSTOP) and waits until it is stopped: the
// signal is delivered asynchronously.
func (c *childPE) stop() {
	c.cmd.Process.Signal(syscall.SIGSTOP)
	c.stopped = true
	stat := fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid)
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		b, err := os.ReadFile(stat)
		if err != nil {
			time.Sleep(50 * time.Millisecond) // no /proc: give the signal time
			return
		}
		// The state follows the command name in parentheses.
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'T' {
			return
		}
	}
}

// readChildLogs adds the deliveries the child processes logged.
func readChildLogs(t testing.TB, dir string, got *deliveries) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "pe-*.log"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if line == "" {
				continue
			}
			idHex, seqStr, _ := strings.Cut(line, " ")
			var id [16]byte
			hex.Decode(id[:], []byte(idHex))
			seq, err := strconv.ParseUint(seqStr, 10, 64)
			if err != nil {
				t.Fatalf("log %s: %q", f, line)
			}
			got.add(id, seq)
		}
	}
}

func chaosRegistrar(t testing.TB) (*registrar.Registrar, []string) {
	return testRegistrar(t)
}

// TestChaos: 50 sessions stream numbered messages with ack requests to a
// pool of three to five elements, while elements are killed, over and
// over, in every way an element fails: their connections reset, their
// process killed, black-holed (connections open, nothing passes), their
// process stopped; and new ones start. Every session finishes; every
// message is delivered at least once, those acknowledged before a
// failover could replay them exactly once, none more often than the
// bound; no goroutine is left.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos takes seconds")
	}
	// A connect and session handshake to a live element take milliseconds,
	// but at a load average near 20 under the race detector over 300 ms:
	// every attempt of a failover then timed out, live elements too, and
	// sessions gave up. A black-holed element costs a failover the timeout.
	runChaos(t, chaosConfig{network: "tcp", sessions: 50, msgs: 200, dialTimeout: time.Second, failoverTimeout: 15 * time.Second})
}

// TestChaosSCTP is TestChaos over SCTP, shorter (User-mode Linux is
// slow): 10 sessions of 100 messages to element processes listening over
// SCTP, killed (SIGKILL, the kernel aborts their associations) and
// stopped (SIGSTOP, associations open, nothing answers) in turn.
func TestChaosSCTP(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos takes seconds")
	}
	if !sctp.Supported() {
		t.Skip("the kernel has no SCTP; run the SCTP tests inside User-mode Linux with .ci/uml/test-sctp")
	}
	// A stopped element process's kernel still accepts associations, so
	// each one a failover meets costs it the 2 s connect timeout, and
	// every other failure here is a stop: 15 s were once not enough for
	// a failover that met several before a live element.
	runChaos(t, chaosConfig{network: "sctp", sessions: 10, msgs: 100, dialTimeout: 2 * time.Second, failoverTimeout: 40 * time.Second})
}

// chaosConfig parameterises the chaos test.
type chaosConfig struct {
	network        string // the elements' network; over "sctp" all are processes
	sessions, msgs int
	dialTimeout    time.Duration // per element tried; system calls in User-mode Linux are slow
	// failoverTimeout bounds each failover; a session has this and 5 s
	// more to finish.
	failoverTimeout time.Duration
}

func runChaos(t *testing.T, cfg chaosConfig) {
	r, regs := chaosRegistrar(t)
	// In-process elements sit behind TCP proxies (to reset and black-hole
	// them); over SCTP every element is a process.
	inprocKind := func(i int) bool { return cfg.network == "tcp" && i%2 == 0 }
	dir := t.TempDir()
	got := new(deliveries)
	const pool = "chaos"

	// The pool: in-process elements behind proxies, and processes.
	type element struct {
		inproc *sessionPE
		child  *childPE
	}
	var mu sync.Mutex
	var live []element
	start := func(i int) {
		var e element
		if inprocKind(i) {
			e.inproc = startSessionPE(t, regs, pool, peOptions{stateless: true, heartbeat: chaosHeartbeat, got: got, asapProxy: true})
		} else {
			e.child = startChildPEOver(t, cfg.network, pool, regs[0], dir)
		}
		mu.Lock()
		live = append(live, e)
		mu.Unlock()
	}
	for i := range 4 {
		start(i)
	}
	// Setup, not what the test asserts: four race-built processes and
	// in-process elements registering on a loaded machine, where the
	// registrar's 300 ms keep-alive timeout may also drop one for a
	// moment (it registers again at once); 5 s did not always suffice.
	waitFor(t, "the pool", 20*time.Second, func() bool { return poolSize(r, pool) == 4 })

	sessions, msgs := cfg.sessions, uint64(cfg.msgs)
	type result struct {
		id  [16]byte
		fos []rsp.FailoverEvent
		err error
	}
	results := make(chan result, sessions)
	ep := newEndpoint(t, regs)
	for range sessions {
		go func() {
			fch := make(chan rsp.FailoverEvent, 100)
			d := &rsp.Dialer{Endpoint: ep, Timeout: cfg.dialTimeout, Session: rsp.SessionConfig{
				HeartbeatInterval: chaosHeartbeat, Failovers: fch, FailoverTimeout: cfg.failoverTimeout,
				// Elements die every 250 ms and the dead stay listed until
				// the registrar's keep-alive timeout: a failover may meet
				// many dead ones before a live one, within its timeout.
				MaxFailoverAttempts: 64}}
			ctx, cancel := context.WithTimeout(context.Background(), cfg.failoverTimeout+5*time.Second)
			defer cancel()
			// A dial tries the elements of one handle resolution, which
			// under the chaos may all be dying or slow to answer on a
			// loaded machine ("peer timed out" at 100 ms heartbeats): a
			// pool user dials again, as here, within the session's time.
			// What the test asserts starts once the session is open.
			c, err := d.DialContext(ctx, "tcp", "pool:"+pool)
			for err != nil && ctx.Err() == nil {
				time.Sleep(50 * time.Millisecond)
				c, err = d.DialContext(ctx, "tcp", "pool:"+pool)
			}
			if err != nil {
				results <- result{err: err}
				return
			}
			s := c.(*rsp.Session)
			defer s.Close()
			for i := uint64(1); i <= msgs; i++ {
				if _, err := s.WriteMsg([]byte(strconv.FormatUint(i, 10)), rsp.WriteOptions{AckRequest: true}); err != nil {
					results <- result{id: s.ID(), err: fmt.Errorf("message %d: %w", i, err)}
					return
				}
				time.Sleep(time.Duration(5+rand.IntN(20)) * time.Millisecond)
			}
			err = s.WaitAcked(ctx, msgs)
			results <- result{id: s.ID(), fos: testutil.Drain(fch), err: err}
		}()
	}

	// The chaos: every 250 ms an element fails, in turn by reset, process
	// kill, black hole and process stop, and a new one of its kind starts.
	stopChaos := make(chan struct{})
	chaosDone := make(chan map[string]int)
	go func() {
		kinds := map[string]int{}
		for i := 0; ; i++ {
			select {
			case <-stopChaos:
				chaosDone <- kinds
				return
			case <-time.After(250 * time.Millisecond):
			}
			inproc := inprocKind(i)
			mu.Lock()
			var e element
			for j, c := range live {
				if (c.inproc != nil) == inproc {
					e = c
					live = append(live[:j], live[j+1:]...)
					break
				}
			}
			mu.Unlock()
			switch {
			case e.inproc != nil && i%4 == 2:
				// The whole element: its sessions, and its keep-alives,
				// so that its registrar removes it, as it would a host
				// that the network no longer reaches. Black-holed
				// elements that answered keep-alives stayed in the pool
				// for good and piled up in every resolution, each
				// costing a failover a connect timeout.
				kinds["black hole"]++
				e.inproc.proxy.BlackHole()
				e.inproc.asap.BlackHole()
			case e.inproc != nil:
				kinds["reset"]++
				e.inproc.crash()
			case e.child != nil && (i%4 == 3 || cfg.network != "tcp" && i%2 == 1):
				kinds["process stopped"]++
				e.child.stop()
			case e.child != nil:
				kinds["process killed"]++
				e.child.kill()
			}
			if inproc {
				start(0)
			} else {
				start(1)
			}
		}
	}()
	var all []result
	for range sessions {
		all = append(all, <-results)
	}
	close(stopChaos)
	kinds := <-chaosDone
	t.Logf("failures: %v", kinds)

	readChildLogs(t, dir, got)
	failovers := 0
	for _, res := range all {
		if res.err != nil {
			t.Errorf("session %x: %v", res.id[:4], res.err)
			continue
		}
		failovers += len(res.fos)
		checkDeliveries(t, got.of(res.id), msgs, res.fos)
	}
	t.Logf("%d sessions, %d failovers", len(all), failovers)
	if failovers == 0 {
		t.Error("no session failed over: the chaos did not reach them")
	}

	// Nothing of the sessions is left running once everything is closed.
	mu.Lock()
	for _, e := range live {
		if e.inproc != nil {
			e.inproc.crash()
		} else {
			e.child.kill()
		}
	}
	mu.Unlock()
	ep.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(sessionGoroutines()) > 0 {
		if time.Now().After(deadline) {
			gs := sessionGoroutines()
			t.Fatalf("%d goroutines of sessions still run 5 s after everything closed, such as:\n%s", len(gs), strings.Join(gs[:min(len(gs), 5)], "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sessionGoroutines returns the stacks of the goroutines running code of
// sessions.
func sessionGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var gs []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "rsp.(*Session)") {
			gs = append(gs, g)
		}
	}
	return gs
}

// TestSessionStoppedElement: an element process that is stopped (SIGSTOP:
// its connections stay open, nothing answers) is noticed within three
// heartbeats and the session fails over.
func TestSessionStoppedElement(t *testing.T) {
	r, regs := testRegistrar(t)
	dir := t.TempDir()
	a := startChildPE(t, "stopped", regs[0], dir)
	waitFor(t, "the first element", 5*time.Second, func() bool { return poolSize(r, "stopped") == 1 })
	fch := make(chan rsp.FailoverEvent, 1)
	s := dialSession(t, regs, "stopped", rsp.SessionConfig{HeartbeatInterval: e2eHeartbeat, Failovers: fch})
	if _, err := s.WriteMsg([]byte("1"), rsp.WriteOptions{AckRequest: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the acknowledgement", 2*time.Second, func() bool { return s.Acked() == 1 })
	startChildPE(t, "stopped", regs[0], dir)
	waitFor(t, "the second element", 5*time.Second, func() bool { return poolSize(r, "stopped") == 2 })
	stalls := stall.Measure(t)
	start := time.Now()
	a.stop()
	select {
	case f := <-fch:
		detect := time.Since(start) - f.Took
		stalls.Stop()
		stalled, longest := stalls.Total()
		if fmt.Sprintf("%08x", uint32(f.Old.ID)) != a.id {
			t.Errorf("failed over from %08x, want the stopped %s", uint32(f.Old.ID), a.id)
		}
		// As in TestSessionSilentElement: half a heartbeat of margin plus
		// the time this process was measured not to run.
		if detect > 3*e2eHeartbeat+e2eHeartbeat/2+stalled {
			t.Errorf("stopped element noticed after %v, want within three heartbeats (%v; the process stalled for %v, at most %v at once)", detect, 3*e2eHeartbeat, stalled, longest)
		}
		t.Logf("noticed after %v, failed over in %v; the process stalled for %v, at most %v at once", detect, f.Took, stalled, longest)
	case <-time.After(5 * time.Second):
		t.Fatal("no failover from a stopped element")
	}
	if _, err := s.WriteMsg([]byte("2"), rsp.WriteOptions{AckRequest: true}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.WaitAcked(ctx, 2); err != nil {
		t.Fatal(err)
	}
}
