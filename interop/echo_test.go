//go:build linux

package interop

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
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
	deadline := time.Now().Add(20 * time.Second)
	var pe asap.PoolElement
	for {
		if p, ok := r.Pool("RSPEchoPool"); ok && len(p.Elements) > 0 {
			pe = p.Elements[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("rsp echo -transport sctp did not register")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if pe.UserTransport.Kind != asap.ParamSCTPTransport || pe.UserTransport.Port == 0 {
		t.Fatalf("rsp echo registered %+v, want an SCTP user transport", pe.UserTransport)
	}

	pr, pw := io.Pipe()
	defer pw.Close()
	out := rsplibtest.Start(t, pr, "rspterminal", "-registrar="+regAddr, "-poolhandle=RSPEchoPool", "-asapannounce=off")
	deadline = time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "hello from rsplib") {
		if time.Now().After(deadline) {
			t.Fatalf("rspterminal got no echo from rsp echo over SCTP:\n%s", out.String())
		}
		fmt.Fprintln(pw, "hello from rsplib")
		time.Sleep(500 * time.Millisecond)
	}
}
