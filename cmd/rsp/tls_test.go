package main

import (
	"io"
	"strings"
	"testing"

	"github.com/rsp-go/rsp/internal/testpki"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/registrar"
)

// TestTLSCommands runs echo, terminal, resolve and register with the TLS
// flags against a registrar with mutual TLS that lets echo-1 serve pool
// echo only.
func TestTLSCommands(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, "test CA")
	dir := t.TempDir()
	caFile := ca.WriteFiles(t, dir, ca.MustIssue(t, "echo-1", "echo"), ca.MustIssue(t, "user"))
	r, reg := testutil.StartRegistrar(t, registrar.Config{
		TLSConfig: testpki.ServerConfig(ca.MustIssue(t, "registrar", "127.0.0.1"), ca.Pool()),
		Authorize: registrar.Rules{{Identity: "echo-1", Pools: "echo"}}.Authorize,
	})
	if !strings.HasPrefix(reg, "tls:") {
		t.Fatalf("registrar address %q", reg)
	}
	tlsArgs := func(name string, args ...string) []string {
		return append([]string{"-registrar", reg, "-tls-ca", caFile, "-tls-cert", dir + "/" + name + ".pem", "-tls-key", dir + "/" + name + ".key"}, args...)
	}

	echo := startCommand(t, runEcho, nil, tlsArgs("echo-1", "-listen", "127.0.0.1:0")...)
	waitFor(t, "the echo server to register", func() bool {
		if echo.ended() {
			t.Fatalf("echo ended: %v\n%s", echo.err, echo.stderr)
		}
		return len(poolElements(r, "echo")) == 1
	})

	out, errOut, err := runCommand(t, runTerminal, "hello\n", tlsArgs("user", "echo")...)
	if err != nil && err != io.EOF {
		t.Fatalf("terminal: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "> hello\n") {
		t.Errorf("terminal output %q, want the echoed line", out)
	}
	out, errOut, err = runCommand(t, runResolve, "", tlsArgs("user", "echo")...)
	if err != nil || len(peLines(t, out)) != 1 {
		t.Fatalf("resolve: %v\n%s%s", err, out, errOut)
	}

	// Without the CA, the registrar's certificate does not verify.
	_, errOut, err = runCommand(t, runResolve, "", "-registrar", reg, "-tls-cert", dir+"/user.pem", "-tls-key", dir+"/user.key", "echo")
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("resolve without the CA: %v, want a certificate error\n%s", err, errOut)
	}
	// A pool the identity may not register in.
	_, errOut, err = runCommand(t, runRegister, "", tlsArgs("echo-1", "other", "tcp:127.0.0.1:9")...)
	if err == nil || !strings.Contains(err.Error(), "rejected due to security considerations") {
		t.Errorf("register in a pool not allowed: %v, want a refusal for security\n%s", err, errOut)
	}
	// Flags that do not go together.
	if _, _, err := runCommand(t, runResolve, "", "-registrar", reg, "-tls-cert", dir+"/user.pem", "echo"); err == nil || !strings.Contains(err.Error(), "-tls-key") {
		t.Errorf("-tls-cert without -tls-key: %v", err)
	}
	if err := echo.stop(t); err != nil {
		t.Errorf("echo: %v", err)
	}
}
