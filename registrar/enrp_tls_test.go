package registrar_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/internal/testpki"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/registrar"
)

// peerTLS is a registrar's ENRP TLS configuration, for listening and
// dialing alike: its certificate (valid for 127.0.0.1), mutual TLS, and the
// CA that verifies its peers.
func peerTLS(t *testing.T, ca *testpki.CA, cn string) *tls.Config {
	c := testpki.ServerConfig(ca.MustIssue(t, cn, "127.0.0.1"), ca.Pool())
	c.RootCAs = ca.Pool()
	return c
}

type syncLog struct {
	mu sync.Mutex
	sb strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sb.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sb.String()
}

func TestENRPOverTLS(t *testing.T) {
	ca, other := testpki.New(t, "test CA"), testpki.New(t, "other CA")
	enrpAddr := testutil.FreeAddr(t)
	var log1 syncLog
	enrpCfg := fastENRP
	enrpCfg.Listen = []string{"tcp:" + enrpAddr}
	enrpCfg.TLSConfig = peerTLS(t, ca, "reg-1")
	enrpCfg.AuthorizePeer = registrar.PeerIdentities("reg-*")
	r1, asap1 := testutil.StartRegistrar(t, registrar.Config{ID: 1, ENRP: enrpCfg, Logger: slog.New(slog.NewTextHandler(&log1, nil))})
	testutil.WaitFor(t, 5*time.Second, "the ENRP listener", func() bool { return len(r1.ENRPAddrs()) > 0 })

	startPeer := func(id asap.ServerID, cfg *tls.Config) *registrar.Registrar {
		e := fastENRP
		e.Peers = []string{"tcp:" + enrpAddr}
		e.TLSConfig = cfg
		r, _ := testutil.StartRegistrar(t, registrar.Config{ID: id, ENRP: e, Logger: testutil.Logger(t, "peer")})
		return r
	}
	r2 := startPeer(2, peerTLS(t, ca, "reg-2"))
	testutil.WaitFor(t, 10*time.Second, "the registrars to know each other over TLS", func() bool {
		return slices.Equal(r1.Peers(), []asap.ServerID{2}) && slices.Equal(r2.Peers(), []asap.ServerID{1})
	})

	// A registration at r1 reaches r2 over the TLS link.
	pe := peEndpoint(t, nil, asap1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg, err := pe.Register(ctx, "echo", elem(7))
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "the registration at r2", func() bool { return home(r2, "echo", reg.ID()) == 1 })

	// An identity of the CA that is not a registrar's, a certificate of
	// another CA, and no TLS at all: none becomes a peer.
	startPeer(3, peerTLS(t, ca, "pe-1"))
	startPeer(4, peerTLS(t, other, "reg-4"))
	startPeer(5, nil)
	testutil.WaitFor(t, 5*time.Second, "the refusals in r1's log", func() bool {
		s := log1.String()
		return strings.Contains(s, "ENRP peer refused by the authorisation rule") && strings.Contains(s, "identities=[pe-1") &&
			strings.Contains(s, "ENRP TLS handshake failed")
	})
	time.Sleep(300 * time.Millisecond) // several heartbeats
	if got := r1.Peers(); !slices.Equal(got, []asap.ServerID{2}) {
		t.Fatalf("r1's peers: %v, want only registrar 2", got)
	}
}
