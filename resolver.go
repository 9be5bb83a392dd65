package rsp

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/policy"
)

// Server is a pool element as a pool user sees it: its identifier and the
// transport where it serves.
type Server struct {
	Handle    string
	ID        asap.PEID
	Transport asap.Transport
	Policy    policy.Policy
}

// Addr returns the server's first transport address as "host:port", the
// form net.Dial takes.
func (s Server) Addr() string {
	if len(s.Transport.Addrs) == 0 {
		return ""
	}
	return netip.AddrPortFrom(s.Transport.Addrs[0], s.Transport.Port).String()
}

// Resolver gives programs that keep their own sockets the service's name
// primitives: GET_PRIMARY_SERVER (Primary) and GET_NEXT_SERVER (Next).
// The zero value uses the environment's registrars.
type Resolver struct {
	// Registrars, Endpoint and RegistrarTLSConfig are as in Dialer.
	Registrars         []string
	Endpoint           *endpoint.Endpoint
	RegistrarTLSConfig *tls.Config
}

func (r *Resolver) endpoint() *endpoint.Endpoint {
	if r.Endpoint != nil {
		return r.Endpoint
	}
	return sharedEndpoint(r.Registrars, r.RegistrarTLSConfig)
}

// Primary returns the pool element the pool's policy selects first.
func (r *Resolver) Primary(ctx context.Context, handle string) (Server, error) {
	return r.pick(ctx, handle, 0)
}

// Next reports failed as unreachable to the registrar and returns another
// pool element of the pool: GET_NEXT_SERVER.
func (r *Resolver) Next(ctx context.Context, handle string, failed Server) (Server, error) {
	ep := r.endpoint()
	if failed.ID != 0 {
		if err := ep.ReportUnreachable(ctx, asap.PoolHandle(handle), failed.ID); err != nil {
			return Server{}, err
		}
	}
	return r.pick(ctx, handle, failed.ID)
}

func (r *Resolver) pick(ctx context.Context, handle string, skip asap.PEID) (Server, error) {
	res, err := r.endpoint().Resolve(ctx, asap.PoolHandle(handle))
	if err != nil {
		return Server{}, err
	}
	for _, pe := range res.PEs {
		if pe.ID != skip {
			return Server{Handle: handle, ID: pe.ID, Transport: pe.UserTransport, Policy: pe.Policy}, nil
		}
	}
	return Server{}, fmt.Errorf("%w in pool %q", ErrNoServer, handle)
}

// Registration is a pool element registered for a server that keeps its own
// socket (the NO_MAPPING transport mapping): rsp registers it and answers
// the registrar's keep-alives; the server's traffic does not pass through
// rsp.
type Registration struct {
	reg *endpoint.Registration
}

// Register registers the transport address endpoint, written
// "tcp:host:port", "udp:host:port", "sctp:host:port" (or "host:port" for
// TCP), in pool handle with policy pol (zero: round robin): REGISTER of a
// NO_MAPPING endpoint. The registrars are the environment's.
func Register(ctx context.Context, handle, endpoint string, pol policy.Policy) (*Registration, error) {
	var lc ListenConfig
	return lc.Register(ctx, handle, endpoint, pol)
}

// Register is as the package's Register, with lc's registrars or endpoint.
func (lc *ListenConfig) Register(ctx context.Context, handle, address string, pol policy.Policy) (*Registration, error) {
	h, err := poolHandle("pool:" + handle)
	if err != nil {
		return nil, err
	}
	t, err := ParseTransport(address)
	if err != nil {
		return nil, err
	}
	if pol.Type == 0 {
		pol.Type = policy.RoundRobin
	}
	ep := lc.Endpoint
	if ep == nil {
		ep = sharedEndpoint(lc.Registrars, lc.RegistrarTLSConfig)
	}
	reg, err := ep.Register(ctx, h, asap.PoolElement{UserTransport: t, Policy: pol})
	if err != nil {
		return nil, fmt.Errorf("rsp: registering %s in pool %q: %w", address, handle, err)
	}
	return &Registration{reg: reg}, nil
}

// ID returns the registration's pool element identifier, the draft's opaque
// instance id.
func (r *Registration) ID() asap.PEID { return r.reg.ID() }

// Update re-registers with new policy values (such as a load).
func (r *Registration) Update(ctx context.Context, pol policy.Policy) error {
	return r.reg.Update(ctx, pol)
}

// Close deregisters: DEREGISTER.
func (r *Registration) Close(ctx context.Context) error { return r.reg.Close(ctx) }

// ParseTransport parses "proto:host:port" (proto tcp, udp, udplite, sctp or
// dccp; tcp when left out; see mapping.SplitAddress) into a transport
// parameter. SCTP takes several hosts separated by commas.
func ParseTransport(s string) (asap.Transport, error) {
	kinds := map[string]asap.ParamType{
		"tcp": asap.ParamTCPTransport, "tcp4": asap.ParamTCPTransport, "tcp6": asap.ParamTCPTransport,
		"udp": asap.ParamUDPTransport, "udp4": asap.ParamUDPTransport, "udp6": asap.ParamUDPTransport, "udplite": asap.ParamUDPLiteTransport,
		"sctp": asap.ParamSCTPTransport, "sctp4": asap.ParamSCTPTransport, "sctp6": asap.ParamSCTPTransport, "dccp": asap.ParamDCCPTransport,
	}
	network, rest, _ := mapping.SplitAddress(s)
	kind, ok := kinds[network]
	if !ok {
		return asap.Transport{}, fmt.Errorf("rsp: transport address %q: network %s is not a transport of a registration", s, network)
	}
	t := asap.Transport{Kind: kind}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		return t, fmt.Errorf("rsp: transport address %q: %w", s, err)
	}
	p, err := net.LookupPort("tcp", port)
	if err != nil {
		return t, fmt.Errorf("rsp: transport address %q: %w", s, err)
	}
	t.Port = uint16(p)
	hosts := []string{host}
	if kind == asap.ParamSCTPTransport {
		hosts = strings.Split(host, ",")
	}
	for _, h := range hosts {
		a, err := netip.ParseAddr(h)
		if err != nil {
			return t, fmt.Errorf("rsp: transport address %q: %w", s, err)
		}
		t.Addrs = append(t.Addrs, a.Unmap())
	}
	return t, nil
}

// RoundRobinPolicy is the default policy, spelled out.
var RoundRobinPolicy = policy.Policy{Type: policy.RoundRobin}
