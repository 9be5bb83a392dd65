//go:build linux

package interop

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/rsplibtest"
	"github.com/rsp-go/rsp/registrar"
)

// EnvRSPBinary names the environment variable that points these tests at a
// built cmd/rsp (.ci/uml/test-sctp sets it).
const EnvRSPBinary = "RSP_TEST_RSP"

// TestRSPEchoOverSCTPServesRsplib runs "rsp echo -transport sctp" with an
// rsp registrar over SCTP: the echo server registers an SCTP user
// transport, and rsplib's rspterminal, which speaks SCTP only, reaches it
// by pool handle and gets its echo.
func TestRSPEchoOverSCTPServesRsplib(t *testing.T) {
	rsplibtest.Require(t) // kernel SCTP and rsplib: inside User-mode Linux
	bin := os.Getenv(EnvRSPBinary)
	if bin == "" {
		t.Skipf("%s is not set to a built cmd/rsp; .ci/uml/test-sctp sets it", EnvRSPBinary)
	}
	r := registrar.New(registrar.Config{})
	defer r.Close()
	regAddr := fmt.Sprintf("%s:3875", hostAddr)
	l, err := registrar.Listen(context.Background(), "sctp", regAddr)
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(l)

	rsplibtest.StartProcess(t, nil, bin, "echo", "-transport", "sctp", "-registrar", "sctp:"+regAddr,
		"-listen", hostAddr+":0", "-pool", "RSPEchoPool")
	pe := awaitElements(t, r, "RSPEchoPool", 1, "rsp echo -transport sctp").Elements[0]
	if pe.UserTransport.Kind != asap.ParamSCTPTransport || pe.UserTransport.Port == 0 {
		t.Fatalf("rsp echo registered %+v, want an SCTP user transport", pe.UserTransport)
	}

	pr, pw := io.Pipe()
	defer pw.Close()
	out := rsplibtest.Start(t, pr, "rspterminal", "-registrar="+regAddr, "-poolhandle=RSPEchoPool", "-asapannounce=off")
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "hello from rsplib") {
		if time.Now().After(deadline) {
			t.Fatalf("rspterminal got no echo from rsp echo over SCTP:\n%s", out.String())
		}
		fmt.Fprintln(pw, "hello from rsplib")
		time.Sleep(500 * time.Millisecond)
	}
}

var replyLine = regexp.MustCompile(`from PE ([0-9a-f]{8})> line (\d+)`)

// TestRSPTerminalFailsOverBetweenRsplibEchoServers: "rsp terminal" reaches
// rsplib's echo servers (an *rsp.ASAPConn); the one it uses is killed
// (SIGKILL), and the terminal goes on with the other, its lines answered.
func TestRSPTerminalFailsOverBetweenRsplibEchoServers(t *testing.T) {
	rsplibtest.Require(t)
	bin := os.Getenv(EnvRSPBinary)
	if bin == "" {
		t.Skipf("%s is not set to a built cmd/rsp; .ci/uml/test-sctp sets it", EnvRSPBinary)
	}
	regAddr := fmt.Sprintf("%s:3953", hostAddr)
	rsplibtest.StartRegistrar(t, 3953, 9961)
	ep := endpoint.New(endpoint.Config{Registrars: []string{"sctp:" + regAddr}})
	defer ep.Close()
	procs := map[string]*rsplibtest.Process{}
	for range 2 {
		p, id := rsplibtest.StartServer(t, ep, regAddr, "EchoPool", "-echo", nil)
		procs[fmt.Sprintf("%08x", uint32(id))] = p
	}
	pr, pw := io.Pipe()
	defer pw.Close()
	term := rsplibtest.StartProcess(t, pr, bin, "terminal", "-registrar", "sctp:"+regAddr, "-wait", "1s", "EchoPool")
	answered := func() [][]string { return replyLine.FindAllStringSubmatch(term.Out.String(), -1) }
	line := 0
	send := func(until func([][]string) bool, what string) {
		deadline := time.Now().Add(30 * time.Second)
		for !until(answered()) {
			if time.Now().After(deadline) {
				t.Fatalf("rsp terminal: %s; its output:\n%s", what, term.Out.String())
			}
			select {
			case <-term.Exited:
				t.Fatalf("rsp terminal exited (%v):\n%s", term.Err, term.Out.String())
			default:
			}
			line++
			fmt.Fprintf(pw, "line %d\n", line)
			time.Sleep(200 * time.Millisecond)
		}
	}
	send(func(a [][]string) bool { return len(a) >= 3 }, "no three replies")
	first := answered()[0][1]
	if procs[first] == nil {
		t.Fatalf("replies from PE %s, not one of the echo servers", first)
	}
	syscall.Kill(procs[first].Pid, syscall.SIGKILL)
	n := len(answered())
	send(func(a [][]string) bool {
		return len(a) >= n+3 && a[len(a)-1][1] != first
	}, "no three replies from the other element after the kill")
	t.Logf("moved from PE %s to PE %s", first, answered()[len(answered())-1][1])
}

var rsplibReply = regexp.MustCompile(`from PE \$([0-9a-f]{8})> line (\d+)`)

// TestRsplibTerminalFailsOverBetweenRSPEchoServers: rsplib's rspterminal
// uses a pool of "rsp echo -transport sctp" elements (session listeners,
// which serve rsplib's plain associations); the one it uses is killed
// (SIGKILL), and rspterminal goes on with the other.
func TestRsplibTerminalFailsOverBetweenRSPEchoServers(t *testing.T) {
	rsplibtest.Require(t)
	bin := os.Getenv(EnvRSPBinary)
	if bin == "" {
		t.Skipf("%s is not set to a built cmd/rsp; .ci/uml/test-sctp sets it", EnvRSPBinary)
	}
	r := registrar.New(registrar.Config{})
	defer r.Close()
	regAddr := fmt.Sprintf("%s:3963", hostAddr)
	l, err := registrar.Listen(context.Background(), "sctp", regAddr)
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(l)
	procs := map[string]*rsplibtest.Process{}
	for i := range 2 {
		p := rsplibtest.StartProcess(t, nil, bin, "echo", "-transport", "sctp", "-registrar", "sctp:"+regAddr,
			"-listen", hostAddr+":0", "-pool", "RSPEchoPool2")
		for _, pe := range awaitElements(t, r, "RSPEchoPool2", i+1, "rsp echo -transport sctp").Elements {
			if id := fmt.Sprintf("%08x", uint32(pe.ID)); procs[id] == nil {
				procs[id] = p
			}
		}
	}
	pr, pw := io.Pipe()
	defer pw.Close()
	out := rsplibtest.Start(t, pr, "rspterminal", "-registrar="+regAddr, "-poolhandle=RSPEchoPool2", "-asapannounce=off")
	answered := func() [][]string { return rsplibReply.FindAllStringSubmatch(out.String(), -1) }
	line := 0
	send := func(until func([][]string) bool, what string) {
		deadline := time.Now().Add(30 * time.Second)
		for !until(answered()) {
			if time.Now().After(deadline) {
				t.Fatalf("rspterminal: %s; its output:\n%s", what, out.String())
			}
			line++
			fmt.Fprintf(pw, "line %d\n", line)
			time.Sleep(300 * time.Millisecond)
		}
	}
	send(func(a [][]string) bool { return len(a) >= 3 }, "no three replies")
	first := answered()[0][1]
	if procs[first] == nil {
		t.Fatalf("replies from PE %s, not one of the rsp echo servers", first)
	}
	syscall.Kill(procs[first].Pid, syscall.SIGKILL)
	n := len(answered())
	send(func(a [][]string) bool {
		return len(a) >= n+3 && a[len(a)-1][1] != first
	}, "no three replies from the other element after the kill")
	t.Logf("moved from PE %s to PE %s", first, answered()[len(answered())-1][1])
}
