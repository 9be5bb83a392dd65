package rsp_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/testpki"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/registrar"
)

// tlsPKI is a test CA with a registrar that speaks mutual TLS and lets
// the identities "web-a" and "web-b" register in pool "web".
type tlsPKI struct {
	ca   *testpki.CA
	r    *registrar.Registrar
	regs []string
}

func startTLSRegistrar(t *testing.T) *tlsPKI {
	t.Helper()
	ca := testpki.New(t, "test CA")
	// No test here removes an element by its keep-alives: a timeout that a
	// loaded machine meets (at 300 ms an element was removed now and then,
	// and the pool never had its three).
	r, addr := testutil.StartRegistrar(t, registrar.Config{
		KeepAliveInterval: 200 * time.Millisecond,
		KeepAliveTimeout:  2 * time.Second,
		TLSConfig:         testpki.ServerConfig(ca.MustIssue(t, "registrar", "127.0.0.1"), ca.Pool()),
		Authorize:         registrar.Rules{{Identity: "web-*", Pools: "web"}}.Authorize,
	})
	return &tlsPKI{ca: ca, r: r, regs: []string{addr}}
}

// registrarTLS is the registrar-side configuration of an endpoint known as
// cn.
func (p *tlsPKI) registrarTLS(t *testing.T, cn string) *tls.Config {
	return testpki.ClientConfig(p.ca.Pool(), p.ca.MustIssue(t, cn))
}

// serveTLS runs a pooled HTTPS server in pool "web" with cert, registered
// as cn, that answers with its name and whether it saw TLS.
func (p *tlsPKI) serveTLS(t *testing.T, cn string, cert tls.Certificate) *rsp.Listener {
	t.Helper()
	srvTLS := testpki.ServerConfig(cert, nil)
	srvTLS.NextProtos = []string{"h2", "http/1.1"}
	lc := rsp.ListenConfig{
		Registrars: p.regs, LocalAddr: "127.0.0.1:0",
		TLSConfig: srvTLS, RegistrarTLSConfig: p.registrarTLS(t, cn),
	}
	l, err := lc.Listen(context.Background(), "tcp", "pool:web")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			io.WriteString(w, cn+" without TLS")
			return
		}
		io.WriteString(w, cn)
	}), ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close(); l.Close() })
	return l
}

func TestTLSHTTPThroughPool(t *testing.T) {
	p := startTLSRegistrar(t)
	p.serveTLS(t, "web-a", p.ca.MustIssue(t, "web-a", "web"))
	p.serveTLS(t, "web-b", p.ca.MustIssue(t, "web-b", "web"))
	waitFor(t, "two servers in the pool", 5*time.Second, func() bool { return poolSize(p.r, "web") == 2 })

	for _, proto := range []string{"http/1.1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			cliTLS := testpki.ClientConfig(p.ca.Pool())
			cliTLS.NextProtos = []string{proto}
			d := &rsp.Dialer{Registrars: p.regs, RegistrarTLSConfig: p.registrarTLS(t, "user"), TLSConfig: cliTLS, Timeout: time.Second}
			client := &http.Client{
				Transport: &http.Transport{DialTLSContext: d.DialTLSContext, ForceAttemptHTTP2: true, DisableKeepAlives: true},
				Timeout:   5 * time.Second,
			}
			seen := map[string]int{}
			for range 6 {
				resp, err := client.Get("https://web/")
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				seen[string(b)]++
				if resp.TLS == nil || !slices.Contains(resp.TLS.PeerCertificates[0].DNSNames, "web") {
					t.Fatalf("response without the element's verified certificate: %+v", resp.TLS)
				}
				if wantMajor := map[string]int{"h2": 2, "http/1.1": 1}[proto]; resp.ProtoMajor != wantMajor {
					t.Errorf("protocol %s, want HTTP/%d", resp.Proto, wantMajor)
				}
			}
			if seen["web-a"] == 0 || seen["web-b"] == 0 || len(seen) != 2 {
				t.Errorf("answers %v: want both servers, over TLS", seen)
			}
		})
	}

	// DialContext over TLS returns the *tls.Conn; PoolElementOf tells its
	// element.
	d := &rsp.Dialer{Registrars: p.regs, RegistrarTLSConfig: p.registrarTLS(t, "user"), TLSConfig: testpki.ClientConfig(p.ca.Pool())}
	c, err := d.DialContext(context.Background(), "tcp", "pool:web")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if st := c.(*tls.Conn).ConnectionState(); !st.HandshakeComplete || st.Version != tls.VersionTLS13 {
		t.Errorf("connection state %+v, want a TLS 1.3 handshake done", st)
	}
	if e, ok := rsp.PoolElementOf(c); !ok || e.ID == 0 {
		t.Error("no pool element")
	}
}

func TestTLSDialRefusesUnverifiedElement(t *testing.T) {
	p := startTLSRegistrar(t)
	other := testpki.New(t, "other CA")
	// An element with a certificate of another CA, and one of the right
	// CA for another name: neither proves it serves pool "web".
	p.serveTLS(t, "web-x", other.MustIssue(t, "web-x", "web"))
	p.serveTLS(t, "web-y", p.ca.MustIssue(t, "web-y", "not-web"))
	waitFor(t, "two servers in the pool", 5*time.Second, func() bool { return poolSize(p.r, "web") == 2 })

	d := &rsp.Dialer{Registrars: p.regs, RegistrarTLSConfig: p.registrarTLS(t, "user"), TLSConfig: testpki.ClientConfig(p.ca.Pool()), Timeout: time.Second}
	for range 4 {
		_, err := d.DialContext(context.Background(), "tcp", "pool:web")
		var ua x509.UnknownAuthorityError
		var he x509.HostnameError
		if !errors.Is(err, rsp.ErrNoServer) || !(errors.As(err, &ua) || errors.As(err, &he)) {
			t.Fatalf("dial of a pool whose elements do not verify: %v, want ErrNoServer with a certificate error", err)
		}
	}
	// Elements that answer are not reported unreachable for their
	// certificates: both stay.
	time.Sleep(300 * time.Millisecond)
	if n := poolSize(p.r, "web"); n != 2 {
		t.Fatalf("pool holds %d elements after the dials, want 2", n)
	}

	// A verifiable element joins, and dials reach it only.
	p.serveTLS(t, "web-a", p.ca.MustIssue(t, "web-a", "web"))
	waitFor(t, "three servers in the pool", 5*time.Second, func() bool { return poolSize(p.r, "web") == 3 })
	ep := endpoint.New(endpoint.Config{Registrars: p.regs, TLSConfig: p.registrarTLS(t, "user"), CacheLifetime: -1})
	defer ep.Close()
	d = &rsp.Dialer{Endpoint: ep, TLSConfig: testpki.ClientConfig(p.ca.Pool()), Timeout: time.Second}
	for range 3 {
		c, err := d.DialContext(context.Background(), "tcp", "pool:web")
		if err != nil {
			t.Fatal(err)
		}
		if cn := c.(*tls.Conn).ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "web-a" {
			t.Errorf("dial reached %q, want web-a", cn)
		}
		c.Close()
	}
}

func TestTLSListenerRefusesSCTP(t *testing.T) {
	lc := rsp.ListenConfig{TLSConfig: &tls.Config{}, Registrars: []string{"tcp:127.0.0.1:1"}}
	if _, err := lc.Listen(context.Background(), "sctp", "pool:x"); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("TLS over SCTP: %v, want errors.ErrUnsupported", err)
	}
}
