package rsp

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/rsp-go/rsp/asap"
)

// ErrNotPoolAddress is returned for an address that names no pool.
var ErrNotPoolAddress = errors.New("rsp: address names no pool")

// poolHandle extracts the pool handle from a dial or listen address:
// "pool:NAME" names pool NAME; so does "NAME:PORT" and plain "NAME", which
// is what net/http and gRPC pass to a dialer for the URL host NAME.
func poolHandle(address string) (asap.PoolHandle, error) {
	h := address
	if rest, ok := strings.CutPrefix(address, "pool:"); ok {
		h = rest
	} else if host, _, err := net.SplitHostPort(address); err == nil {
		h = host
	}
	if h == "" {
		return "", fmt.Errorf("%w: %q", ErrNotPoolAddress, address)
	}
	if len(h) > asap.MaxPoolHandleLen {
		return "", fmt.Errorf("%w: pool handle %q is longer than %d bytes", ErrNotPoolAddress, h, asap.MaxPoolHandleLen)
	}
	return asap.PoolHandle(h), nil
}
