package rsp

import (
	"crypto/tls"
	"strings"
	"sync"

	"github.com/rsp-go/rsp/asap/endpoint"
)

var shared struct {
	sync.Mutex
	endpoints map[sharedKey]*endpoint.Endpoint
}

type sharedKey struct {
	registrars string
	tls        *tls.Config
}

// sharedEndpoint returns the process's ASAP endpoint for a list of
// registrars, creating it on first use, so that all listeners and dialers
// of a program share one registrar connection and one resolution cache.
// Those with another TLS configuration for the registrars get an endpoint
// of their own.
func sharedEndpoint(registrars []string, tlsConfig *tls.Config) *endpoint.Endpoint {
	key := sharedKey{strings.Join(registrars, ","), tlsConfig}
	shared.Lock()
	defer shared.Unlock()
	if ep, ok := shared.endpoints[key]; ok {
		return ep
	}
	if shared.endpoints == nil {
		shared.endpoints = make(map[sharedKey]*endpoint.Endpoint)
	}
	ep := endpoint.New(endpoint.Config{Registrars: registrars, TLSConfig: tlsConfig})
	shared.endpoints[key] = ep
	return ep
}
