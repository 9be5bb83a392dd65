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
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/mapping"
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
		{[]string{"-listen", "tcp:127.0.0.1:0", "-allow-peer", "reg-*"}, "-allow-peer without -peer"},
		{[]string{"-listen", "tcp:127.0.0.1:0", "-enrp-listen", "tcp:127.0.0.1:0", "-allow-peer", "reg-*"}, "-allow-peer needs mutual TLS"},
		{[]string{"-listen", "tcp:127.0.0.1:0", "-tls-cert", dir + "/registrar.pem", "-tls-key", dir + "/registrar.key", "-tls-client-ca", caFile,
			"-enrp-listen", "sctp:127.0.0.1:0"}, "SCTP has no TLS"},
		{[]string{"-listen", "tcp:127.0.0.1:0", "-tls-cert", dir + "/registrar.pem", "-tls-key", dir + "/registrar.key", "-tls-client-ca", caFile,
			"-enrp-listen", "tcp:127.0.0.1:0", "-allow", "pe=echo"}, "needs -allow-peer"},
	} {
		var out strings.Builder
		err := run(context.Background(), tc.args, &out)
		// A bad flag value is a usage error, printed by the flag package.
		if err == nil || !strings.Contains(err.Error()+out.String(), tc.want) {
			t.Errorf("run %q: %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

// TestTLSENRP: two registrars with the TLS flags share their handlespace
// over ENRP with TLS, each allowing the other's identity as a peer.
func TestTLSENRP(t *testing.T) {
	t.Parallel()
	ca := testpki.New(t, "test CA")
	dir := t.TempDir()
	caFile := ca.WriteFiles(t, dir, ca.MustIssue(t, "reg-1", "127.0.0.1"), ca.MustIssue(t, "reg-2", "127.0.0.1"))
	enrp1 := testutil.FreeAddr(t)
	tlsArgs := func(cn string) []string {
		return []string{"-tls-cert", dir + "/" + cn + ".pem", "-tls-key", dir + "/" + cn + ".key", "-tls-client-ca", caFile,
			"-allow", "pe-1=echo", "-allow-peer", "reg-*", "-peer-heartbeat", "100ms"}
	}
	_, log1, ended1 := runInProcess(t, append(tlsArgs("reg-1"), "-listen", "tls:127.0.0.1:0", "-enrp-listen", "tcp:"+enrp1)...)
	_, log2, ended2 := runInProcess(t, append(tlsArgs("reg-2"), "-listen", "tls:127.0.0.1:0", "-peer", "tcp:"+enrp1)...)
	addrOf := func(log *testutil.Buffer, ended func() bool) string {
		var addr string
		waitFor(t, "the registrar to serve over TLS", func() bool {
			if ended() {
				t.Fatalf("the registrar ended:\n%s", log)
			}
			if m := tlsServingLine.FindStringSubmatch(log.String()); m != nil {
				addr = "tls:" + m[1]
			}
			return addr != ""
		})
		return addr
	}
	a1, a2 := addrOf(log1, ended1), addrOf(log2, ended2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pe := endpoint.New(endpoint.Config{Registrars: []string{a1}, TLSConfig: testpki.ClientConfig(ca.Pool(), ca.MustIssue(t, "pe-1"))})
	defer pe.Close()
	reg, err := pe.Register(ctx, "echo", asap.PoolElement{
		UserTransport: asap.Transport{Kind: asap.ParamTCPTransport, Port: 4242, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
		Policy:        policy.Policy{Type: policy.RoundRobin},
	})
	if err != nil {
		t.Fatal(err)
	}
	pu := endpoint.New(endpoint.Config{Registrars: []string{a2}, CacheLifetime: -1, TLSConfig: testpki.ClientConfig(ca.Pool(), ca.MustIssue(t, "pu"))})
	defer pu.Close()
	waitFor(t, "the registration to reach the second registrar over ENRP with TLS", func() bool {
		res, err := pu.Resolve(ctx, "echo")
		return err == nil && len(res.PEs) == 1 && res.PEs[0].ID == reg.ID()
	})

	// The ENRP listener speaks TLS only: a plain connection hears no
	// presence.
	var d mapping.Dialer
	c, err := d.DialContext(ctx, "tcp", enrp1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, _, err := c.ReadMsg(make([]byte, 65536)); err == nil {
		t.Fatal("a plain ENRP connection got a message")
	}
}
