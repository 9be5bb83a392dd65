// Package rsplibtest starts rsplib's programs (the reference RSerPool
// implementation) for tests that run where the kernel has SCTP and rsplib
// is installed: inside User-mode Linux (see .ci/uml).
package rsplibtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/internal/sctp"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/mapping"
)

// Output is a program's output, written while the program runs and read
// by the test at any time.
type Output = testutil.Buffer

// HostAddr is the test host's own site-local address inside User-mode
// Linux; rsplib refuses hosts with loopback addresses only.
const HostAddr = "172.31.255.1"

// Available reports whether kernel SCTP, rsplib's programs and the test
// host address are there, and if not, why.
func Available() (bool, string) {
	if !sctp.Supported() {
		return false, "the kernel has no SCTP; run with .ci/uml/test-sctp"
	}
	for _, p := range []string{"rspregistrar", "rspserver", "rspterminal", "hsdump"} {
		if _, err := exec.LookPath(p); err != nil {
			return false, fmt.Sprintf("rsplib's %s is not installed (.ci/uml/setup installs it)", p)
		}
	}
	if ifs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range ifs {
			if strings.HasPrefix(a.String(), HostAddr+"/") {
				return true, ""
			}
		}
	}
	return false, fmt.Sprintf("no interface with the test host address %s (.ci/uml/run creates it)", HostAddr)
}

// Require skips the test unless Available.
func Require(t testing.TB) {
	t.Helper()
	if ok, why := Available(); !ok {
		t.Skip(why)
	}
}

// Start runs an rsplib program until the test ends, and returns its
// combined output.
func Start(t testing.TB, stdin io.Reader, name string, args ...string) *Output {
	t.Helper()
	return StartProcess(t, stdin, name, args...).Out
}

// Process is a program started for a test.
type Process struct {
	Pid int
	Out *Output
	// Exited is closed when the program has ended; Err then holds what
	// its Wait returned.
	Exited <-chan struct{}
	Err    error
}

// StartProcess is Start, returning the running program.
func StartProcess(t testing.TB, stdin io.Reader, name string, args ...string) *Process {
	t.Helper()
	return startCmd(t, stdin, nil, name, args...)
}

// startCmd is StartProcess, with setup (if not nil) applied to the
// command before it starts.
func startCmd(t testing.TB, stdin io.Reader, setup func(*exec.Cmd), name string, args ...string) *Process {
	t.Helper()
	out := new(Output)
	cmd := exec.Command(name, args...)
	if setup != nil {
		setup(cmd)
	}
	cmd.Stdin = stdin
	cmd.Stdout = out
	cmd.Stderr = out
	ownGroup(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	p := &Process{Pid: cmd.Process.Pid, Out: out, Exited: exited}
	go func() {
		p.Err = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		killGroup(p.Pid)
		<-exited
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	return p
}

// StartRegistrar starts rsplib's registrar on the test host and waits until
// it serves (it spends about 5 s looking for peers first). Its announces are
// off unless extra sets -asapannounce. It returns the registrar's process
// identifier.
func StartRegistrar(t testing.TB, asapPort, enrpPort int, extra ...string) int {
	t.Helper()
	log := filepath.Join(t.TempDir(), "registrar.log")
	args := []string{
		fmt.Sprintf("-asap=%s:%d", HostAddr, asapPort), fmt.Sprintf("-enrp=%s:%d", HostAddr, enrpPort),
		"-enrpannounce=off", "-logcolor=off", "-loglevel=3", "-logfile=" + log,
	}
	if !slices.ContainsFunc(extra, func(a string) bool { return strings.HasPrefix(a, "-asapannounce=") }) {
		args = append(args, "-asapannounce=off")
	}
	args = append(args, extra...)
	p := StartProcess(t, nil, "rspregistrar", args...)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(log)
			lines := strings.Split(string(b), "\n")
			t.Logf("rsplib's registrar log, last lines:\n%s", strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(log); bytes.Contains(b, []byte("The registrar is ready")) {
			// Its log says ready a moment before it keeps the
			// associations it takes; wait until it answers.
			if err := awaitAnswer(fmt.Sprintf("%s:%d", HostAddr, asapPort), time.Until(deadline)); err != nil {
				t.Fatalf("rsplib's registrar does not answer: %v", err)
			}
			return p.Pid
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := os.ReadFile(log)
	t.Fatalf("rsplib's registrar did not get ready; its log:\n%s", b)
	return 0
}

// awaitAnswer asks the registrar at addr to resolve a pool until it
// answers, for at most d.
func awaitAnswer(addr string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	req, err := (&asap.HandleResolution{Handle: "rsplibtest-probe"}).AppendBinary(nil)
	if err != nil {
		return err
	}
	buf := make([]byte, 65536)
	for {
		var dialer mapping.Dialer
		c, err := dialer.DialContext(ctx, "sctp", addr)
		if err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			if err = c.WriteMsg(req, mapping.PPIDASAP); err == nil {
				_, _, err = c.ReadMsg(buf)
			}
			c.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}
