package endpoint

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/internal/mcast"
	"github.com/rsp-go/rsp/internal/sctp"
)

// asapPort is the well-known ASAP port, where a registrar that announces no
// transport takes ASAP over SCTP.
const asapPort = 3863

// listenAnnounces joins the announce group when announces are on. A group
// that cannot be joined leaves the endpoint with its configured registrars;
// the reason is logged and reported by a hunt that finds none.
func (ep *Endpoint) listenAnnounces() {
	if ep.cfg.Announces == "" {
		return
	}
	c, err := mcast.Listen(ep.cfg.Announces, ep.cfg.AnnounceInterface)
	if err != nil {
		ep.annErr = err
		ep.cfg.Logger.Warn("cannot hear registrar announces", "group", ep.cfg.Announces, "err", err)
		return
	}
	ep.annConn = c
	ep.wg.Add(1)
	go ep.readAnnounces(c)
}

func (ep *Endpoint) readAnnounces(c *net.UDPConn) {
	defer ep.wg.Done()
	mcast.Receive(c, ep.done, nil, func(b []byte, src netip.AddrPort) {
		var m asap.ServerAnnounce
		if err := m.UnmarshalBinary(b); err != nil {
			ep.cfg.Logger.Debug("bad announce", "from", src, "err", err)
			return
		}
		ep.heardAnnounce(&m, src.Addr().Unmap(), time.Now())
	})
}

// heardAnnounce adds the registrar an announce describes to the hunt list
// for AnnounceTimeout: each TCP or SCTP transport it lists (unspecified
// addresses standing for the source address), or else the source address
// and the ASAP port over SCTP.
func (ep *Endpoint) heardAnnounce(m *asap.ServerAnnounce, src netip.Addr, now time.Time) {
	var addrs []string
	add := func(network string, a netip.Addr, port uint16) {
		if a.IsUnspecified() {
			a = src
		}
		if network == "sctp" && !sctp.Supported() {
			return
		}
		addrs = append(addrs, network+":"+netip.AddrPortFrom(a, port).String())
	}
	for _, t := range m.Transports {
		network := "tcp"
		if t.Kind == asap.ParamSCTPTransport {
			network = "sctp"
		}
		for _, a := range t.Addrs {
			add(network, a, t.Port)
		}
	}
	if len(m.Transports) == 0 {
		add("sctp", src, asapPort)
	}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	fresh := false
	for _, a := range addrs {
		if _, ok := ep.announced[a]; !ok {
			fresh = true
			ep.cfg.Logger.Debug("registrar announced", "id", strconv.FormatUint(uint64(m.Server), 16), "addr", a)
		}
		ep.announced[a] = now.Add(ep.cfg.AnnounceTimeout)
	}
	if fresh {
		close(ep.heard)
		ep.heard = make(chan struct{})
	}
}

// Announced returns the registrars heard announcing whose announce is still
// valid, as "network:host:port".
func (ep *Endpoint) Announced() []string {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return ep.announcedLocked(time.Now())
}

func (ep *Endpoint) announcedLocked(now time.Time) []string {
	var list []string
	for a, until := range ep.announced {
		if now.After(until) {
			delete(ep.announced, a)
			continue
		}
		list = append(list, a)
	}
	return list
}

// huntList returns the registrars to hunt among: those announced, in random
// order, then the configured ones, in random order. With announces on and
// none configured or heard yet, it waits up to ConnectTimeout for one.
func (ep *Endpoint) huntList(ctx context.Context) ([]string, error) {
	shuffle := func(l []string) {
		rand.Shuffle(len(l), func(i, j int) { l[i], l[j] = l[j], l[i] })
	}
	var wait *time.Timer
	for {
		ep.mu.Lock()
		list := ep.announcedLocked(time.Now())
		heard := ep.heard
		ep.mu.Unlock()
		shuffle(list)
		conf := append([]string(nil), ep.cfg.Registrars...)
		shuffle(conf)
		for _, a := range conf {
			network, address := splitRegistrar(a)
			if !containsString(list, network+":"+address) {
				list = append(list, a)
			}
		}
		if len(list) > 0 || ep.annConn == nil {
			if len(list) == 0 {
				if ep.annErr != nil {
					return nil, fmt.Errorf("%w: none configured, and announces cannot be heard: %w", ErrNoRegistrar, ep.annErr)
				}
				return nil, fmt.Errorf("%w: none configured", ErrNoRegistrar)
			}
			return list, nil
		}
		if wait == nil {
			wait = time.NewTimer(ep.cfg.ConnectTimeout)
			defer wait.Stop()
		}
		select {
		case <-heard:
		case <-wait.C:
			return nil, fmt.Errorf("%w: none configured, and none announced in %s within %v", ErrNoRegistrar, ep.cfg.Announces, ep.cfg.ConnectTimeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ep.done:
			return nil, ErrClosed
		}
	}
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
