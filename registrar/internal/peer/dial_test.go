package peer

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/enrp"
	"github.com/rsp-go/rsp/handlespace"
)

func infoOf(id asap.ServerID, port uint16) asap.ServerInformation {
	return asap.ServerInformation{Server: id, Transport: asap.Transport{Kind: asap.ParamSCTPTransport, Port: port, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}}
}

func dialIDs(d []asap.ServerInformation) []asap.ServerID {
	var ids []asap.ServerID
	for _, si := range d {
		ids = append(ids, si.Server)
	}
	return ids
}

// startWithPeer starts registrar 1's core at epoch, with room for
// maxPeers peers, and has it hear server 2's presence (port 9002).
func startWithPeer(t *testing.T, maxPeers int) *Core {
	t.Helper()
	cfg := fast(1)
	cfg.MaxPeers = maxPeers
	c := New(cfg, handlespace.New(handlespace.Config{}))
	c.Start(epoch)
	info := infoOf(2, 9002)
	if err := c.Handle(epoch, &enrp.Presence{Header: enrp.Header{Sender: 2}, Info: &info}); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPeerListServersAreDialed: a registrar asks a new peer for its peer
// list and asks to connect to the servers it names that are not yet
// peers, once each until MaxTimeLastHeard has passed, and no more than
// MaxPeers allows.
func TestPeerListServersAreDialed(t *testing.T) {
	c := startWithPeer(t, 4)
	now := epoch
	asked := false
	for _, o := range c.TakeOut() {
		if _, ok := o.Msg.(*enrp.ListRequest); ok && o.To == 2 {
			asked = true
		}
	}
	if !asked {
		t.Fatal("no ENRP_LIST_REQUEST to the new peer")
	}
	// Peer 3 becomes a peer on its own.
	if err := c.Handle(now, &enrp.Presence{Header: enrp.Header{Sender: 3}}); err != nil {
		t.Fatal(err)
	}
	c.TakeOut()
	list := func(ids ...asap.ServerID) *enrp.ListResponse {
		m := &enrp.ListResponse{Header: enrp.Header{Sender: 2, Receiver: 1}}
		for _, id := range ids {
			m.Servers = append(m.Servers, infoOf(id, 9000+uint16(id)))
		}
		m.Servers = append(m.Servers, asap.ServerInformation{Server: 9}) // no address: cannot be dialed
		return m
	}
	steps := []struct {
		name  string
		after time.Duration
		list  []asap.ServerID
		want  []asap.ServerID
	}{
		// 1 is this registrar, 2 and 3 are peers; 4 and 5 fill MaxPeers
		// (2 peers + 2 dials), 6 is over it.
		{"first list", 0, []asap.ServerID{1, 2, 3, 4, 5, 6}, []asap.ServerID{4, 5}},
		{"same list again", 10 * ms, []asap.ServerID{1, 2, 3, 4, 5, 6}, nil},
		{"dials expired", c.cfg.MaxTimeLastHeard, []asap.ServerID{4, 6}, []asap.ServerID{4, 6}},
	}
	for _, s := range steps {
		now = now.Add(s.after)
		if err := c.Handle(now, list(s.list...)); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if d := cmp.Diff(s.want, dialIDs(c.TakeDials())); d != "" {
			t.Errorf("%s: dials (-want +got):\n%s", s.name, d)
		}
	}
	// A dialed server that answers is a peer and no longer counts as a
	// dial: the limit now leaves room for none.
	if err := c.Handle(now, &enrp.Presence{Header: enrp.Header{Sender: 4}}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(10 * ms)
	if err := c.Handle(now, list(7)); err != nil {
		t.Fatal(err)
	}
	if d := dialIDs(c.TakeDials()); len(d) != 0 {
		t.Errorf("dials over MaxPeers: %v", d)
	}
	if got := c.Peers(); len(got) != 3 {
		t.Errorf("peers %v, want 2, 3, 4", got)
	}
}

// TestPeerListsAreAskedForAgain: a registrar asks each peer for its peer
// list when it first hears it and again every ListInterval, so that it
// learns of a registrar that joined the peer after that first answer (or
// whose address the peer did not know yet) and connects to it.
func TestPeerListsAreAskedForAgain(t *testing.T) {
	cfg := fast(1)
	c := New(cfg, handlespace.New(handlespace.Config{}))
	now := epoch
	c.Start(now)
	hello := infoOf(2, 9002)
	presence := &enrp.Presence{Header: enrp.Header{Sender: 2}, Info: &hello}
	listRequests := func() int {
		n := 0
		for _, o := range c.TakeOut() {
			if _, ok := o.Msg.(*enrp.ListRequest); ok && o.To == 2 {
				n++
			}
		}
		return n
	}
	if err := c.Handle(now, presence); err != nil {
		t.Fatal(err)
	}
	if n := listRequests(); n != 1 {
		t.Fatalf("%d list requests to a new peer, want 1", n)
	}
	// The first answer names nobody else.
	if err := c.Handle(now, &enrp.ListResponse{Header: enrp.Header{Sender: 2, Receiver: 1}, Servers: []asap.ServerInformation{hello}}); err != nil {
		t.Fatal(err)
	}
	asked := 0
	for end := now.Add(3 * c.cfg.ListInterval); now.Before(end); now = now.Add(50 * ms) {
		if err := c.Handle(now, presence); err != nil {
			t.Fatal(err)
		}
		if !c.Deadline().After(now) {
			c.Tick(now)
		}
		asked += listRequests()
	}
	if asked < 2 || asked > 4 {
		t.Fatalf("asked the peer for its list %d times in three list intervals, want about 3", asked)
	}
	// A later answer that names a new registrar has it dialed.
	if err := c.Handle(now, &enrp.ListResponse{Header: enrp.Header{Sender: 2, Receiver: 1}, Servers: []asap.ServerInformation{hello, infoOf(4, 9004)}}); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]asap.ServerID{4}, dialIDs(c.TakeDials())); d != "" {
		t.Errorf("dials (-want +got):\n%s", d)
	}
}

// TestMulticastPresenceIsDialed: a presence heard by multicast asks for a
// dial to its sender at the datagram's source address and the port of its
// server information, once until MaxTimeLastHeard, never for the
// registrar's own presences, a peer, a presence without a port, or past
// MaxPeers.
func TestMulticastPresenceIsDialed(t *testing.T) {
	c := startWithPeer(t, 2)
	now := epoch
	c.TakeOut()
	src := netip.MustParseAddr("172.31.255.7")
	heard := func(id asap.ServerID, port uint16) *enrp.Presence {
		m := &enrp.Presence{Header: enrp.Header{Sender: id}}
		if port != 0 {
			si := infoOf(id, port)
			m.Info = &si
		}
		return m
	}
	steps := []struct {
		name  string
		after time.Duration
		m     *enrp.Presence
		src   netip.Addr
		want  []asap.ServerInformation
	}{
		{"own presence", 0, heard(1, 9001), src, nil},
		{"a peer", 0, heard(2, 9002), src, nil},
		{"no port", 0, heard(3, 0), src, nil},
		{"unspecified source", 0, heard(3, 9003), netip.IPv4Unspecified(), nil},
		{"new registrar", 0, heard(3, 9003), netip.AddrFrom16(src.As16()), []asap.ServerInformation{{Server: 3, Transport: asap.Transport{Kind: asap.ParamSCTPTransport, Port: 9003, Addrs: []netip.Addr{src}}}}},
		{"heard again while dialing", 10 * ms, heard(3, 9003), src, nil},
		{"over MaxPeers", 0, heard(4, 9004), src, nil},
		{"dial expired", c.cfg.MaxTimeLastHeard, heard(3, 9003), src, []asap.ServerInformation{{Server: 3, Transport: asap.Transport{Kind: asap.ParamSCTPTransport, Port: 9003, Addrs: []netip.Addr{src}}}}},
	}
	for _, s := range steps {
		now = now.Add(s.after)
		asked := c.Discovered(now, s.m, s.src)
		got := c.TakeDials()
		if d := cmp.Diff(s.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
			t.Errorf("%s: dials (-want +got):\n%s", s.name, d)
		}
		if asked != (len(s.want) > 0) {
			t.Errorf("%s: Discovered = %v", s.name, asked)
		}
	}
}
