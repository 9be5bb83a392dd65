package interop

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/policy"
	"github.com/rsp-go/rsp/registrar"
)

// hostAddr is the test host's own site-local address inside User-mode
// Linux (rsplib refuses loopback-only hosts).
const hostAddr = "172.31.255.1"

func requireRsplib(t testing.TB) {
	t.Helper()
	if !rsp.SCTPSupported() {
		t.Skip("the kernel has no SCTP; run with .ci/uml/test-sctp")
	}
	for _, p := range []string{"rspregistrar", "rspserver", "rspterminal", "hsdump"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("rsplib's %s is not installed (.ci/uml/setup installs it)", p)
		}
	}
	if ifs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range ifs {
			if strings.HasPrefix(a.String(), hostAddr+"/") {
				return
			}
		}
	}
	t.Skipf("no interface with the test host address %s (.ci/uml/run creates it)", hostAddr)
}

// start runs an rsplib program until the test ends.
func start(t testing.TB, stdin io.Reader, name string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdin = stdin
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	return cmd, &out
}

// startRsplibRegistrar starts rsplib's registrar and waits until it serves.
func startRsplibRegistrar(t testing.TB, asapPort, enrpPort int) {
	t.Helper()
	log := filepath.Join(t.TempDir(), "registrar.log")
	start(t, nil, "rspregistrar",
		fmt.Sprintf("-asap=%s:%d", hostAddr, asapPort), fmt.Sprintf("-enrp=%s:%d", hostAddr, enrpPort),
		"-asapannounce=off", "-enrpannounce=off", "-logcolor=off", "-loglevel=3", "-logfile="+log)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(log); bytes.Contains(b, []byte("The registrar is ready")) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := os.ReadFile(log)
	t.Fatalf("rsplib's registrar did not get ready; its log:\n%s", b)
}

func echoServe(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 65536)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
			}
		}()
	}
}

// TestRSPPoolElementWithRsplib registers an rsp pool element over SCTP with
// rsplib's registrar; rsplib's rspterminal reaches it by pool handle and
// gets its echo, and rsplib's hsdump shows it with its transport and policy.
func TestRSPPoolElementWithRsplib(t *testing.T) {
	requireRsplib(t)
	startRsplibRegistrar(t, 3863, 9901)

	ep := endpoint.New(endpoint.Config{Registrars: []string{fmt.Sprintf("sctp:%s:3863", hostAddr)}})
	defer ep.Close()
	lc := rsp.ListenConfig{Endpoint: ep, LocalAddr: hostAddr + ":0", Policy: policy.Policy{Type: policy.LeastUsed}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := lc.Listen(ctx, "sctp", "pool:EchoPool")
	if err != nil {
		t.Fatalf("registering with rsplib's registrar: %v", err)
	}
	defer l.Close()
	go echoServe(l)

	// rspterminal sends its standard input to the pool and prints replies.
	pr, pw := io.Pipe()
	_, out := start(t, pr, "rspterminal", fmt.Sprintf("-registrar=%s:3863", hostAddr), "-poolhandle=EchoPool", "-asapannounce=off")
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "hello from rsplib") {
		if time.Now().After(deadline) {
			t.Fatalf("rspterminal got no echo from the rsp pool element:\n%s", out.String())
		}
		fmt.Fprintln(pw, "hello from rsplib")
		time.Sleep(500 * time.Millisecond)
	}
	pw.Close()

	dump, err := exec.Command("hsdump", fmt.Sprintf("%s:9901", hostAddr)).CombinedOutput()
	if err != nil && len(dump) == 0 {
		t.Fatalf("hsdump: %v", err)
	}
	text := strings.ToLower(string(dump))
	id := fmt.Sprintf("%08x", uint32(l.ID()))
	// rsplib prints the pool as `Pool "EchoPool", Policy "LeastUsed",
	// Protocol SCTP` and the element as `$id ... userT: {addr} port/SCTP`.
	for _, want := range []string{`pool "echopool", policy "leastused", protocol sctp`, "$" + id, "usert: {" + hostAddr + "}"} {
		if !strings.Contains(text, want) {
			t.Errorf("hsdump output lacks %q:\n%s", want, dump)
		}
	}
}

// TestRsplibPoolElementWithRSP has rsplib's rspserver register with the
// rsp registrar over SCTP; an rsp pool user resolves the pool and gets the
// echo.
func TestRsplibPoolElementWithRSP(t *testing.T) {
	requireRsplib(t)
	r := registrar.New(registrar.Config{})
	defer r.Close()
	l, err := registrar.Listen(context.Background(), "sctp", fmt.Sprintf("%s:3873", hostAddr))
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(l)

	start(t, nil, "rspserver", "-echo", fmt.Sprintf("-registrar=%s:3873", hostAddr), "-asapannounce=off")
	deadline := time.Now().Add(20 * time.Second)
	var pool registrar.Pool
	for {
		if p, ok := r.Pool("EchoPool"); ok && len(p.Elements) > 0 {
			pool = p
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("rsplib's rspserver did not register with the rsp registrar")
		}
		time.Sleep(100 * time.Millisecond)
	}
	pe := pool.Elements[0]
	t.Logf("rspserver registered: PE %08x, %v transport %v:%d, policy %v, life %v",
		uint32(pe.ID), pe.UserTransport.Kind, pe.UserTransport.Addrs, pe.UserTransport.Port, pe.Policy.Type, pe.Life)
	if pe.UserTransport.Kind != asap.ParamSCTPTransport || pe.ASAPTransport == nil {
		t.Errorf("registered element %+v: want an SCTP user transport and an ASAP transport", pe)
	}

	d := rsp.Dialer{Registrars: []string{fmt.Sprintf("sctp:%s:3873", hostAddr)}, Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", "pool:EchoPool")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "hello from rsp\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "hello from rsp\n" {
		t.Fatalf("echo %q, %v", line, err)
	}
}
