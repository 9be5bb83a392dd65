package rsp

import (
	"strings"
	"sync"

	"github.com/rsp-go/rsp/asap/endpoint"
)

var shared struct {
	sync.Mutex
	endpoints map[string]*endpoint.Endpoint
}

// sharedEndpoint returns the process's ASAP endpoint for a list of
// registrars, creating it on first use, so that all listeners and dialers
// of a program share one registrar connection and one resolution cache.
func sharedEndpoint(registrars []string) *endpoint.Endpoint {
	key := strings.Join(registrars, ",")
	shared.Lock()
	defer shared.Unlock()
	if ep, ok := shared.endpoints[key]; ok {
		return ep
	}
	if shared.endpoints == nil {
		shared.endpoints = make(map[string]*endpoint.Endpoint)
	}
	ep := endpoint.New(endpoint.Config{Registrars: registrars})
	shared.endpoints[key] = ep
	return ep
}
