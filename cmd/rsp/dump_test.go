package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/registrar"
)

// TestDump has two registrars share a handlespace over ENRP; rsp dump at
// one's ENRP address lists its peer and the elements of both, each with
// its home.
func TestDump(t *testing.T) {
	t.Parallel()
	enrpA, enrpB := testutil.FreeAddr(t), testutil.FreeAddr(t)
	a, regA := testutil.StartRegistrar(t, registrar.Config{ID: 0xa, ENRP: registrar.ENRPConfig{Listen: []string{"tcp:" + enrpA}, Peers: []string{"tcp:" + enrpB}}})
	b, regB := testutil.StartRegistrar(t, registrar.Config{ID: 0xb, ENRP: registrar.ENRPConfig{Listen: []string{"tcp:" + enrpB}, Peers: []string{"tcp:" + enrpA}}})
	testutil.WaitFor(t, 10*time.Second, "the registrars to peer", func() bool { return len(a.Peers()) == 1 && len(b.Peers()) == 1 })
	pa := registerPE(t, regA, "web", 8001)
	pb := registerPE(t, regB, "web", 8002)
	testutil.WaitFor(t, 5*time.Second, "both elements at a", func() bool { p, _ := a.Pool("web"); return len(p.Elements) == 2 })

	out, errOut, err := runCommand(t, runDump, "", "tcp:"+enrpA)
	if err != nil {
		t.Fatalf("dump: %v\n%s", err, errOut)
	}
	if first := strings.SplitN(out, "\n", 2)[0]; first != "registrar 0000000a: 1 peers, 1 pools, 2 elements" {
		t.Errorf("first line %q\n%s", first, out)
	}
	for _, want := range []string{
		`(?m)^0000000b\s+sctp:127\.0\.0\.1:\d+$`,
		`(?m)^pool "web", policy RR, 2 elements$`,
		fmt.Sprintf(`(?m)^\s+%08x\s+0000000a\s+tcp:127\.0\.0\.1:8001\s+RR\s`, uint32(pa.ID())),
		fmt.Sprintf(`(?m)^\s+%08x\s+0000000b\s+tcp:127\.0\.0\.1:8002\s+RR\s`, uint32(pb.ID())),
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("output does not match %s:\n%s", want, out)
		}
	}
	if _, _, err := runCommand(t, runDump, "", "nowhere"); err == nil {
		t.Error("dump of a bad address: no error")
	}
}
