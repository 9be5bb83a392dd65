package rsplibtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/internal/testutil"
)

// StartServer starts rsplib's rspserver with a service flag ("-echo",
// "-pingpong", ...) registered with the rsplib registrar at registrar,
// and waits until ep resolves a new element of it in pool: one not in
// known, nor listed before it started (the registrar may still list
// elements killed before). It adds the new element to known (which may be
// nil) and returns the process and the element's identifier.
func StartServer(t testing.TB, ep *endpoint.Endpoint, registrar string, pool asap.PoolHandle, service string, known map[asap.PEID]bool) (*Process, asap.PEID) {
	t.Helper()
	before := map[asap.PEID]bool{}
	if res, err := ep.Resolve(context.Background(), pool); err == nil {
		for _, pe := range res.PEs {
			before[pe.ID] = true
		}
	}
	p := StartProcess(t, nil, "rspserver", service, "-registrar="+registrar, "-asapannounce=off")
	var id asap.PEID
	testutil.WaitFor(t, 20*time.Second, "rspserver "+service+" to register", func() bool {
		ep.Invalidate(pool)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		res, err := ep.Resolve(ctx, pool)
		if err != nil {
			return false
		}
		for _, pe := range res.PEs {
			if !before[pe.ID] && !known[pe.ID] {
				id = pe.ID
				return true
			}
		}
		return false
	})
	if known != nil {
		known[id] = true
	}
	return p, id
}

// readyLine is what an element process started by StartElementProcess
// prints once it serves.
var readyLine = regexp.MustCompile(`PE ([0-9a-f]{8}) ready`)

// ReadyLine returns the line an element process prints once it serves,
// for StartElementProcess: "PE 1a2b3c4d ready" with its identifier.
func ReadyLine(id asap.PEID) string { return fmt.Sprintf("PE %08x ready", uint32(id)) }

// StartElementProcess runs this test binary again as a pool element
// process (args select the helper test or benchmark that serves, env is
// added to its environment) and waits until it prints ReadyLine. It
// returns the process and the element's identifier.
func StartElementProcess(t testing.TB, env []string, args ...string) (*Process, asap.PEID) {
	t.Helper()
	p := startCmd(t, nil, func(cmd *exec.Cmd) { cmd.Env = append(os.Environ(), env...) }, os.Args[0], args...)
	testutil.WaitFor(t, 20*time.Second, "the element process's word that it serves", func() bool { return readyLine.MatchString(p.Out.String()) })
	id, _ := strconv.ParseUint(readyLine.FindStringSubmatch(p.Out.String())[1], 16, 32)
	return p, asap.PEID(id)
}

// PingPongClient is rsplib's pingpongclient, started by
// StartPingPongClient.
type PingPongClient struct {
	*Process
}

// Ack is one of pingpongclient's "Ack #n from PE $id (reply #r)" lines:
// a Pong received.
type Ack struct {
	Line      string
	MessageNo uint64
	PE        asap.PEID
	ReplyNo   uint64
}

var (
	ackLine  = regexp.MustCompile(`Ack #(\d+) from PE \$([0-9a-f]{8}) \(reply #(\d+)\)`)
	sentLine = regexp.MustCompile(`Message #(\d+) sent`)
)

// StartPingPongClient starts rsplib's pingpongclient on pool, with the
// registrar at registrar and a Ping every interval. Its standard output
// is line-buffered (stdbuf -oL; a pipe would get it in blocks of 4 KiB),
// so that each Ack shows as soon as the client prints it.
func StartPingPongClient(t testing.TB, registrar string, pool asap.PoolHandle, interval time.Duration) *PingPongClient {
	t.Helper()
	return &PingPongClient{StartProcess(t, nil, "stdbuf", "-oL", "pingpongclient", "-registrar="+registrar,
		"-poolhandle="+string(pool), fmt.Sprintf("-interval=%d", interval.Milliseconds()), "-asapannounce=off")}
}

// Acks returns the acks the client printed so far.
func (c *PingPongClient) Acks() []Ack {
	var acks []Ack
	for _, m := range ackLine.FindAllStringSubmatch(c.Out.String(), -1) {
		msg, _ := strconv.ParseUint(m[1], 10, 64)
		pe, _ := strconv.ParseUint(m[2], 16, 32)
		reply, _ := strconv.ParseUint(m[3], 10, 64)
		acks = append(acks, Ack{Line: m[0], MessageNo: msg, PE: asap.PEID(pe), ReplyNo: reply})
	}
	return acks
}

// Sent returns the number of the last Ping the client sent (0 before the
// first): once an Ack has that number too, the client is not waiting for
// its element.
func (c *PingPongClient) Sent() uint64 {
	m := sentLine.FindAllStringSubmatch(c.Out.String(), -1)
	if len(m) == 0 {
		return 0
	}
	n, _ := strconv.ParseUint(m[len(m)-1][1], 10, 64)
	return n
}
