package filetransfer_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/examples/filetransfer"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/registrar"
)

const (
	pool  = "pool:files"
	chunk = 4 << 10
	// heartbeat is generous: the kills end connections, and a busy
	// machine (User-mode Linux starting a server process) must not make
	// a live server look silent, which would be a failover more.
	heartbeat = time.Second
)

// serverSession is the pool elements' session configuration: requests
// stand alone.
var serverSession = rsp.SessionConfig{Stateless: true, HeartbeatInterval: heartbeat}

// TestMain runs the test binary as a file server process when
// childEnv is set (see startChild).
func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		runChild(spec)
		return
	}
	os.Exit(m.Run())
}

// writeFiles writes files of pseudo-random bytes of the sizes given to a
// new directory and returns it with the files' names.
func writeFiles(t *testing.T, sizes ...int) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	var names []string
	for i, n := range sizes {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		name := fmt.Sprintf("file-%d.bin", i)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	return dir, names
}

// fleet is a pool of file servers the test kills one at a time.
type fleet interface {
	// add starts one more server.
	add(t *testing.T)
	// kill ends the server with the given ID, the way the fleet does.
	kill(t *testing.T, id asap.PEID)
}

// fetchAll fetches every file of dir from the pool and kills the server
// serving it at a third and at two thirds of each transfer, starting a
// server for each it kills; each fetch must fail over twice, to servers
// it never used before, and end with the file's bytes.
func fetchAll(t *testing.T, reg, dir string, names []string, f fleet) {
	for range 3 {
		f.add(t)
	}
	d := &rsp.Dialer{Registrars: []string{reg}, Session: rsp.SessionConfig{
		HeartbeatInterval: heartbeat,
		// A small window, so that a killed server has little in flight:
		// the client needs the next server for the rest.
		MaxUnackedMessages: 4,
		FailoverTimeout:    5 * time.Second,
		Logger:             testutil.Logger(t, "client"),
	}}
	for _, name := range names {
		want, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		size := int64(len(want))
		var (
			mu      sync.Mutex
			servers []asap.PEID
			kills   int
		)
		c := &filetransfer.Client{Dialer: d, Pool: pool, Progress: func(received int64, from rsp.Element) {
			mu.Lock()
			defer mu.Unlock()
			if len(servers) == 0 || servers[len(servers)-1] != from.ID {
				servers = append(servers, from.ID)
			}
			if kills < 2 && received >= size*int64(kills+1)/3 {
				kills++
				f.kill(t, from.ID)
				f.add(t)
			}
		}}
		var got bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := c.Fetch(ctx, name, &got)
		cancel()
		if err != nil {
			t.Fatalf("fetch %s: %v", name, err)
		}
		sum := sha256.Sum256(want)
		if got.Len() != len(want) || sha256.Sum256(got.Bytes()) != sum || res.SHA256 != sum || res.Size != size {
			t.Fatalf("fetch %s: %d bytes with sha256 %x (result: %d bytes, %x), want %d bytes with %x",
				name, got.Len(), sha256.Sum256(got.Bytes()), res.Size, res.SHA256, len(want), sum)
		}
		if kills != 2 || res.Failovers != 2 {
			t.Fatalf("fetch %s: %d failovers after %d kills, want 2 after 2", name, res.Failovers, kills)
		}
		seen := map[asap.PEID]bool{}
		for _, id := range servers {
			seen[id] = true
		}
		if len(servers) != 3 || len(seen) != 3 {
			t.Fatalf("fetch %s: data came from servers %08x, want three different ones in turn", name, servers)
		}
	}
}

// local is a fleet of servers in the test's process; a kill either
// resets the server's connections through a proxy in front of it (a
// server that died) or shuts it down (GOAWAY, then its listener closes).
type local struct {
	reg, dir, network string
	reset             bool
	members           byID[*member]
}

// byID holds a fleet's servers by pool element identifier.
type byID[T any] struct {
	mu sync.Mutex
	m  map[asap.PEID]T
}

func (b *byID[T]) put(id asap.PEID, v T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = make(map[asap.PEID]T)
	}
	b.m[id] = v
}

// take removes the server id and returns it (the zero T if there is none).
func (b *byID[T]) take(id asap.PEID) T {
	b.mu.Lock()
	defer b.mu.Unlock()
	v := b.m[id]
	delete(b.m, id)
	return v
}

type member struct {
	srv   *filetransfer.Server
	proxy *testutil.Proxy
}

func (p *local) add(t *testing.T) {
	t.Helper()
	lc := rsp.ListenConfig{Registrars: []string{p.reg}, LocalAddr: "127.0.0.1:0", Session: serverSession}
	m := &member{srv: &filetransfer.Server{FS: os.DirFS(p.dir), ChunkSize: chunk, Logger: testutil.Logger(t, "server")}}
	if p.reset {
		m.proxy = testutil.StartProxy(t, "") // told the listener's port below
		lc.AdvertiseAddr = m.proxy.Addr()
	}
	l, err := lc.Listen(context.Background(), p.network, pool)
	if err != nil {
		t.Fatal(err)
	}
	if m.proxy != nil {
		m.proxy.SetTarget(l.Addr().String())
	}
	go m.srv.Serve(l)
	t.Cleanup(func() { m.srv.Close() })
	p.members.put(l.ID(), m)
}

func (p *local) kill(t *testing.T, id asap.PEID) {
	m := p.members.take(id)
	if m == nil {
		t.Errorf("kill: no server %08x", uint32(id))
		return
	}
	if m.proxy != nil {
		m.proxy.Reset()
		m.proxy.Close()
	}
	m.srv.Close()
}

// TestFetchServerReset: the server of every transfer dies (its
// connections reset) at a third and at two thirds of the file, and the
// client gets the rest from the next server.
func TestFetchServerReset(t *testing.T) {
	_, reg := testutil.StartRegistrar(t, registrar.Config{})
	dir, names := writeFiles(t, 200<<10, 256<<10+123, 300<<10+1)
	fetchAll(t, reg, dir, names, &local{reg: reg, dir: dir, network: "tcp", reset: true})
}

// TestFetchServerShutdown: the server of every transfer shuts down
// (GOAWAY, listener closed) at a third and at two thirds of the file.
func TestFetchServerShutdown(t *testing.T) {
	_, reg := testutil.StartRegistrar(t, registrar.Config{})
	dir, names := writeFiles(t, 200<<10, 256<<10+123, 300<<10+1)
	fetchAll(t, reg, dir, names, &local{reg: reg, dir: dir, network: "tcp"})
}

// TestFetchServerShutdownSCTP is TestFetchServerShutdown with the servers
// over kernel SCTP.
func TestFetchServerShutdownSCTP(t *testing.T) {
	requireSCTP(t)
	_, reg := testutil.StartRegistrar(t, registrar.Config{})
	dir, names := writeFiles(t, 200<<10, 256<<10+123)
	fetchAll(t, reg, dir, names, &local{reg: reg, dir: dir, network: "sctp"})
}

func requireSCTP(t *testing.T) {
	t.Helper()
	if !mapping.SCTPSupported() {
		t.Skip("the kernel has no SCTP; run the SCTP tests inside User-mode Linux with .ci/uml/test-sctp")
	}
}

// TestFetchErrors: a missing file and an offset beyond the file end the
// fetch with ErrServer, not a hang or a failover.
func TestFetchErrors(t *testing.T) {
	_, reg := testutil.StartRegistrar(t, registrar.Config{})
	dir, _ := writeFiles(t, 10)
	p := &local{reg: reg, dir: dir, network: "tcp"}
	p.add(t)
	c := &filetransfer.Client{Dialer: &rsp.Dialer{Registrars: []string{reg}}, Pool: pool}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got bytes.Buffer
	if _, err := c.Fetch(ctx, "missing.bin", &got); !errors.Is(err, filetransfer.ErrServer) {
		t.Errorf("fetch of a missing file: %v, want ErrServer", err)
	}
	if _, err := c.Fetch(ctx, "../file-0.bin", &got); !errors.Is(err, filetransfer.ErrServer) {
		t.Errorf("fetch outside the directory: %v, want ErrServer", err)
	}
	if got.Len() != 0 {
		t.Errorf("%d bytes written for failed fetches", got.Len())
	}
}
