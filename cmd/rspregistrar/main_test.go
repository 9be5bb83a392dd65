package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/policy"
)

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, what, cond)
}

var servingLine = regexp.MustCompile(`level=INFO msg="serving ASAP" network=(\S+) address=(\S+) id=([0-9a-f]{8})\n`)

// waitServing waits for n "serving ASAP" log lines and returns their
// addresses and the registrar identifier they name.
func waitServing(t *testing.T, log *testutil.Buffer, n int, ended func() bool) ([]string, string) {
	t.Helper()
	var ms [][]string
	waitFor(t, "the registrar to serve", func() bool {
		if ended() {
			t.Fatalf("the registrar ended:\n%s", log)
		}
		ms = servingLine.FindAllStringSubmatch(log.String(), -1)
		return len(ms) >= n
	})
	var addrs []string
	for _, m := range ms {
		if m[1] != "tcp" {
			t.Errorf("serving on network %q, want tcp", m[1])
		}
		if m[3] != ms[0][3] {
			t.Errorf("listeners name registrars %s and %s, want one", ms[0][3], m[3])
		}
		addrs = append(addrs, "tcp:"+m[2])
	}
	return addrs, ms[0][3]
}

// checkServes registers a pool element through the registrar at regA and
// resolves it through the one at regB.
func checkServes(t *testing.T, regA, regB, wantHome string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pe := endpoint.New(endpoint.Config{Registrars: []string{regA}})
	defer pe.Close()
	transport := asap.Transport{Kind: asap.ParamTCPTransport, Port: 4242, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}
	reg, err := pe.Register(ctx, "svc", asap.PoolElement{UserTransport: transport, Policy: policy.Policy{Type: policy.RoundRobin}})
	if err != nil {
		t.Fatalf("registering: %v", err)
	}

	pu := endpoint.New(endpoint.Config{Registrars: []string{regB}, CacheLifetime: -1})
	defer pu.Close()
	res, err := pu.Resolve(ctx, "svc")
	if err != nil {
		t.Fatalf("resolving: %v", err)
	}
	if len(res.PEs) != 1 || res.PEs[0].ID != reg.ID() {
		t.Fatalf("resolved %+v, want the one PE %08x", res.PEs, uint32(reg.ID()))
	}
	got := res.PEs[0]
	if got.UserTransport.Kind != transport.Kind || got.UserTransport.Port != transport.Port || len(got.UserTransport.Addrs) != 1 || got.UserTransport.Addrs[0] != transport.Addrs[0] {
		t.Errorf("resolved transport %+v, want %+v", got.UserTransport, transport)
	}
	if home, err := strconv.ParseUint(wantHome, 16, 32); err != nil || got.Home != asap.ServerID(home) {
		t.Errorf("home registrar %08x, want %s", uint32(got.Home), wantHome)
	}

	// rsp's resolver sees it too, and not after deregistration.
	rv := rsp.Resolver{Endpoint: pu}
	if s, err := rv.Primary(ctx, "svc"); err != nil || s.ID != reg.ID() || s.Addr() != "127.0.0.1:4242" {
		t.Errorf("Primary = %+v, %v; want PE %08x at 127.0.0.1:4242", s, err, uint32(reg.ID()))
	}
	if err := reg.Close(ctx); err != nil {
		t.Fatalf("deregistering: %v", err)
	}
	if _, err := pu.Resolve(ctx, "svc"); !errors.Is(err, endpoint.ErrUnknownPool) {
		t.Errorf("resolving after deregistration: err = %v, want %v", err, endpoint.ErrUnknownPool)
	}
}

// runInProcess runs the registrar with args until the test stops it.
func runInProcess(t *testing.T, args ...string) (stop func() error, log *testutil.Buffer, ended func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log = new(testutil.Buffer)
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, log) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Errorf("the registrar did not end within 5 s of its context's end")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	ended = func() bool {
		select {
		case err = <-done:
			done <- err
			return true
		default:
			return false
		}
	}
	return stop, log, ended
}

func TestServe(t *testing.T) {
	t.Parallel()
	stop, log, ended := runInProcess(t, "-listen", "tcp:127.0.0.1:0,tcp:127.0.0.1:0", "-id", "0x1234abcd", "-keepalive-interval", "200ms")
	addrs, id := waitServing(t, log, 2, ended)
	if id != "1234abcd" {
		t.Errorf("registrar id %s, want the -id 1234abcd", id)
	}
	if addrs[0] == addrs[1] {
		t.Fatalf("both listeners on %s", addrs[0])
	}
	checkServes(t, addrs[0], addrs[1], id)

	if err := stop(); err != nil {
		t.Fatalf("run ended with %v", err)
	}
	if !strings.Contains(log.String(), `msg="shutting down"`) {
		t.Errorf("no shutting down line in the log:\n%s", log)
	}
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", strings.TrimPrefix(a, "tcp:"), time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after shutdown", a)
		}
	}
}

// TestLogLevel checks that -log-level sets what the registrar logs.
func TestLogLevel(t *testing.T) {
	t.Parallel()
	_, log, ended := runInProcess(t, "-listen", "tcp:127.0.0.1:0", "-log-level", "debug")
	waitServing(t, log, 1, ended)
	_, quiet, ended := runInProcess(t, "-listen", "tcp:127.0.0.1:0", "-log-level", "error")
	time.Sleep(100 * time.Millisecond)
	if ended() {
		t.Fatalf("the registrar ended:\n%s", quiet)
	}
	if s := quiet.String(); s != "" {
		t.Errorf("-log-level error logged:\n%s", s)
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &out); err != nil {
		t.Fatalf("-h: %v", err)
	}
	help := out.String()
	if !strings.HasPrefix(help, "usage: rspregistrar [flags]\n") {
		t.Errorf("-h does not start with the usage line:\n%s", help)
	}
	for _, f := range []string{
		"-id", "-listen", "-keepalive-interval", "-keepalive-timeout", "-max-bad-pe-reports",
		"-resolution-items", "-max-resolution-items", "-max-message-size", "-max-pools",
		"-max-pes-per-pool", "-max-hr-rate", "-max-eu-rate", "-log-level",
		"-announce", "-announce-interface", "-announce-interval",
		"-enrp-announce", "-static-peers", "-mentor-wait",
	} {
		if !regexp.MustCompile(`(?m)^  ` + f + `( |$)`).MatchString(help) {
			t.Errorf("-h does not document %s:\n%s", f, help)
		}
	}
	if !strings.Contains(help, "tcp::3863") {
		t.Errorf("-h does not give the default listening address:\n%s", help)
	}
}

func TestArgumentErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"-keepalive-interval", "often"}, `invalid value "often" for flag -keepalive-interval`},
		{[]string{"-id", "-1"}, `invalid value "-1" for flag -id`},
		{[]string{"-id", "4294967296"}, "-id 4294967296: want at most 4294967295"},
		{[]string{"extra"}, `unexpected arguments ["extra"]`},
		{[]string{"-log-level", "loud"}, `-log-level: `},
		{[]string{"-listen", "127.0.0.1"}, `-listen "127.0.0.1": want network:address`},
		{[]string{"-listen", "tcp:127.0.0.1:0,nowhere"}, `-listen "nowhere": want network:address`},
		{[]string{"-listen", "udp:127.0.0.1:0"}, `unsupported network: "udp"`},
		{[]string{"-listen", "tcp:127.0.0.1:99999"}, "invalid port"},
		{[]string{"-peer", "tcp:127.0.0.1:9901,nowhere"}, `-peer/-enrp-listen "nowhere": want network:address`},
		{[]string{"-enrp-listen", "127.0.0.1"}, `-peer/-enrp-listen "127.0.0.1": want network:address`},
		{[]string{"-listen", "tcp:127.0.0.1:0", "-enrp-announce", "127.0.0.1:9901"}, `-enrp-announce "127.0.0.1:9901": want a multicast group as address:port`},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := run(ctx, tt.args, &out)
			if err == nil {
				t.Fatalf("no error; log:\n%s", &out)
			}
			// A bad flag is a usage error (exit status 2), printed once,
			// by the flag package, with the usage.
			if errors.Is(err, errUsage) {
				if n := strings.Count(out.String(), tt.want); n != 1 {
					t.Errorf("output says %q %d times, want once:\n%s", tt.want, n, &out)
				}
			} else if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to say %q", err, tt.want)
			}
			if strings.Contains(out.String(), "serving ASAP") {
				t.Errorf("served ASAP before failing:\n%s", &out)
			}
		})
	}

	// An address already in use.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-listen", "tcp:" + l.Addr().String()}, &out); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("listening on a used address: err = %v, want address already in use", err)
	}
}

// TestProcess runs the built registrar: its exit codes, and a clean
// shutdown on SIGTERM and SIGINT.
func TestProcess(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the binary:", err)
	}
	bin := filepath.Join(t.TempDir(), "rspregistrar")
	bctx, bcancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer bcancel()
	if out, err := exec.CommandContext(bctx, gobin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	start := func(t *testing.T, args ...string) (*exec.Cmd, *testutil.Buffer, chan error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, bin, args...)
		log := new(testutil.Buffer)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			defer cancel()
			done <- cmd.Wait()
		}()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-done
			done <- nil
		})
		return cmd, log, done
	}
	exitCode := func(t *testing.T, cmd *exec.Cmd, log *testutil.Buffer, done chan error) int {
		t.Helper()
		select {
		case err := <-done:
			done <- err
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				t.Fatal(err)
			}
			return cmd.ProcessState.ExitCode()
		case <-time.After(10 * time.Second):
			t.Fatalf("the registrar did not end within 10 s:\n%s", log)
			return -1
		}
	}

	t.Run("help", func(t *testing.T) {
		cmd, log, done := start(t, "-h")
		if code := exitCode(t, cmd, log, done); code != 0 {
			t.Errorf("-h: exit %d, want 0", code)
		}
		if !strings.Contains(log.String(), "usage: rspregistrar") || !strings.Contains(log.String(), "  -listen ") {
			t.Errorf("-h printed no usage:\n%s", log)
		}
	})
	t.Run("bad flag", func(t *testing.T) {
		cmd, log, done := start(t, "-listen", "tcp:127.0.0.1:0", "-bogus")
		if code := exitCode(t, cmd, log, done); code != 2 {
			t.Errorf("-bogus: exit %d, want 2 (a usage error)", code)
		}
		if n := strings.Count(log.String(), "flag provided but not defined: -bogus"); n != 1 {
			t.Errorf("-bogus: the error printed %d times, want once:\n%s", n, log)
		}
	})
	t.Run("bad listen", func(t *testing.T) {
		cmd, log, done := start(t, "-listen", "3863")
		if code := exitCode(t, cmd, log, done); code != 1 {
			t.Errorf("-listen 3863: exit %d, want 1", code)
		}
		if !strings.Contains(log.String(), `rspregistrar: -listen "3863": want network:address`) {
			t.Errorf("-listen 3863: no clear error:\n%s", log)
		}
	})
	for _, sig := range []os.Signal{syscall.SIGTERM, os.Interrupt} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			cmd, log, done := start(t, "-listen", "tcp:127.0.0.1:0")
			addrs, id := waitServing(t, log, 1, func() bool { return len(done) > 0 })
			checkServes(t, addrs[0], addrs[0], id)
			sent := time.Now()
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if code := exitCode(t, cmd, log, done); code != 0 {
				t.Errorf("exit %d after %v, want 0:\n%s", code, sig, log)
			}
			if d := time.Since(sent); d > 5*time.Second {
				t.Errorf("shutting down took %v", d)
			}
			if !strings.Contains(log.String(), `level=INFO msg="shutting down"`) {
				t.Errorf("no shutting down line in the log:\n%s", log)
			}
		})
	}
}

// TestDebugListen checks that -debug-listen serves the runtime's profiles,
// and only until the registrar ends.
func TestDebugListen(t *testing.T) {
	t.Parallel()
	stop, log, ended := runInProcess(t, "-listen", "tcp:127.0.0.1:0", "-debug-listen", "127.0.0.1:0")
	waitServing(t, log, 1, ended)
	m := regexp.MustCompile(`msg="serving profiles" url=(\S+)`).FindStringSubmatch(log.String())
	if m == nil {
		t.Fatalf("no serving profiles line in the log:\n%s", log)
	}
	resp, err := http.Get(m[1] + "heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "heap profile") {
		t.Fatalf("GET heap profile: %s\n%.200s", resp.Status, body)
	}
	if err := stop(); err != nil {
		t.Fatalf("run ended with %v", err)
	}
	if resp, err := http.Get(m[1]); err == nil {
		resp.Body.Close()
		t.Errorf("profiles still served after shutdown: %s", resp.Status)
	}
}
