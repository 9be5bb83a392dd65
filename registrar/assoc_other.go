//go:build !linux

package registrar

import "github.com/rsp-go/rsp/mapping"

// listenSCTP: association sockets need Linux's SCTP.
func listenSCTP(network, address string) (mapping.Listener, bool, error) { return nil, false, nil }

// serveOwn: there are no association sockets to serve.
func (r *Registrar) serveOwn(mapping.Listener) (bool, error) { return false, nil }
