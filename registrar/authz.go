package registrar

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
)

// Op is a request that Config.Authorize decides on.
type Op uint8

// The requests Config.Authorize decides on.
const (
	// OpRegister: a registration of a pool element that is not
	// registered over the requesting connection.
	OpRegister Op = iota + 1
	// OpReregister: a registration of a pool element that the requesting
	// connection registered (an update of its policy, load or transport).
	OpReregister
	// OpDeregister: a deregistration.
	OpDeregister
)

var opNames = map[Op]string{OpRegister: "register", OpReregister: "reregister", OpDeregister: "deregister"}

// String returns "register", "reregister" or "deregister".
func (o Op) String() string {
	if s, ok := opNames[o]; ok {
		return s
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// ParseOp parses the name String returns.
func ParseOp(s string) (Op, error) {
	for o, n := range opNames {
		if n == s {
			return o, nil
		}
	}
	return 0, fmt.Errorf("registrar: unknown operation %q (want register, reregister or deregister)", s)
}

// Peer is the sender of a request.
type Peer struct {
	// Addr is the peer's transport address.
	Addr net.Addr
	// Certificate is the peer's TLS client certificate, verified by the
	// TLS configuration's ClientCAs; nil when the connection has no TLS,
	// or the peer sent no certificate or one that was not verified.
	Certificate *x509.Certificate
}

// Identities returns the names the peer's certificate proves: its subject
// common name, then its SAN DNS names and URIs. It is empty without a
// verified certificate.
func (p Peer) Identities() []string {
	c := p.Certificate
	if c == nil {
		return nil
	}
	var ids []string
	if c.Subject.CommonName != "" {
		ids = append(ids, c.Subject.CommonName)
	}
	ids = append(ids, c.DNSNames...)
	for _, u := range c.URIs {
		ids = append(ids, u.String())
	}
	return ids
}

// peerFor describes the peer of connection c.
func peerFor(c mapping.Conn) Peer {
	p := Peer{Addr: c.RemoteAddr()}
	if st, ok := mapping.TLSConnectionState(c); ok {
		p.Certificate = verifiedLeaf(st)
	}
	return p
}

func verifiedLeaf(st tls.ConnectionState) *x509.Certificate {
	if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return nil
	}
	return st.VerifiedChains[0][0]
}

// Rule allows the peers with an identity (see Peer.Identities) to make
// requests in some pools. A pattern is a name, matched exactly, or a
// prefix followed by "*", matching every name that starts with the prefix
// ("*" alone matches every name).
type Rule struct {
	// Identity is a pattern of the identities this rule allows. It never
	// matches a peer without a verified certificate.
	Identity string
	// Pools is a pattern of the pool handles the rule allows.
	Pools string
	// Ops are the requests allowed; empty means all of them.
	Ops []Op
}

func matches(pattern, s string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(s, prefix)
	}
	return pattern == s
}

// allows reports whether the rule allows op in pool to identity id.
func (r Rule) allows(id string, op Op, pool asap.PoolHandle) bool {
	if !matches(r.Identity, id) || !matches(r.Pools, string(pool)) {
		return false
	}
	if len(r.Ops) == 0 {
		return true
	}
	for _, o := range r.Ops {
		if o == op {
			return true
		}
	}
	return false
}

// String returns the rule in the form ParseRule reads.
func (r Rule) String() string {
	s := r.Identity + "=" + r.Pools
	for i, o := range r.Ops {
		if i == 0 {
			s += ":"
		} else {
			s += ","
		}
		s += o.String()
	}
	return s
}

// ParseRule parses "IDENTITY=POOLS" or "IDENTITY=POOLS:OP,OP...", such as
// "pe-1.example=echo", "spiffe://example/web=web-*" or
// "admin=*:deregister". The identity ends at the last "=".
func ParseRule(s string) (Rule, error) {
	i := strings.LastIndexByte(s, '=')
	if i <= 0 || i == len(s)-1 {
		return Rule{}, fmt.Errorf("registrar: rule %q: want IDENTITY=POOLS[:OP,...]", s)
	}
	r := Rule{Identity: s[:i], Pools: s[i+1:]}
	if pools, ops, ok := strings.Cut(r.Pools, ":"); ok {
		r.Pools = pools
		for _, o := range strings.Split(ops, ",") {
			op, err := ParseOp(o)
			if err != nil {
				return Rule{}, fmt.Errorf("registrar: rule %q: %w", s, err)
			}
			r.Ops = append(r.Ops, op)
		}
	}
	if r.Pools == "" {
		return Rule{}, fmt.Errorf("registrar: rule %q: no pools", s)
	}
	return r, nil
}

// Rules is a table of rules: a request is allowed when one of them allows
// it to one of the peer's identities, and refused otherwise. Its
// Authorize method serves as Config.Authorize.
type Rules []Rule

// Authorize reports whether a rule allows op in pool to one of p's
// identities.
func (rs Rules) Authorize(p Peer, op Op, pool asap.PoolHandle) bool {
	for _, id := range p.Identities() {
		for _, r := range rs {
			if r.allows(id, op, pool) {
				return true
			}
		}
	}
	return false
}

// authorized applies Config.Authorize to a request of this connection's
// peer, logging a refusal. Reader goroutine only.
func (pc *peerConn) authorized(op Op, pool asap.PoolHandle) bool {
	authz := pc.r.cfg.Authorize
	if authz == nil {
		return true
	}
	if pc.peerInfo == nil {
		p := peerFor(pc.c)
		pc.peerInfo = &p
	}
	if authz(*pc.peerInfo, op, pool) {
		return true
	}
	pc.r.cfg.Logger.Warn("request refused by the authorisation rule", "peer", pc.c.RemoteAddr(),
		"identities", pc.peerInfo.Identities(), "op", op, "pool", pool)
	return false
}

// Listen opens an ASAP listener for r on network and address, as the
// package's Listen does, with r's TLS configuration: when Config.TLSConfig
// is set, connections over TCP use TLS, and failed handshakes are logged.
// The network "tls" ("tls4", "tls6") needs Config.TLSConfig. An SCTP
// listener has no TLS; with Config.TLSConfig set, opening one logs a
// warning.
func (r *Registrar) Listen(ctx context.Context, network, address string) (mapping.Listener, error) {
	if r.cfg.TLSConfig == nil {
		if _, ok := strings.CutPrefix(network, "tls"); !ok {
			return Listen(ctx, network, address)
		}
	}
	lc := mapping.ListenConfig{
		TLSConfig:        r.cfg.TLSConfig,
		HandshakeTimeout: r.cfg.HandshakeTimeout,
		HandshakeError: func(remote net.Addr, err error) {
			r.cfg.Logger.Warn("TLS handshake failed", "peer", remote, "err", err)
		},
	}
	switch network {
	case "sctp", "sctp4", "sctp6":
		r.cfg.Logger.Warn("serving ASAP over SCTP without TLS: peers are not authenticated and messages not protected; use IPsec or a private network", "address", address)
		return Listen(ctx, network, address)
	}
	return lc.Listen(ctx, network, address)
}

// authorizedRegistration applies Config.Authorize to a registration of
// pool element id in pool: a re-registration when this connection
// registered the element, else a registration. Reader goroutine only.
func (pc *peerConn) authorizedRegistration(pool asap.PoolHandle, id asap.PEID) bool {
	if pc.r.cfg.Authorize == nil {
		return true
	}
	op := OpRegister
	pc.r.mu.Lock()
	if st := pc.r.ownedLocked(peKey{pool, id}); st != nil && st.conn == pc {
		op = OpReregister
	}
	pc.r.mu.Unlock()
	return pc.authorized(op, pool)
}

// rejectedSecurity is the cause of a request Config.Authorize refused.
var rejectedSecurity = []asap.Cause{{Code: asap.CauseRejectedSecurity}}
