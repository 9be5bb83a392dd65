package registrar_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"

	"github.com/rsp-go/rsp/registrar"
)

// A rule table, as rspregistrar's -allow flags give it: echo servers may
// do anything in pool echo, web servers may register (but not deregister
// others' elements) in the web pools, and an operator may deregister
// anywhere.
func ExampleRules() {
	var rules registrar.Rules
	for _, s := range []string{"echo-1=echo", "spiffe://example/web=web-*:register,reregister", "ops=*:deregister"} {
		r, err := registrar.ParseRule(s)
		if err != nil {
			panic(err)
		}
		rules = append(rules, r)
	}
	cfg := registrar.Config{Authorize: rules.Authorize} // with TLSConfig for mutual TLS
	_ = cfg

	// Authorize sees the peer's verified client certificate.
	echo := registrar.Peer{Certificate: &x509.Certificate{Subject: pkix.Name{CommonName: "echo-1"}}}
	ops := registrar.Peer{Certificate: &x509.Certificate{Subject: pkix.Name{CommonName: "ops"}}}
	anonymous := registrar.Peer{}
	fmt.Println(rules.Authorize(echo, registrar.OpRegister, "echo"))
	fmt.Println(rules.Authorize(echo, registrar.OpRegister, "web-1"))
	fmt.Println(rules.Authorize(ops, registrar.OpDeregister, "web-1"))
	fmt.Println(rules.Authorize(ops, registrar.OpRegister, "web-1"))
	fmt.Println(rules.Authorize(anonymous, registrar.OpRegister, "echo"))
	// Output:
	// true
	// false
	// true
	// false
	// false
}
