// Package testhost describes the test host that the project's own scripts
// create inside User-mode Linux (.ci/uml/run): a dummy interface with a
// site-local address, where multicast and rsplib's programs may be used
// without anything leaving the kernel.
package testhost

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Interface and Addr are the test host's interface and address.
const (
	Interface = "rsp0"
	Addr      = "172.31.255.1"
)

// Available reports whether this process runs on the test host, and if not,
// why.
func Available() (bool, string) {
	if os.Getenv("RSP_IN_UML") != "1" {
		return false, "not on the project's test host; run with .ci/uml/test-sctp"
	}
	ifi, err := net.InterfaceByName(Interface)
	if err != nil {
		return false, "no test host interface " + Interface + " (.ci/uml/run creates it)"
	}
	addrs, _ := ifi.Addrs()
	for _, a := range addrs {
		if strings.HasPrefix(a.String(), Addr+"/") {
			return true, ""
		}
	}
	return false, "interface " + Interface + " lacks the test host address " + Addr
}

// RequireMulticast skips the test unless it runs on the test host, the only
// place where the project's tests send multicast.
func RequireMulticast(t testing.TB) {
	t.Helper()
	if ok, why := Available(); !ok {
		t.Skip("multicast tests run only on the test host: " + why)
	}
}

// DelayLoopback delays every packet on the test host's loopback interface
// by d (netem) until the test ends, so that handshakes take round trips as
// they do between hosts. It skips the test anywhere but on the test host.
func DelayLoopback(t testing.TB, d time.Duration) {
	t.Helper()
	if ok, why := Available(); !ok {
		t.Skip("loopback delay only on the test host: " + why)
	}
	delay := strconv.FormatInt(d.Microseconds(), 10) + "us"
	if out, err := exec.Command("tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", delay).CombinedOutput(); err != nil {
		t.Fatalf("tc qdisc add dev lo root netem delay %s: %v\n%s", delay, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("tc", "qdisc", "del", "dev", "lo", "root").CombinedOutput(); err != nil {
			t.Errorf("tc qdisc del dev lo root: %v\n%s", err, out)
		}
	})
}

// BlackholeLoopback drops every packet on the test host's loopback
// interface (netem loss 100%), as a peer that stops answering without
// closing looks to its associations and connections, until the returned
// function is called or the test ends. It skips the test anywhere but on
// the test host.
func BlackholeLoopback(t testing.TB) (restore func()) {
	t.Helper()
	if ok, why := Available(); !ok {
		t.Skip("loopback black hole only on the test host: " + why)
	}
	if out, err := exec.Command("tc", "qdisc", "add", "dev", "lo", "root", "netem", "loss", "100%").CombinedOutput(); err != nil {
		t.Fatalf("tc qdisc add dev lo root netem loss 100%%: %v\n%s", err, out)
	}
	return restoreLoopback(t)
}

// BlackholePort drops every IPv4 packet on the test host's loopback
// interface to or from port (SCTP, TCP or UDP: a prio qdisc whose third
// band is netem loss 100%, u32 filters on the port), as one peer that
// stops answering without closing looks to the others, until the returned
// function is called or the test ends. It skips the test anywhere but on
// the test host.
func BlackholePort(t testing.TB, port int) (restore func()) {
	t.Helper()
	if ok, why := Available(); !ok {
		t.Skip("port black hole only on the test host: " + why)
	}
	p := strconv.Itoa(port)
	for _, args := range [][]string{
		{"qdisc", "add", "dev", "lo", "root", "handle", "1:", "prio"},
		{"qdisc", "add", "dev", "lo", "parent", "1:3", "handle", "30:", "netem", "loss", "100%"},
		{"filter", "add", "dev", "lo", "parent", "1:0", "protocol", "ip", "prio", "1", "u32", "match", "ip", "dport", p, "0xffff", "flowid", "1:3"},
		{"filter", "add", "dev", "lo", "parent", "1:0", "protocol", "ip", "prio", "1", "u32", "match", "ip", "sport", p, "0xffff", "flowid", "1:3"},
	} {
		if out, err := exec.Command("tc", args...).CombinedOutput(); err != nil {
			exec.Command("tc", "qdisc", "del", "dev", "lo", "root").Run()
			t.Fatalf("tc %v: %v\n%s", args, err, out)
		}
	}
	return restoreLoopback(t)
}

// restoreLoopback returns a function that removes the loopback
// interface's root qdisc, once, and calls it when the test ends.
func restoreLoopback(t testing.TB) func() {
	var once sync.Once
	restore := func() {
		once.Do(func() {
			if out, err := exec.Command("tc", "qdisc", "del", "dev", "lo", "root").CombinedOutput(); err != nil {
				t.Errorf("tc qdisc del dev lo root: %v\n%s", err, out)
			}
		})
	}
	t.Cleanup(restore)
	return restore
}
