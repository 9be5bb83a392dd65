package registrar

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/internal/testpki"
	"github.com/rsp-go/rsp/mapping"
)

// logBuffer collects a registrar's logs for a test.
type logBuffer struct {
	mu sync.Mutex
	sb strings.Builder
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sb.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sb.String()
}

// startTLSRegistrar runs a registrar with mutual TLS: its certificate and
// the client certificates it accepts come from ca.
func startTLSRegistrar(t *testing.T, ca *testpki.CA, cfg Config) (*Registrar, string) {
	t.Helper()
	cfg.TLSConfig = testpki.ServerConfig(ca.MustIssue(t, "registrar", "127.0.0.1"), ca.Pool())
	r := New(cfg)
	l, err := r.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(l)
	t.Cleanup(func() { r.Close() })
	return r, l.Addr().String()
}

// dialTLSClient connects to the registrar at addr over TLS with cfg.
func dialTLSClient(t *testing.T, addr string, cfg *tls.Config) (*client, error) {
	t.Helper()
	d := mapping.Dialer{TLSConfig: cfg}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, buf: make([]byte, 65536)}, nil
}

func mustDialTLSClient(t *testing.T, addr string, ca *testpki.CA, cn string, names ...string) *client {
	t.Helper()
	c, err := dialTLSClient(t, addr, testpki.ClientConfig(ca.Pool(), ca.MustIssue(t, cn, names...)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func refusedForSecurity(causes []asap.Cause) bool {
	return len(causes) == 1 && causes[0].Code == asap.CauseRejectedSecurity
}

func TestTLSAuthorisedRegistration(t *testing.T) {
	ca := testpki.New(t, "test CA")
	var logs logBuffer
	cfg := noKeepAlives()
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	cfg.Authorize = Rules{
		{Identity: "pe-a", Pools: "a"},
		{Identity: "spiffe://example/web", Pools: "web-*"},
		{Identity: "once", Pools: "lim", Ops: []Op{OpRegister}},
	}.Authorize
	r, addr := startTLSRegistrar(t, ca, cfg)

	a := mustDialTLSClient(t, addr, ca, "pe-a")
	if resp := a.register("a", loopbackPE(1, 7, rr)); resp.Reject {
		t.Fatalf("authorised registration refused: %+v", resp)
	}
	resp := a.register("b", loopbackPE(2, 7, rr))
	if !resp.Reject || !refusedForSecurity(resp.Causes) || resp.Handle != "b" || resp.ID != 2 {
		t.Fatalf("registration in a pool not allowed: %+v, want a refusal with cause 0xa", resp)
	}
	if _, ok := r.Pool("b"); ok {
		t.Fatal("a refused registration created its pool")
	}
	if !strings.Contains(logs.String(), "refused by the authorisation rule") ||
		!strings.Contains(logs.String(), a.c.LocalAddr().String()) ||
		!strings.Contains(logs.String(), "pool=b") {
		t.Errorf("the refusal is not logged with its peer %v:\n%s", a.c.LocalAddr(), logs.String())
	}

	// A SAN URI identity and a pattern of pools.
	web := mustDialTLSClient(t, addr, ca, "web-server-7", "spiffe://example/web")
	if resp := web.register("web-1", loopbackPE(3, 8, rr)); resp.Reject {
		t.Fatalf("registration by SAN URI refused: %+v", resp)
	}
	if resp := web.register("a", loopbackPE(4, 8, rr)); !refusedForSecurity(resp.Causes) {
		t.Fatalf("registration in pool a by web: %+v, want cause 0xa", resp)
	}

	// An identity allowed to register only may neither re-register nor
	// deregister.
	once := mustDialTLSClient(t, addr, ca, "once")
	if resp := once.register("lim", loopbackPE(5, 9, rr)); resp.Reject {
		t.Fatalf("registration refused: %+v", resp)
	}
	pe := loopbackPE(5, 10, rr)
	if resp := once.register("lim", pe); !resp.Reject || !refusedForSecurity(resp.Causes) {
		t.Fatalf("re-registration not allowed: %+v, want cause 0xa", resp)
	}
	once.send(&asap.Deregistration{Handle: "lim", ID: 5})
	if dr := expect[*asap.DeregistrationResponse](once, 5*time.Second); !refusedForSecurity(dr.Causes) {
		t.Fatalf("deregistration not allowed: %+v, want cause 0xa", dr)
	}
	if p, ok := r.Pool("lim"); !ok || len(p.Elements) != 1 || p.Elements[0].UserTransport.Port != 9 {
		t.Fatalf("pool lim after the refused requests: %+v, want element 5 on port 9", p)
	}

	// The allowed identity deregisters its own element, and not in a
	// pool it is not allowed.
	a.send(&asap.Deregistration{Handle: "b", ID: 9})
	if dr := expect[*asap.DeregistrationResponse](a, 5*time.Second); !refusedForSecurity(dr.Causes) {
		t.Fatalf("deregistration in pool b by pe-a: %+v, want cause 0xa", dr)
	}
	a.send(&asap.Deregistration{Handle: "a", ID: 1})
	if dr := expect[*asap.DeregistrationResponse](a, 5*time.Second); len(dr.Causes) != 0 {
		t.Fatalf("authorised deregistration refused: %+v", dr)
	}
	if _, ok := r.Pool("a"); ok {
		t.Fatal("pool a still there after its element deregistered")
	}

	// Re-registration by an identity allowed all operations.
	if resp := a.register("a", loopbackPE(1, 7, rr)); resp.Reject {
		t.Fatal(resp)
	}
	if resp := a.register("a", loopbackPE(1, 11, rr)); resp.Reject {
		t.Fatalf("authorised re-registration refused: %+v", resp)
	}
	if p, _ := r.Pool("a"); len(p.Elements) != 1 || p.Elements[0].UserTransport.Port != 11 {
		t.Fatalf("pool a after re-registration: %+v, want port 11", p)
	}
}

func TestTLSRegistrarRefusesUnverifiedClients(t *testing.T) {
	ca, other := testpki.New(t, "test CA"), testpki.New(t, "other CA")
	var logs logBuffer
	cfg := noKeepAlives()
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	r, addr := startTLSRegistrar(t, ca, cfg)
	for name, tc := range map[string]*tls.Config{
		"no certificate":     testpki.ClientConfig(ca.Pool()),
		"another CA's":       testpki.ClientConfig(ca.Pool(), other.MustIssue(t, "pe-a")),
		"plain TCP (no TLS)": nil,
	} {
		t.Run(name, func(t *testing.T) {
			c, err := dialTLSClient(t, addr, tc)
			if err != nil {
				t.Fatal(err)
			}
			c.c.WriteMsg([]byte{byte(asap.TypeRegistration), 0, 0, 4}, mapping.PPIDASAP)
			if m, err := c.tryRecv(5 * time.Second); err == nil {
				t.Fatalf("registrar answered %T %+v", m, m)
			}
		})
	}
	r.mu.Lock()
	n := len(r.conns)
	r.mu.Unlock()
	if n != 0 {
		t.Errorf("registrar serves %d connections of unverified peers", n)
	}
	if !strings.Contains(logs.String(), "TLS handshake failed") {
		t.Errorf("failed handshakes not logged:\n%s", logs.String())
	}
}

func TestAuthorizeWithoutTLS(t *testing.T) {
	var seen []Peer
	var mu sync.Mutex
	cfg := noKeepAlives()
	cfg.Authorize = func(p Peer, op Op, pool asap.PoolHandle) bool {
		mu.Lock()
		seen = append(seen, p)
		mu.Unlock()
		return pool == "open"
	}
	_, addr := startRegistrar(t, cfg)
	c := dialClient(t, addr)
	if resp := c.register("open", loopbackPE(1, 7, rr)); resp.Reject {
		t.Fatal(resp)
	}
	if resp := c.register("closed", loopbackPE(2, 7, rr)); !refusedForSecurity(resp.Causes) {
		t.Fatalf("refused registration: %+v, want cause 0xa", resp)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0].Certificate != nil || seen[0].Addr.String() != c.c.LocalAddr().String() {
		t.Fatalf("Authorize saw %+v, want the peer at %v without a certificate", seen, c.c.LocalAddr())
	}
	// Without a certificate, a rule table allows nothing.
	if (Rules{{Identity: "*", Pools: "*"}}).Authorize(seen[0], OpRegister, "open") {
		t.Error("a rule allowed a peer without a certificate")
	}
}

func TestRules(t *testing.T) {
	u, _ := url.Parse("spiffe://example/pe")
	peer := Peer{Addr: &net.TCPAddr{}, Certificate: &x509.Certificate{
		Subject: pkix.Name{CommonName: "pe-1"}, DNSNames: []string{"pe-1.example"}, URIs: []*url.URL{u},
	}}
	if diff := cmp.Diff([]string{"pe-1", "pe-1.example", "spiffe://example/pe"}, peer.Identities()); diff != "" {
		t.Errorf("identities (-want +got):\n%s", diff)
	}
	rules := Rules{
		{Identity: "pe-1", Pools: "echo"},
		{Identity: "*.example", Pools: "x"}, // a suffix is no pattern: exact
		{Identity: "pe-1.ex*", Pools: "web-*", Ops: []Op{OpRegister, OpReregister}},
		{Identity: "spiffe://example/pe", Pools: "*", Ops: []Op{OpDeregister}},
	}
	for _, tc := range []struct {
		op   Op
		pool asap.PoolHandle
		want bool
	}{
		{OpRegister, "echo", true},
		{OpReregister, "echo", true},
		{OpDeregister, "echo", true},
		{OpRegister, "echo2", false},
		{OpRegister, "x", false},
		{OpRegister, "web-1", true},
		{OpReregister, "web-", true},
		{OpRegister, "web", false},
		{OpDeregister, "anything", true},
		{OpRegister, "anything", false},
	} {
		if got := rules.Authorize(peer, tc.op, tc.pool); got != tc.want {
			t.Errorf("Authorize(%v, %q) = %v, want %v", tc.op, tc.pool, got, tc.want)
		}
	}
	if (Rules{}).Authorize(peer, OpRegister, "echo") {
		t.Error("an empty table allowed a request")
	}
}

func TestParseRule(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rule
	}{
		{"pe-1=echo", Rule{Identity: "pe-1", Pools: "echo"}},
		{"spiffe://example/a=b=web-*", Rule{Identity: "spiffe://example/a=b", Pools: "web-*"}},
		{"admin=*:deregister", Rule{Identity: "admin", Pools: "*", Ops: []Op{OpDeregister}}},
		{"x=p:register,reregister", Rule{Identity: "x", Pools: "p", Ops: []Op{OpRegister, OpReregister}}},
	} {
		got, err := ParseRule(tc.in)
		if err != nil {
			t.Errorf("ParseRule(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseRule(%q) (-want +got):\n%s", tc.in, diff)
		}
		if again, err := ParseRule(got.String()); err != nil || !cmp.Equal(again, got) {
			t.Errorf("ParseRule(%q.String() = %q) = %+v, %v", tc.in, got.String(), again, err)
		}
	}
	for _, bad := range []string{"", "pe", "=echo", "pe=", "pe=echo:remove", "pe=:register"} {
		if _, err := ParseRule(bad); err == nil {
			t.Errorf("ParseRule(%q) accepted", bad)
		}
	}
}

// FuzzParseRule: any text either fails to parse or parses into a rule
// that String writes back as the same rule.
func FuzzParseRule(f *testing.F) {
	for _, s := range []string{"pe-1=echo", "spiffe://example/a=b=web-*", "admin=*:deregister", "x=p:register,reregister", "=", "a=b:", "a==b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRule(s)
		if err != nil {
			return
		}
		again, err := ParseRule(r.String())
		if err != nil || !cmp.Equal(again, r) {
			t.Fatalf("ParseRule(%q) = %+v, whose String %q parses as %+v, %v", s, r, r.String(), again, err)
		}
	})
}
