package endpoint_test

import (
	"crypto/x509"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/testpki"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/registrar"
)

// TestTLSRegistrar: over mutual TLS an endpoint registers where the
// registrar's rules allow its certificate, is refused with cause 0xa
// where they do not, and resolves.
func TestTLSRegistrar(t *testing.T) {
	ca := testpki.New(t, "test CA")
	r, addr := testutil.StartRegistrar(t, registrar.Config{
		TLSConfig: testpki.ServerConfig(ca.MustIssue(t, "registrar", "127.0.0.1"), ca.Pool()),
		Authorize: registrar.Rules{{Identity: "pe-1", Pools: "echo"}}.Authorize,
	})
	pe := newEndpoint(t, endpoint.Config{
		Registrars: []string{addr}, Reregistration: quiet,
		TLSConfig: testpki.ClientConfig(ca.Pool(), ca.MustIssue(t, "pe-1")),
	})
	ctx := ctxTimeout(t, waitLong)
	reg, err := pe.Register(ctx, "echo", testPE(0, 7))
	if err != nil {
		t.Fatal(err)
	}
	_, err = pe.Register(ctx, "other", testPE(0, 7))
	var re *endpoint.RegistrationError
	if !errors.As(err, &re) || !re.Has(asap.CauseRejectedSecurity) {
		t.Fatalf("registration in a pool not allowed: %v, want a RegistrationError with cause 0xa", err)
	}

	// The registrar's address form "tls:" alone (no TLSConfig) verifies
	// with the system's roots, which do not know the test CA.
	pu := newEndpoint(t, endpoint.Config{Registrars: []string{addr}, ConnectTimeout: time.Second, MaxRequestRetransmit: -1})
	var ua x509.UnknownAuthorityError
	if _, err := pu.Resolve(ctx, "echo"); !errors.Is(err, endpoint.ErrNoRegistrar) || !errors.As(err, &ua) {
		t.Fatalf("resolution through a registrar of an unknown CA: %v, want ErrNoRegistrar with x509.UnknownAuthorityError", err)
	}
	pu = newEndpoint(t, endpoint.Config{
		Registrars: []string{addr}, CacheLifetime: -1,
		TLSConfig: testpki.ClientConfig(ca.Pool(), ca.MustIssue(t, "pu-1")),
	})
	res, err := pu.Resolve(ctx, "echo")
	if err != nil || !slices.Equal(ids(res.PEs), []asap.PEID{reg.ID()}) {
		t.Fatalf("resolution over TLS: %+v, %v; want %#x", res, err, reg.ID())
	}
	if got := poolIDs(r, "other"); got != nil {
		t.Fatalf("pool other holds %v", got)
	}
}

// TestTLSRefusesImpostorRegistrar: a registrar whose certificate does not
// verify is never used, even when it is the only one.
func TestTLSRefusesImpostorRegistrar(t *testing.T) {
	ca, other := testpki.New(t, "test CA"), testpki.New(t, "other CA")
	r, addr := testutil.StartRegistrar(t, registrar.Config{
		TLSConfig: testpki.ServerConfig(other.MustIssue(t, "registrar", "127.0.0.1"), nil),
	})
	pe := newEndpoint(t, endpoint.Config{
		Registrars: []string{addr}, ConnectTimeout: time.Second, MaxRequestRetransmit: -1,
		TLSConfig: testpki.ClientConfig(ca.Pool(), ca.MustIssue(t, "pe-1")),
	})
	ctx := ctxTimeout(t, waitLong)
	var ua x509.UnknownAuthorityError
	if _, err := pe.Register(ctx, "echo", testPE(0, 7)); !errors.As(err, &ua) {
		t.Fatalf("registration with an impostor registrar: %v, want x509.UnknownAuthorityError", err)
	}
	if _, err := pe.Resolve(ctx, "echo"); !errors.As(err, &ua) {
		t.Fatalf("resolution through an impostor registrar: %v, want x509.UnknownAuthorityError", err)
	}
	if got := poolIDs(r, "echo"); got != nil {
		t.Fatalf("the impostor got registration %v", got)
	}
}

// TestTLSSkipsSCTPRegistrars: with TLS configured, an SCTP registrar is
// not used, as SCTP has no TLS.
func TestTLSSkipsSCTPRegistrars(t *testing.T) {
	ca := testpki.New(t, "test CA")
	ep := newEndpoint(t, endpoint.Config{
		Registrars: []string{"sctp:127.0.0.1:9"}, ConnectTimeout: time.Second, MaxRequestRetransmit: -1,
		TLSConfig: testpki.ClientConfig(ca.Pool()),
	})
	if _, err := ep.Resolve(ctxTimeout(t, waitLong), "echo"); !errors.Is(err, mapping.ErrTLSOverSCTP) {
		t.Fatalf("resolution through an SCTP registrar with TLS configured: %v, want mapping.ErrTLSOverSCTP", err)
	}
}

// TestTLSRegistrarFromEnvironment: RSP_REGISTRARS takes the tls: form.
func TestTLSRegistrarFromEnvironment(t *testing.T) {
	ca := testpki.New(t, "test CA")
	_, addr := testutil.StartRegistrar(t, registrar.Config{
		TLSConfig: testpki.ServerConfig(ca.MustIssue(t, "registrar", "127.0.0.1"), nil),
	})
	t.Setenv(endpoint.EnvRegistrars, "tcp:127.0.0.1:1,"+addr)
	ep := newEndpoint(t, endpoint.Config{TLSConfig: testpki.ClientConfig(ca.Pool()), ConnectTimeout: time.Second})
	if _, err := ep.Resolve(ctxTimeout(t, waitLong), "nothing"); !errors.Is(err, endpoint.ErrUnknownPool) {
		t.Fatalf("resolution through $%s=%s: %v, want the registrar's answer ErrUnknownPool", endpoint.EnvRegistrars, addr, err)
	}
}
