package mapping

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rsp-go/rsp/internal/testpki"
)

// tlsPair listens with server and dials with client over TLS, and returns
// both ends or the dial's error.
func tlsPair(t *testing.T, lc *ListenConfig, d *Dialer) (server, client Conn, dialErr error) {
	t.Helper()
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted := make(chan Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, dialErr = d.DialContext(ctx, "tcp", l.Addr().String())
	if dialErr != nil {
		return nil, nil, dialErr
	}
	t.Cleanup(func() { client.Close() })
	select {
	case server = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted")
	}
	t.Cleanup(func() { server.Close() })
	return server, client, nil
}

func TestTLSMessagesAndIdentity(t *testing.T) {
	ca := testpki.New(t, "test CA")
	srv := ca.MustIssue(t, "registrar", "127.0.0.1")
	cli := ca.MustIssue(t, "pe-1", "spiffe://example/pe-1")
	lc := &ListenConfig{TLSConfig: testpki.ServerConfig(srv, ca.Pool())}
	d := &Dialer{TLSConfig: testpki.ClientConfig(ca.Pool(), cli)}
	s, c, err := tlsPair(t, lc, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMsg([]byte("hello"), PPIDASAP); err != nil {
		t.Fatal(err)
	}
	ms := []Msg{{PPID: PPIDENRP, Buf: []byte("one")}, {PPID: PPIDASAP, Buf: []byte("two")}}
	if n, err := c.(BatchConn).WriteBatch(ms); n != 2 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	var got []string
	var ppids []uint32
	b := make([]byte, 64)
	for range 3 {
		n, ppid, err := s.ReadMsg(b)
		if err != nil {
			t.Fatal(err)
		}
		got, ppids = append(got, string(b[:n])), append(ppids, ppid)
	}
	if diff := cmp.Diff([]string{"hello", "one", "two"}, got); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]uint32{PPIDASAP, PPIDENRP, PPIDASAP}, ppids); diff != "" {
		t.Errorf("PPIDs (-want +got):\n%s", diff)
	}

	st, ok := TLSConnectionState(s)
	if !ok {
		t.Fatal("server side: no TLS state")
	}
	if st.Version != tls.VersionTLS13 {
		t.Errorf("version %x, want TLS 1.3", st.Version)
	}
	if len(st.VerifiedChains) == 0 || st.VerifiedChains[0][0].Subject.CommonName != "pe-1" {
		t.Errorf("server did not verify the client's certificate: %+v", st.PeerCertificates)
	}
	if st, ok := TLSConnectionState(c); !ok || st.PeerCertificates[0].Subject.CommonName != "registrar" {
		t.Errorf("client side: TLS state %v, %v", ok, st.PeerCertificates)
	}
	a, _ := Pipe()
	defer a.Close()
	if _, ok := TLSConnectionState(a); ok {
		t.Error("a plain connection reports TLS state")
	}
}

func TestTLSClientRefusesUnknownServer(t *testing.T) {
	ca, other := testpki.New(t, "test CA"), testpki.New(t, "other CA")
	lc := &ListenConfig{TLSConfig: testpki.ServerConfig(other.MustIssue(t, "impostor", "127.0.0.1"), nil)}
	d := &Dialer{TLSConfig: testpki.ClientConfig(ca.Pool())}
	_, _, err := tlsPair(t, lc, d)
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Fatalf("dial to a server of an unknown CA: %v, want x509.UnknownAuthorityError", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "dial" {
		t.Errorf("error %v is not a dial *net.OpError", err)
	}

	// The certificate of the right CA for another name fails too.
	lc = &ListenConfig{TLSConfig: testpki.ServerConfig(ca.MustIssue(t, "elsewhere", "10.1.1.1"), nil)}
	_, _, err = tlsPair(t, lc, d)
	var he x509.HostnameError
	if !errors.As(err, &he) {
		t.Fatalf("dial to a server certified for another address: %v, want x509.HostnameError", err)
	}
}

func TestTLSServerRefusesClientWithoutCertificate(t *testing.T) {
	ca := testpki.New(t, "test CA")
	var mu sync.Mutex
	var failed []error
	lc := &ListenConfig{
		TLSConfig: testpki.ServerConfig(ca.MustIssue(t, "registrar", "127.0.0.1"), ca.Pool()),
		HandshakeError: func(_ net.Addr, err error) {
			mu.Lock()
			failed = append(failed, err)
			mu.Unlock()
		},
	}
	l, err := lc.Listen(context.Background(), "tls", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acceptedc := make(chan Conn, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			acceptedc <- c
		}
	}()
	for _, cfg := range []*tls.Config{
		testpki.ClientConfig(ca.Pool()), // no certificate
		testpki.ClientConfig(ca.Pool(), testpki.New(t, "other").MustIssue(t, "stranger")),
	} {
		d := &Dialer{TLSConfig: cfg}
		c, err := d.DialContext(context.Background(), "tcp", l.Addr().String())
		if err == nil {
			// In TLS 1.3 the client learns of the refusal on its
			// first read.
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _, err = c.ReadMsg(make([]byte, 16))
			c.Close()
		}
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("client refused by the server: %v, want a TLS alert", err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(failed)
		mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("HandshakeError told of %d failures, want 2", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case c := <-acceptedc:
		t.Errorf("Accept returned a refused client %v", c.RemoteAddr())
	default:
	}
}

func TestTLSSilentPeerHoldsUpNoOne(t *testing.T) {
	ca := testpki.New(t, "test CA")
	lc := &ListenConfig{
		TLSConfig:        testpki.ServerConfig(ca.MustIssue(t, "registrar", "127.0.0.1"), nil),
		HandshakeTimeout: 200 * time.Millisecond,
	}
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	silent, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	accepted := make(chan Conn, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			accepted <- c
		}
	}()
	d := &Dialer{TLSConfig: testpki.ClientConfig(ca.Pool())}
	c, err := d.DialContext(context.Background(), "tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case s := <-accepted:
		s.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("a silent connection held up Accept")
	}
	// The silent one is closed when its handshake times out.
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("a connection that never started its handshake was kept open")
	}
}

func TestTLSNetworkNeedsConfig(t *testing.T) {
	var lc ListenConfig
	_, err := lc.Listen(context.Background(), "tls", "127.0.0.1:0")
	if !errors.Is(err, ErrNoTLSConfig) {
		t.Fatalf("Listen(tls) without a TLS config: %v, want ErrNoTLSConfig", err)
	}
	// "tls" on a dialer without a config verifies with the system's
	// roots, which do not know a test CA.
	ca := testpki.New(t, "test CA")
	slc := &ListenConfig{TLSConfig: testpki.ServerConfig(ca.MustIssue(t, "registrar", "127.0.0.1"), nil)}
	l, err := slc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	var d Dialer
	if _, err := d.DialContext(context.Background(), "tls", l.Addr().String()); err == nil {
		t.Fatal("tls dial with the system's roots accepted a test CA's certificate")
	}
	// Plain TCP to a TLS listener does not get through either.
	c, err := d.DialContext(context.Background(), "tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.WriteMsg([]byte("plain"), PPIDASAP)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadMsg(make([]byte, 16)); err == nil {
		t.Fatal("a plain TCP client read a message from a TLS listener")
	}
}

func TestTLSConfigRefusesSCTP(t *testing.T) {
	d := Dialer{TLSConfig: &tls.Config{}}
	if _, err := d.DialContext(context.Background(), "sctp", "127.0.0.1:9"); !errors.Is(err, ErrTLSOverSCTP) {
		t.Errorf("dial sctp with a TLS config: %v, want ErrTLSOverSCTP", err)
	}
	lc := ListenConfig{TLSConfig: &tls.Config{}}
	if _, err := lc.Listen(context.Background(), "sctp", "127.0.0.1:0"); !errors.Is(err, ErrTLSOverSCTP) {
		t.Errorf("listen sctp with a TLS config: %v, want ErrTLSOverSCTP", err)
	}
}

// TestTLSCloseDoesNotWaitForPeer: closing a TLS connection whose peer
// reads nothing returns at once; it does not wait to send TLS's
// close_notify into a full send buffer.
func TestTLSCloseDoesNotWaitForPeer(t *testing.T) {
	ca := testpki.New(t, "test CA")
	lc := &ListenConfig{TLSConfig: testpki.ServerConfig(ca.MustIssue(t, "registrar", "127.0.0.1"), nil), Config: Config{HeartbeatInterval: -1}}
	d := &Dialer{TLSConfig: testpki.ClientConfig(ca.Pool()), Config: Config{HeartbeatInterval: -1}}
	s, c, err := tlsPair(t, lc, d)
	if err != nil {
		t.Fatal(err)
	}
	_ = c // reads nothing
	// Fill the socket buffers until a write runs out of time.
	big := make([]byte, 1<<20)
	s.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	for {
		if err := s.WriteMsg(big, PPIDASAP); err != nil {
			break
		}
	}
	s.SetWriteDeadline(time.Time{})
	start := time.Now()
	s.Close()
	if el := time.Since(start); el > time.Second {
		t.Fatalf("Close took %v with a peer that does not read", el)
	}
}
