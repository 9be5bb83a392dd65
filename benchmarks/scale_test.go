package benchmarks

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/enrp"
	"github.com/rsp-go/rsp/internal/rsplibtest"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/mapping"
)

// EnvScaleHold names the environment variable with how long
// BenchmarkRegistrarScale holds its elements registered (a Go duration;
// default 60s), and EnvScalePEs the one with how many elements it
// registers: a comma-separated list of counts, one sub-benchmark each
// (default "1000,100000"; the goal is 1000000).
const (
	EnvScaleHold = "RSP_SCALE_HOLD"
	EnvScalePEs  = "RSP_SCALE_PES"
)

// EnvScaleProfile names the environment variable with a file name prefix
// for BenchmarkRegistrarScale: when set, the registrar serves its runtime
// profiles (-debug-listen on loopback), the benchmark saves a CPU profile
// of the registrar over the keep-alive half of the hold (up to 20 s) to
// PREFIX-N-MODE.cpu.pprof and its heap at the end of the hold to
// PREFIX-N-MODE.heap.pprof, for N elements and the EnvScaleAcks mode.
// EnvScaleLog names the one with a file name prefix for the registrar's
// log, saved to PREFIX-N-MODE.log whether the run passed or not.
const (
	EnvScaleProfile = "RSP_SCALE_PROFILE"
	EnvScaleLog     = "RSP_SCALE_LOG"
)

// EnvScaleAcks names the environment variable that says how the load
// generator writes its keep-alive acknowledgements: "batch" (the
// default), all those of the keep-alives it read together with one
// write, as a multiplexer of many pool elements would; "each", one
// write per acknowledgement, as one element per connection does; or
// "batch,each" for a sub-benchmark of each.
const EnvScaleAcks = "RSP_SCALE_ACKS"

// scaleConns is how many registration connections share the elements.
const scaleConns = 16

// BenchmarkRegistrarScale registers n pool elements over 16 connections
// with rsp's registrar in a process of its own (EnvRegistrarBinary) at the
// default keep-alive interval (5 s), holds them for EnvScaleHold while 64
// clients resolve, every keep-alive answered, and reports: registrations
// per second, elements removed during the hold (the goal is none; the
// benchmark fails when any is removed or lost), the
// registrar's resident memory per element, its CPU time per keep-alive
// answered, and resolutions per second. It counts the elements left over
// ENRP at the end (elements-lost); those the registrar removes while it
// sends that dump are counted apart (removed-during-dump): at 10^6
// elements the dump keeps its keep-alive schedule seconds behind. The
// metrics are logged too, as a failed benchmark reports none. It runs the scenario once whatever -benchtime says.
func BenchmarkRegistrarScale(b *testing.B) {
	bin := os.Getenv(EnvRegistrarBinary)
	if bin == "" {
		b.Skip(EnvRegistrarBinary + " names no built rspregistrar: the registrar must run in its own process")
	}
	hold := time.Minute
	if s := os.Getenv(EnvScaleHold); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatalf("%s: %v", EnvScaleHold, err)
		}
		hold = d
	}
	sizes := []int{1000, 100000}
	if s := os.Getenv(EnvScalePEs); s != "" {
		sizes = sizes[:0]
		for f := range strings.SplitSeq(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < scaleConns {
				b.Fatalf("%s: %q is not a count of at least %d elements", EnvScalePEs, f, scaleConns)
			}
			sizes = append(sizes, n)
		}
	}
	modes := map[string]AckWrites{"batch": AckBatch, "each": AckEach}
	acks := []string{"batch"}
	if s := os.Getenv(EnvScaleAcks); s != "" {
		acks = strings.Split(s, ",")
		for _, a := range acks {
			if _, ok := modes[a]; !ok {
				b.Fatalf("%s: %q is neither batch nor each", EnvScaleAcks, a)
			}
		}
	}
	for _, n := range sizes {
		for _, a := range acks {
			b.Run(fmt.Sprintf("elements=%d/acks=%s", n, a), func(b *testing.B) {
				scaleOnce(b, bin, n, hold, a, modes[a]) // once, whatever -benchtime says: it takes minutes
			})
		}
	}
}

func scaleOnce(b *testing.B, bin string, n int, hold time.Duration, mode string, acks AckWrites) {
	file := func(prefix, ext string) string { return fmt.Sprintf("%s-%d-%s.%s", prefix, n, mode, ext) }
	asapAddr, enrpAddr := testutil.FreeAddr(b), testutil.FreeAddr(b)
	args := []string{"-listen", "tcp:" + asapAddr, "-enrp-listen", "tcp:" + enrpAddr,
		"-max-pes-per-pool", "1048576", "-max-pools", "1024", "-max-hr-rate", "-1", "-log-level", "info"}
	profile := os.Getenv(EnvScaleProfile)
	var debugAddr string
	if profile != "" {
		debugAddr = testutil.FreeAddr(b)
		args = append(args, "-debug-listen", debugAddr)
	}
	p := rsplibtest.StartProcess(b, nil, bin, args...)
	if prefix := os.Getenv(EnvScaleLog); prefix != "" {
		b.Cleanup(func() { // at the end of the run, before the registrar is stopped
			if err := os.WriteFile(file(prefix, "log"), []byte(p.Out.String()), 0o644); err != nil {
				b.Log(err)
			}
		})
	}
	testutil.WaitFor(b, 20*time.Second, "rsp's registrar to serve", func() bool { return canDial("tcp", asapAddr) })
	t := Target{Name: "rsp", Network: "tcp", Addr: asapAddr, PID: p.Pid}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base := rssBytes(p.Pid)

	// Registration: 16 connections, a pool each.
	start := time.Now()
	pops := make([]*Populated, scaleConns)
	errs := make([]error, scaleConns)
	var wg sync.WaitGroup
	for i := range scaleConns {
		wg.Go(func() {
			pops[i], errs[i] = PopulateAcks(ctx, t, asap.PoolHandle(fmt.Sprintf("scale-%d", i)), n/scaleConns, hostAddr(t), kindFor(t), acks)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			b.Fatalf("registration connection %d of %d failed after %v: %v; the registrar closed %d registration connections as not keeping up",
				i, scaleConns, time.Since(start).Round(time.Millisecond), err, len(notKeepingUp(p.Out.String())))
		}
		defer pops[i].Stop()
	}
	regTime := time.Since(start)

	// Hold: the first half with keep-alives only, for the registrar's CPU
	// per keep-alive; the second with 64 clients resolving.
	removedBefore := strings.Count(p.Out.String(), "did not answer keep-alive; removed")
	kaBefore := keepAlivesAnswered.Load()
	ioBefore := syscalls(p.Pid)
	cpuBefore := cpuTime(p.Pid)
	var profiled sync.WaitGroup
	if profile != "" {
		secs := max(1, min(20, int((hold/2).Seconds())-2))
		profiled.Go(func() {
			saveProfile(b, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", debugAddr, secs), file(profile, "cpu.pprof"))
		})
	}
	time.Sleep(hold / 2)
	profiled.Wait()
	kas := keepAlivesAnswered.Load() - kaBefore
	kaCPU := cpuTime(p.Pid) - cpuBefore
	kaIO := syscalls(p.Pid)
	kaIO.reads -= ioBefore.reads
	kaIO.writes -= ioBefore.writes
	clients, err := Dial(ctx, t, concurrency)
	if err != nil {
		b.Fatal(err)
	}
	holdStart := time.Now()
	cpuBefore = cpuTime(p.Pid)
	var resolutions int64
	var firstBad atomic.Value
	for time.Since(holdStart) < hold/2 {
		const chunk = 20000
		bad, err := Run(clients, chunk, 1, func(int) asap.Message {
			return &asap.HandleResolution{Handle: asap.PoolHandle(fmt.Sprintf("scale-%d", rand.IntN(scaleConns)))}
		}, func(m asap.Message) bool {
			r, ok := m.(*asap.HandleResolutionResponse)
			if !ok || len(r.Causes) != 0 {
				firstBad.CompareAndSwap(nil, fmt.Sprintf("%T %+v", m, m))
				return false
			}
			return true
		})
		if err != nil {
			b.Fatal(err)
		}
		if bad > 0 {
			b.Fatalf("%d of %d resolutions failed; the first answer: %v", bad, chunk, firstBad.Load())
		}
		resolutions += chunk
	}
	resolving := time.Since(holdStart)
	resCPU := cpuTime(p.Pid) - cpuBefore
	rss := rssBytes(p.Pid)
	if profile != "" {
		saveProfile(b, "http://"+debugAddr+"/debug/pprof/heap", file(profile, "heap.pprof"))
	}
	removed := strings.Count(p.Out.String(), "did not answer keep-alive; removed") - removedBefore

	// What is left, read over ENRP. The benchmark's process, busy
	// answering the keep-alives, can be slow enough to read for the
	// registrar to take its fetching peer for silent (RFC 5353's timers)
	// and drop it: such a dump is tried again on a new connection.
	dump, err := fetchDump(ctx, enrpAddr)
	for attempt := 1; err != nil && attempt < 3; attempt++ {
		b.Logf("reading the handlespace, attempt %d: %v; trying again", attempt, err)
		dump, err = fetchDump(ctx, enrpAddr)
	}
	if err != nil {
		b.Fatalf("reading the handlespace: %v", err)
	}
	left := 0
	for _, pool := range dump.Pools {
		left += len(pool.PEs)
	}
	// The dump holds the registrar busy for seconds at 10^6 elements:
	// elements it removes meanwhile are counted apart from the hold's.
	removedInDump := strings.Count(p.Out.String(), "did not answer keep-alive; removed") - removedBefore - removed
	want := n / scaleConns * scaleConns
	metrics := []struct {
		v    float64
		unit string
	}{
		{float64(want) / regTime.Seconds(), "registrations/s"},
		{float64(want - left), "elements-lost"},
		{float64(removed), "removed-unanswered"},
		{float64(removedInDump), "removed-during-dump"},
		{float64(rss-base) / float64(want), "rss-B/element"},
		{float64(rss) / (1 << 20), "rss-MiB"},
		{float64(kas) / (hold / 2).Seconds(), "keepalives/s"},
		{float64(kaCPU.Microseconds()) / float64(max(kas, 1)), "registrar-cpu-µs/keepalive"},
		{float64(kaIO.reads) / float64(max(kas, 1)), "registrar-reads/keepalive"},
		{float64(kaIO.writes) / float64(max(kas, 1)), "registrar-writes/keepalive"},
		{float64(resolutions) / resolving.Seconds(), "resolutions/s"},
		{float64(strings.Count(p.Out.String(), "registration life expired")), "expired"},
		{float64(lastCount(p.Out.String(), "deferred")), "keepalives-deferred"},
		{float64(lastCount(p.Out.String(), "extended")), "timeouts-extended"},
		{float64(resCPU.Milliseconds()) / resolving.Seconds() / 10, "registrar-cpu-%-resolving"},
	}
	var summary strings.Builder
	for _, m := range metrics {
		b.ReportMetric(m.v, m.unit)
		fmt.Fprintf(&summary, " %.4g %s", m.v, m.unit)
	}
	// Logged too, for a run that fails prints no metrics.
	b.Logf("%d elements:%s", want, summary.String())
	if removedInDump > 0 {
		b.Logf("the registrar removed %d elements as not answering keep-alives while it sent its handlespace over ENRP", removedInDump)
	}
	// A lost connection is told apart by who ended it: the load
	// generator (its side ended first, say by its mapping's heartbeat
	// timeout) or the registrar (which logs why it closed it).
	for i, pop := range pops {
		if err := pop.Err(); err != nil {
			b.Errorf("registration connection %d of %d ended on the load generator's side: %v", i, scaleConns, err)
		}
	}
	for _, line := range closedConns(p.Out.String()) {
		b.Errorf("the registrar dropped a registration connection: %s", line)
	}
	if lost := want - left - removedInDump; removed > 0 || lost > 0 {
		b.Errorf("of %d elements, %d were removed as not answering keep-alives during the hold and %d more are missing from the handlespace; the registrar closed %d registration connections as not keeping up",
			want, removed, lost, len(notKeepingUp(p.Out.String())))
	}
}

// closedConns returns the registrar's log lines that say it removed the
// elements of a registration connection that ended, with why.
func closedConns(log string) []string {
	var lines []string
	for line := range strings.Lines(log) {
		if strings.Contains(line, "registration connection closed; removed its pool elements") {
			lines = append(lines, strings.TrimSpace(line))
		}
	}
	return lines
}

// saveProfile saves the profile served at url to file.
func saveProfile(b *testing.B, url, file string) {
	resp, err := http.Get(url)
	if err != nil {
		b.Logf("profile: %v", err)
		return
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", url, resp.Status)
	}
	if err == nil {
		err = os.WriteFile(file, data, 0o644)
	}
	if err != nil {
		b.Logf("profile: %v", err)
	}
}

// lastCount returns the last count the registrar's log gave as name=N
// (such as the keep-alives deferred for a full send queue, or the
// keep-alive timeouts extended for a late peer; rate-limited logs, so the
// count at the last one), or 0.
func lastCount(log, name string) int64 {
	m := regexp.MustCompile(` `+name+`=(\d+)`).FindAllStringSubmatch(log, -1)
	if len(m) == 0 {
		return 0
	}
	n, _ := strconv.ParseInt(m[len(m)-1][1], 10, 64)
	return n
}

// notKeepingUp returns the peers the registrar's log says it closed for
// not keeping up.
func notKeepingUp(log string) map[string]bool {
	peers := make(map[string]bool)
	for _, m := range regexp.MustCompile(`peer does not keep up; closing its connection" peer=(\S+)`).FindAllStringSubmatch(log, -1) {
		peers[m[1]] = true
	}
	return peers
}

// syscallCounts are a process's read and write system calls so far.
type syscallCounts struct{ reads, writes int64 }

// syscalls returns a process's read and write system calls (syscr and
// syscw of /proc/PID/io: read, readv, recvmsg, write, writev, sendmsg and
// the like), zero where /proc does not tell.
func syscalls(pid int) syscallCounts {
	var c syscallCounts
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return c
	}
	for line := range bytes.Lines(b) {
		f := strings.Fields(string(line))
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "syscr:":
			c.reads = v
		case "syscw:":
			c.writes = v
		}
	}
	return c
}

// fetchDump reads a registrar's handlespace over ENRP, on a connection of
// its own, within five minutes.
func fetchDump(ctx context.Context, addr string) (*enrp.Dump, error) {
	var d mapping.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	return enrp.Fetch(ctx, c, 0x5ca1e)
}

// rssBytes returns a process's resident memory, from /proc.
func rssBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(b) {
		if f := strings.Fields(string(line)); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
