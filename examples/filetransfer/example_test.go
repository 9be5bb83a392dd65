package filetransfer_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/examples/filetransfer"
	"github.com/rsp-go/rsp/registrar"
)

// Two file servers in a pool, with a registrar embedded; the client's
// server shuts down in the middle of the transfer, and the client gets
// the rest of the file from the other one.
func Example() {
	r := registrar.New(registrar.Config{})
	rl, err := registrar.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go r.Serve(rl)
	defer r.Close()
	registrars := []string{"tcp:" + rl.Addr().String()}

	dir, err := os.MkdirTemp("", "filetransfer")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	file := bytes.Repeat([]byte("RSerPool file transfer\n"), 20000)
	if err := os.WriteFile(filepath.Join(dir, "big.txt"), file, 0o644); err != nil {
		panic(err)
	}

	servers := map[asap.PEID]*filetransfer.Server{}
	for range 2 {
		// Each request stands alone: the sessions are stateless.
		lc := rsp.ListenConfig{Registrars: registrars, LocalAddr: "127.0.0.1:0",
			Session: rsp.SessionConfig{Stateless: true}}
		l, err := lc.Listen(context.Background(), "tcp", "pool:files")
		if err != nil {
			panic(err)
		}
		srv := &filetransfer.Server{FS: os.DirFS(dir)}
		servers[l.ID()] = srv
		go srv.Serve(l)
		defer srv.Close()
	}

	var once sync.Once
	c := &filetransfer.Client{
		// A small window: the server has little in flight when it goes.
		Dialer: &rsp.Dialer{Registrars: registrars, Session: rsp.SessionConfig{MaxUnackedMessages: 4}},
		Pool:   "pool:files",
		Progress: func(received int64, from rsp.Element) {
			if received >= int64(len(file))/2 {
				once.Do(func() { servers[from.ID].Close() })
			}
		},
	}
	var got bytes.Buffer
	res, err := c.Fetch(context.Background(), "big.txt", &got)
	if err != nil {
		panic(err)
	}
	fmt.Println("bytes:", res.Size, "failovers:", res.Failovers)
	fmt.Println("checksum matches:", sha256.Sum256(got.Bytes()) == sha256.Sum256(file))
	// Output:
	// bytes: 460000 failovers: 1
	// checksum matches: true
}
