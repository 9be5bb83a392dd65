//go:build linux

package interop

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/rsplibtest"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/policy"
	"github.com/rsp-go/rsp/registrar"
)

const hostAddr = rsplibtest.HostAddr

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
	rsplibtest.Require(t)
	rsplibtest.StartRegistrar(t, 3863, 9901)

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
	out := rsplibtest.Start(t, pr, "rspterminal", fmt.Sprintf("-registrar=%s:3863", hostAddr), "-poolhandle=EchoPool", "-asapannounce=off")
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "hello from rsplib") {
		if time.Now().After(deadline) {
			t.Fatalf("rspterminal got no echo from the rsp pool element:\n%s", out.String())
		}
		fmt.Fprintln(pw, "hello from rsplib")
		time.Sleep(500 * time.Millisecond)
	}
	pw.Close()

	text := hsdump(t, fmt.Sprintf("%s:9901", hostAddr))
	id := fmt.Sprintf("%08x", uint32(l.ID()))
	// rsplib prints the pool as `Pool "EchoPool", Policy "LeastUsed",
	// Protocol SCTP` and the element as `$id ... userT: {addr} port/SCTP`.
	for _, want := range []string{`pool "echopool", policy "leastused", protocol sctp`, "$" + id, "usert: {" + hostAddr + "}"} {
		if !strings.Contains(text, want) {
			t.Errorf("hsdump output lacks %q:\n%s", want, text)
		}
	}
}

// hsdump returns, in lower case, what rsplib's hsdump prints of the
// handlespace of the registrar whose ENRP address is enrp.
func hsdump(t *testing.T, enrp string) string {
	t.Helper()
	dump, err := exec.Command("hsdump", enrp).CombinedOutput()
	if err != nil && len(dump) == 0 {
		t.Fatalf("hsdump: %v", err)
	}
	return strings.ToLower(string(dump))
}

// TestRsplibPoolElementWithRSP has rsplib's rspserver register with the
// rsp registrar over SCTP; an rsp pool user resolves the pool and gets the
// echo.
func TestRsplibPoolElementWithRSP(t *testing.T) {
	rsplibtest.Require(t)
	r := registrar.New(registrar.Config{})
	defer r.Close()
	l, err := registrar.Listen(context.Background(), "sctp", fmt.Sprintf("%s:3873", hostAddr))
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(l)

	rsplibtest.Start(t, nil, "rspserver", "-echo", fmt.Sprintf("-registrar=%s:3873", hostAddr), "-asapannounce=off")
	pe := awaitElements(t, r, "EchoPool", 1, "rsplib's rspserver").Elements[0]
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

// awaitElements waits until the rsp registrar r lists n elements in pool
// and returns the pool; who names what registers, for the failure.
func awaitElements(t *testing.T, r *registrar.Registrar, pool asap.PoolHandle, n int, who string) registrar.Pool {
	t.Helper()
	var p registrar.Pool
	testutil.WaitFor(t, 20*time.Second, fmt.Sprintf("%s to register with the rsp registrar (%d in pool %s)", who, n, pool), func() bool {
		var ok bool
		p, ok = r.Pool(pool)
		return ok && len(p.Elements) == n
	})
	return p
}
