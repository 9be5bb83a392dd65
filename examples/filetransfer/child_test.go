package filetransfer_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/examples/filetransfer"
	"github.com/rsp-go/rsp/internal/testutil"
	"github.com/rsp-go/rsp/registrar"
)

// childEnv, set to "network,registrar,dir", makes the test binary a file
// server process serving dir in the pool; it prints its pool element ID.
const childEnv = "FILETRANSFER_TEST_SERVER"

func runChild(spec string) {
	parts := strings.SplitN(spec, ",", 3)
	lc := rsp.ListenConfig{Registrars: []string{parts[1]}, LocalAddr: "127.0.0.1:0", Session: serverSession}
	l, err := lc.Listen(context.Background(), parts[0], pool)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%08x\n", uint32(l.ID()))
	srv := &filetransfer.Server{FS: os.DirFS(parts[2]), ChunkSize: chunk}
	srv.Serve(l)
	os.Exit(0)
}

// processes is a fleet of file server processes, killed with SIGKILL
// (os.Process.Kill): the kernel ends their connections.
type processes struct {
	network, reg, dir string
	procs             byID[*exec.Cmd]
}

func (p *processes) add(t *testing.T) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+p.network+","+p.reg+","+p.dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("file server process: %v", err)
	}
	id, err := strconv.ParseUint(strings.TrimSpace(line), 16, 32)
	if err != nil {
		t.Fatalf("file server process said %q", line)
	}
	p.procs.put(asap.PEID(id), cmd)
}

func (p *processes) kill(t *testing.T, id asap.PEID) {
	cmd := p.procs.take(id)
	if cmd == nil {
		t.Errorf("kill: no server process %08x", uint32(id))
		return
	}
	cmd.Process.Kill()
	cmd.Wait()
}

// TestFetchServerKilled: the server process of every transfer is killed
// at a third and at two thirds of the file.
func TestFetchServerKilled(t *testing.T) {
	_, reg := testutil.StartRegistrar(t, registrar.Config{})
	dir, names := writeFiles(t, 200<<10, 256<<10+123, 300<<10+1)
	fetchAll(t, reg, dir, names, &processes{network: "tcp", reg: reg, dir: dir})
}

// TestFetchServerKilledSCTP is TestFetchServerKilled over kernel SCTP.
func TestFetchServerKilledSCTP(t *testing.T) {
	requireSCTP(t)
	_, reg := testutil.StartRegistrar(t, registrar.Config{})
	dir, names := writeFiles(t, 200<<10, 256<<10+123)
	fetchAll(t, reg, dir, names, &processes{network: "sctp", reg: reg, dir: dir})
}
