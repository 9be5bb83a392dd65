package sctp

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// rawStatus builds a struct sctp_status as the kernel writes it.
func rawStatus(primary []byte) []byte {
	ne := binary.NativeEndian
	b := make([]byte, offStatusPrimary, sizeofStatus)
	ne.PutUint32(b[0:], 7)
	ne.PutUint32(b[4:], AssocEstablished)
	ne.PutUint32(b[8:], 212992)
	ne.PutUint16(b[12:], 3)
	ne.PutUint16(b[14:], 1)
	ne.PutUint16(b[16:], 10)
	ne.PutUint16(b[18:], 12)
	ne.PutUint32(b[20:], 65484)
	return append(b, primary...)
}

// rawPaddrinfo builds a struct sctp_paddrinfo for an IPv4 or IPv6 peer.
func rawPaddrinfo(ap netip.AddrPort, state PathState, cwnd, srttMS, rtoMS, mtu uint32) []byte {
	ne := binary.NativeEndian
	b := make([]byte, sizeofPaddrinfo)
	ne.PutUint32(b[0:], 7)
	sa := b[4:]
	binary.BigEndian.PutUint16(sa[2:], ap.Port())
	if ap.Addr().Is4() {
		ne.PutUint16(sa, afInet)
		a := ap.Addr().As4()
		copy(sa[4:], a[:])
	} else {
		ne.PutUint16(sa, afInet6)
		a := ap.Addr().As16()
		copy(sa[8:], a[:])
	}
	f := b[4+sizeofSockaddrStorage:]
	ne.PutUint32(f[0:], uint32(state))
	ne.PutUint32(f[4:], cwnd)
	ne.PutUint32(f[8:], srttMS)
	ne.PutUint32(f[12:], rtoMS)
	ne.PutUint32(f[16:], mtu)
	return b
}

func TestParseStatus(t *testing.T) {
	for _, ap := range []netip.AddrPort{netip.MustParseAddrPort("172.31.255.1:3863"), netip.MustParseAddrPort("[2001:db8::5]:9")} {
		got, err := parseStatus(rawStatus(rawPaddrinfo(ap, PathActive, 4380, 12, 250, 1500)))
		if err != nil {
			t.Fatal(err)
		}
		want := Info{
			State: AssocEstablished, PeerWindow: 212992, Unacked: 3, Pending: 1, InStreams: 10, OutStreams: 12,
			FragmentationPoint: 65484,
			Primary:            PathInfo{Addr: ap, State: PathActive, Cwnd: 4380, SRTT: 12 * time.Millisecond, RTO: 250 * time.Millisecond, MTU: 1500},
		}
		if d := cmp.Diff(want, got, cmpopts.EquateComparable(netip.AddrPort{})); d != "" {
			t.Errorf("parseStatus (-want +got):\n%s", d)
		}
	}
	if _, err := parseStatus(rawStatus(nil)); !errors.Is(err, errShortInfo) {
		t.Errorf("short status: %v, want errShortInfo", err)
	}
	if _, err := parsePaddrinfo(make([]byte, sizeofPaddrinfo-1)); !errors.Is(err, errShortInfo) {
		t.Errorf("short paddrinfo: %v, want errShortInfo", err)
	}
	if got := parseRawSockaddr([]byte{0xff, 0xff, 1, 2}); got.IsValid() {
		t.Errorf("unknown family: %v, want the zero AddrPort", got)
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add(rawStatus(rawPaddrinfo(netip.MustParseAddrPort("127.0.0.1:1"), PathActive, 1, 2, 3, 4)))
	f.Add(rawStatus(rawPaddrinfo(netip.MustParseAddrPort("[::1]:1"), PathUnconfirmed, 1, 2, 3, 4)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := parseStatus(b)
		if err == nil && len(b) < sizeofStatus {
			t.Fatalf("parsed %d bytes: %+v", len(b), in)
		}
	})
}

func TestLivenessEncoding(t *testing.T) {
	ne := binary.NativeEndian
	pp, err := appendPaddrparams(Liveness{HeartbeatInterval: 200 * time.Millisecond, PathMaxRetrans: 2})
	if err != nil {
		t.Fatal(err)
	}
	f := pp[4+sizeofSockaddrStorage:]
	if len(pp) != sizeofPaddrparams || ne.Uint32(f[0:]) != 200 || ne.Uint16(f[4:]) != 2 || ne.Uint32(f[14:]) != sppHBEnable {
		t.Errorf("paddrparams: len %d hbinterval %d pathmaxrxt %d flags %#x", len(pp), ne.Uint32(f[0:]), ne.Uint16(f[4:]), ne.Uint32(f[14:]))
	}
	// Without a heartbeat interval, heartbeats are left as they are.
	pp, _ = appendPaddrparams(Liveness{PathMaxRetrans: 1})
	if f := pp[4+sizeofSockaddrStorage:]; ne.Uint32(f[14:]) != 0 || ne.Uint32(f[0:]) != 0 {
		t.Errorf("no interval: flags %#x interval %d, want 0, 0", ne.Uint32(f[14:]), ne.Uint32(f[0:]))
	}
	rto, err := appendRTOInfo(Liveness{RTOInitial: 300 * time.Millisecond, RTOMax: time.Second, RTOMin: 100 * time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	if got := [3]uint32{ne.Uint32(rto[4:]), ne.Uint32(rto[8:]), ne.Uint32(rto[12:])}; got != [3]uint32{300, 1000, 1} {
		t.Errorf("rtoinfo initial, max, min = %v, want [300 1000 1] (a positive duration is at least 1 ms)", got)
	}
	for _, l := range []Liveness{{HeartbeatInterval: -1}, {PathMaxRetrans: 1 << 16}, {RTOMax: -time.Second}} {
		_, err1 := appendPaddrparams(l)
		_, err2 := appendRTOInfo(l)
		if !errors.Is(err1, errLiveness) && !errors.Is(err2, errLiveness) {
			t.Errorf("%+v: no error", l)
		}
	}
}

func TestParseAdaptation(t *testing.T) {
	b := make([]byte, 16)
	binary.NativeEndian.PutUint16(b, snAdaptationIndication)
	binary.NativeEndian.PutUint32(b[4:], 16)
	binary.NativeEndian.PutUint32(b[8:], 0x52535031)
	if ind, ok := parseAdaptation(b); !ok || ind != 0x52535031 {
		t.Errorf("parseAdaptation: %#x %v", ind, ok)
	}
	binary.NativeEndian.PutUint16(b, 0x8001)
	if _, ok := parseAdaptation(b); ok {
		t.Error("an association change read as an adaptation indication")
	}
	if _, ok := parseAdaptation(b[:11]); ok {
		t.Error("a short notification read as an adaptation indication")
	}
}
