package main

import (
	"context"
	"crypto/x509"
	"errors"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/testpki"
	"github.com/rsp-go/rsp/policy"
)

var tlsServingLine = regexp.MustCompile(`msg="serving ASAP" network=tls address=(\S+) id=\S+ tls=true mutual=true\n`)

func TestTLSFlags(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, "test CA")
	dir := t.TempDir()
	caFile := ca.WriteFiles(t, dir, ca.MustIssue(t, "registrar", "127.0.0.1"))
	_, log, ended := runInProcess(t, "-listen", "tls:127.0.0.1:0", "-tls-cert", dir+"/registrar.pem", "-tls-key", dir+"/registrar.key",
		"-tls-client-ca", caFile, "-allow", "pe-1=echo", "-allow", "web-*=web:register")
	var addr string
	waitFor(t, "the registrar to serve over TLS", func() bool {
		if ended() {
			t.Fatalf("the registrar ended:\n%s", log)
		}
		m := tlsServingLine.FindStringSubmatch(log.String())
		if m != nil {
			addr = "tls:" + m[1]
		}
		return m != nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	register := func(cn string, pool asap.PoolHandle) error {
		ep := endpoint.New(endpoint.Config{Registrars: []string{addr}, ConnectTimeout: time.Second, MaxRequestRetransmit: -1,
			TLSConfig: testpki.ClientConfig(ca.Pool(), ca.MustIssue(t, cn))})
		defer ep.Close()
		_, err := ep.Register(ctx, pool, asap.PoolElement{
			UserTransport: asap.Transport{Kind: asap.ParamTCPTransport, Port: 4242, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
			Policy:        policy.Policy{Type: policy.RoundRobin},
		})
		return err
	}
	if err := register("pe-1", "echo"); err != nil {
		t.Errorf("pe-1 in echo: %v", err)
	}
	if err := register("web-3", "web"); err != nil {
		t.Errorf("web-3 in web: %v", err)
	}
	var re *endpoint.RegistrationError
	if err := register("pe-1", "web"); !errors.As(err, &re) || !re.Has(asap.CauseRejectedSecurity) {
		t.Errorf("pe-1 in web: %v, want cause 0xa", err)
	}
	if !strings.Contains(log.String(), "refused by the authorisation rule") {
		t.Errorf("refusal not logged:\n%s", log)
	}
	// A client that does not know the CA refuses the registrar.
	ep := endpoint.New(endpoint.Config{Registrars: []string{addr}, ConnectTimeout: time.Second, MaxRequestRetransmit: -1})
	defer ep.Close()
	var ua x509.UnknownAuthorityError
	if _, err := ep.Resolve(ctx, "echo"); !errors.As(err, &ua) {
		t.Errorf("resolve with the system's roots: %v, want x509.UnknownAuthorityError", err)
	}
}

func TestTLSFlagErrors(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, "test CA")
	dir := t.TempDir()
	caFile := ca.WriteFiles(t, dir, ca.MustIssue(t, "registrar", "127.0.0.1"))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-listen", "tcp:127.0.0.1:0", "-allow", "x=y"}, "-allow needs mutual TLS"},
		{[]string{"-listen", "tcp:127.0.0.1:0", "-tls-cert", dir + "/registrar.pem", "-tls-key", dir + "/registrar.key", "-allow", "x=y"}, "-allow needs mutual TLS"},
		{[]string{"-listen", "tcp:127.0.0.1:0", "-tls-client-ca", caFile}, "needs -tls-cert"},
		{[]string{"-listen", "tcp:127.0.0.1:0", "-tls-cert", dir + "/registrar.pem"}, "-tls-key"},
		{[]string{"-listen", "tls:127.0.0.1:0"}, "tls network without a TLS configuration"},
		{[]string{"-allow", "nonsense"}, "IDENTITY=POOLS"},
	} {
		err := run(context.Background(), tc.args, new(strings.Builder))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %q: %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}
