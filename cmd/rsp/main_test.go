package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/registrar"
)

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, what, cond)
}

// startRegistrar runs an embedded registrar on a loopback port and returns
// it with the -registrar flag that names it.
func startRegistrar(t *testing.T) (*registrar.Registrar, string) {
	t.Helper()
	return testutil.StartRegistrar(t, registrar.Config{})
}

// poolElements returns the elements of pool h that r holds.
func poolElements(r *registrar.Registrar, h string) []asap.PoolElement {
	p, ok := r.Pool(asap.PoolHandle(h))
	if !ok {
		return nil
	}
	return p.Elements
}

// runCommand runs a command to its end with stdin in and returns its
// standard output, its standard error and its error.
func runCommand(t *testing.T, run func(context.Context, stdio, []string) error, in string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, stdio{strings.NewReader(in), &out, &errOut}, args)
	if ctx.Err() != nil {
		t.Fatalf("%v did not end in time", args)
	}
	return out.String(), errOut.String(), err
}

// running is a command running in the background until the test cancels
// its context.
type running struct {
	cancel         context.CancelFunc
	done           chan struct{}
	err            error
	stdout, stderr *testutil.Buffer
}

func startCommand(t *testing.T, run func(context.Context, stdio, []string) error, in io.Reader, args ...string) *running {
	t.Helper()
	if in == nil {
		in = strings.NewReader("")
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan struct{}), stdout: new(testutil.Buffer), stderr: new(testutil.Buffer)}
	go func() {
		defer close(r.done)
		r.err = run(ctx, stdio{in, r.stdout, r.stderr}, args)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%v did not end after its context was cancelled", args)
		}
	})
	return r
}

// stop cancels the command's context and returns its error, failing the
// test if it does not end within 5 s.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	return r.wait(t, 5*time.Second)
}

// wait returns the command's error once it ends, failing the test after d.
func (r *running) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(d):
		t.Fatalf("command did not end within %v; stderr:\n%s", d, r.stderr)
		return nil
	}
}

// ended reports whether the command has ended.
func (r *running) ended() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// TestCommandHelp checks that each command's -h prints its usage line and
// documents its flags, and that main treats it as success.
func TestCommandHelp(t *testing.T) {
	flags := map[string][]string{
		"resolve":  {"-registrar", "-n"},
		"echo":     {"-registrar", "-pool", "-listen", "-policy", "-transport"},
		"terminal": {"-registrar", "-wait"},
		"register": {"-registrar", "-policy"},
		"demo":     {"-duration", "-every"},
		"dump":     {},
	}
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, err := runCommand(t, c.run, "", "-h")
			if !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("-h: err = %v, want flag.ErrHelp", err)
			}
			if out != "" {
				t.Errorf("-h wrote to standard output: %q", out)
			}
			if want := "usage: rsp " + c.name + " " + c.args; !strings.Contains(errOut, want) {
				t.Errorf("-h output lacks %q:\n%s", want, errOut)
			}
			want, ok := flags[c.name]
			if !ok {
				t.Fatalf("command %q has no expected flags in this test", c.name)
			}
			for _, f := range want {
				if !strings.Contains(errOut, "  "+f+" ") && !strings.Contains(errOut, "  "+f+"\n") {
					t.Errorf("-h output does not document %s:\n%s", f, errOut)
				}
			}
			// demo embeds its registrar; dump names its registrar's
			// ENRP address.
			if c.name != "demo" && c.name != "dump" && !strings.Contains(errOut, "RSP_REGISTRARS") {
				t.Errorf("-h output does not say where registrars come from:\n%s", errOut)
			}
		})
	}
}

// TestArgumentErrors checks that wrong arguments and flags give an error
// that names the problem, before anything touches the network.
func TestArgumentErrors(t *testing.T) {
	nowhere := "tcp:" + testutil.FreeAddr(t)
	tests := []struct {
		name  string
		run   func(context.Context, stdio, []string) error
		args  []string
		usage bool   // a usage error: the usage is printed
		want  string // in the error or on standard error
	}{
		{"resolve without pool", runResolve, nil, true, "missing POOL"},
		{"resolve with two pools", runResolve, []string{"a", "b"}, true, `unexpected arguments ["b"]`},
		{"resolve unknown flag", runResolve, []string{"-x", "a"}, true, "flag provided but not defined: -x"},
		{"resolve bad -n", runResolve, []string{"-n", "many", "a"}, true, `invalid value "many" for flag -n`},
		{"echo with argument", runEcho, []string{"-registrar", nowhere, "extra"}, true, `unexpected arguments ["extra"]`},
		{"echo bad policy", runEcho, []string{"-registrar", nowhere, "-policy", "best"}, true, `invalid value "best" for flag -policy: unknown policy "best"`},
		{"echo policy without value", runEcho, []string{"-registrar", nowhere, "-policy", "wrr"}, true, `for flag -policy: policy "wrr" needs a value`},
		{"echo policy bad weight", runEcho, []string{"-registrar", nowhere, "-policy", "wrr:heavy"}, true, `invalid value "wrr:heavy" for flag -policy: policy "wrr:heavy": "heavy" is not a whole number`},
		{"echo unknown transport", runEcho, []string{"-registrar", nowhere, "-transport", "udp"}, true, `invalid value "udp" for flag -transport: unknown transport "udp": want tcp or sctp`},
		{"terminal without pool", runTerminal, nil, true, "missing POOL"},
		{"terminal bad -wait", runTerminal, []string{"-wait", "soon", "p"}, true, `invalid value "soon" for flag -wait`},
		{"register without address", runRegister, []string{"p"}, true, "missing PROTO:HOST:PORT"},
		{"register without arguments", runRegister, nil, true, "missing POOL PROTO:HOST:PORT"},
		{"register with three arguments", runRegister, []string{"p", "tcp:127.0.0.1:1", "x"}, true, `unexpected arguments ["x"]`},
		{"register bad address", runRegister, []string{"-registrar", nowhere, "p", "tcp:nohost"}, false, `transport address "tcp:nohost"`},
		{"register bad policy", runRegister, []string{"-registrar", nowhere, "-policy", "lud:2", "p", "tcp:127.0.0.1:1"}, true, `for flag -policy: policy "lud:2": want a fraction between 0 and 1`},
		{"demo with argument", runDemo, []string{"now"}, true, `unexpected arguments ["now"]`},
		{"demo zero -every", runDemo, []string{"-every", "0"}, true, "must be positive"},
		{"demo negative -duration", runDemo, []string{"-duration", "-1s"}, true, "must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := runCommand(t, tt.run, "", tt.args...)
			if err == nil {
				t.Fatalf("no error; stdout:\n%s", out)
			}
			if got := errors.Is(err, errUsage); got != tt.usage {
				t.Errorf("usage error = %v, want %v (err %v)", got, tt.usage, err)
			}
			if !strings.Contains(err.Error()+"\n"+errOut, tt.want) {
				t.Errorf("neither the error %q nor standard error says %q:\n%s", err, tt.want, errOut)
			}
			// Printed once: a usage error's message is on standard error
			// only, and there once.
			if tt.usage && strings.Count(errOut, tt.want) != 1 {
				t.Errorf("standard error says %q %d times, want once:\n%s", tt.want, strings.Count(errOut, tt.want), errOut)
			}
			if tt.usage && !strings.Contains(errOut, "usage: rsp ") {
				t.Errorf("no usage printed:\n%s", errOut)
			}
		})
	}
}

// buildCommand builds the command of the current directory into dir.
func buildCommand(t *testing.T, dir, name string) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the binary:", err)
	}
	bin := filepath.Join(dir, name)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, gobin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// process is the built command running as a process.
type process struct {
	cmd            *exec.Cmd
	done           chan struct{}
	err            error
	stdout, stderr *testutil.Buffer
}

func startProcess(t *testing.T, bin string, stdin io.Reader, args ...string) *process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	p := &process{cmd: exec.CommandContext(ctx, bin, args...), done: make(chan struct{}), stdout: new(testutil.Buffer), stderr: new(testutil.Buffer)}
	p.cmd.Stdin = stdin
	p.cmd.WaitDelay = time.Second
	p.cmd.Stdout = p.stdout
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		defer cancel()
		p.err = p.cmd.Wait()
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// signal sends sig and returns the exit code, failing the test if the
// process does not end within 5 s.
func (p *process) signal(t *testing.T, sig os.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return p.exitCode(t, 5*time.Second)
}

func (p *process) exitCode(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("process did not end within %v; stderr:\n%s", d, p.stderr)
	}
	var ee *exec.ExitError
	if p.err != nil && !errors.As(p.err, &ee) {
		t.Fatal(p.err)
	}
	return p.cmd.ProcessState.ExitCode()
}

// TestProcess runs the built command: its exit codes, and its commands'
// answer to SIGTERM and SIGINT.
func TestProcess(t *testing.T) {
	bin := buildCommand(t, t.TempDir(), "rsp")
	run := func(t *testing.T, args ...string) (int, string, string) {
		t.Helper()
		p := startProcess(t, bin, nil, args...)
		code := p.exitCode(t, 20*time.Second)
		return code, p.stdout.String(), p.stderr.String()
	}

	t.Run("usage", func(t *testing.T) {
		code, _, errOut := run(t)
		if code != 2 {
			t.Errorf("rsp without command: exit %d, want 2", code)
		}
		for _, c := range commands {
			if !strings.Contains(errOut, "  "+c.name+" ") {
				t.Errorf("usage does not list %s:\n%s", c.name, errOut)
			}
		}
		for _, h := range []string{"-h", "--help", "help"} {
			if code, _, errOut := run(t, h); code != 0 || !strings.Contains(errOut, "usage: rsp COMMAND") {
				t.Errorf("rsp %s: exit %d, want 0 and the usage:\n%s", h, code, errOut)
			}
		}
		if code, _, errOut := run(t, "frobnicate"); code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
			t.Errorf("rsp frobnicate: exit %d, want 2 and an unknown command error:\n%s", code, errOut)
		}
		if code, _, errOut := run(t, "resolve", "-h"); code != 0 || !strings.Contains(errOut, "usage: rsp resolve") {
			t.Errorf("rsp resolve -h: exit %d, want 0 and the usage:\n%s", code, errOut)
		}
		if code, _, errOut := run(t, "resolve"); code != 2 || !strings.Contains(errOut, "rsp resolve: missing POOL") {
			t.Errorf("rsp resolve: exit %d, want 2 and a missing POOL error:\n%s", code, errOut)
		}
		if code, _, errOut := run(t, "resolve", "-registrar", "tcp:"+testutil.FreeAddr(t), "p"); code != 1 || !strings.Contains(errOut, "rsp resolve: ") || !strings.Contains(errOut, "no registrar reachable") {
			t.Errorf("rsp resolve without registrar: exit %d, want 1 and a no registrar error:\n%s", code, errOut)
		}
	})

	t.Run("register SIGTERM", func(t *testing.T) {
		t.Parallel()
		r, reg := startRegistrar(t)
		p := startProcess(t, bin, nil, "register", "-registrar", reg, "svc", "tcp:127.0.0.1:7")
		waitFor(t, "the registration", func() bool { return strings.Contains(p.stderr.String(), "interrupt to deregister") })
		if n := len(poolElements(r, "svc")); n != 1 {
			t.Fatalf("pool has %d elements, want 1", n)
		}
		if code := p.signal(t, syscall.SIGTERM); code != 0 {
			t.Errorf("exit %d after SIGTERM, want 0; stderr:\n%s", code, p.stderr)
		}
		waitFor(t, "the deregistration", func() bool { return len(poolElements(r, "svc")) == 0 })
	})

	t.Run("echo SIGTERM with a client", func(t *testing.T) {
		t.Parallel()
		_, reg := startRegistrar(t)
		p := startProcess(t, bin, nil, "echo", "-registrar", reg, "-listen", "127.0.0.1:0", "-pool", "e")
		waitFor(t, "the echo server", func() bool { return strings.Contains(p.stderr.String(), "echo server") })
		// A terminal stays connected while the server is told to stop.
		stdin, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		term := startProcess(t, bin, stdin, "terminal", "-registrar", reg, "e")
		stdin.Close()
		waitFor(t, "the terminal", func() bool { return strings.Contains(term.stderr.String(), "connected to PE") })
		if code := p.signal(t, syscall.SIGTERM); code != 0 {
			t.Errorf("echo: exit %d after SIGTERM, want 0; stderr:\n%s", code, p.stderr)
		}
		// The terminal ends on SIGINT although its standard input stays
		// open.
		if code := term.signal(t, os.Interrupt); code != 0 {
			t.Errorf("terminal: exit %d after SIGINT, want 0; stderr:\n%s", code, term.stderr)
		}
	})
}
