package rsp_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/internal/testpki"
	"github.com/rsp-go/rsp/registrar"
)

// A pooled HTTPS server behind a registrar with mutual TLS that lets only
// the identity "hello-1" register in pool "hello", and a client that
// verifies both the registrar and the element. A real deployment loads its
// certificates with tls.LoadX509KeyPair and its CA with x509.CertPool
// instead of making them here.
func Example_https() {
	ca, _ := testpki.NewCA("example CA")
	regCert, _ := ca.Issue("registrar", "127.0.0.1")
	peCert, _ := ca.Issue("hello-1", "hello") // the DNS name is the pool handle
	puCert, _ := ca.Issue("client-1")

	r := registrar.New(registrar.Config{
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{regCert},
			ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(),
		},
		Authorize: registrar.Rules{{Identity: "hello-1", Pools: "hello"}}.Authorize,
	})
	defer r.Close()
	rl, err := r.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go r.Serve(rl)
	registrars := []string{"tls:" + rl.Addr().String()}

	lc := rsp.ListenConfig{
		Registrars: registrars, LocalAddr: "127.0.0.1:0",
		RegistrarTLSConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{peCert}},
		TLSConfig:          &tls.Config{Certificates: []tls.Certificate{peCert}},
	}
	l, err := lc.Listen(context.Background(), "tcp", "pool:hello")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello over TLS")
	})}
	go srv.Serve(l)
	defer srv.Close()

	d := &rsp.Dialer{
		Registrars:         registrars,
		RegistrarTLSConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{puCert}},
		TLSConfig:          &tls.Config{RootCAs: ca.Pool()},
	}
	client := &http.Client{Transport: &http.Transport{DialTLSContext: d.DialTLSContext}}
	resp, err := client.Get("https://hello/")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	fmt.Println(string(b), resp.TLS.PeerCertificates[0].Subject.CommonName)
	// Output: hello over TLS hello-1
}
