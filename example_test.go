package rsp_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/registrar"
)

// startExampleRegistrar embeds a registrar on loopback, as a test or a
// single-binary deployment would.
func startExampleRegistrar() (stop func(), registrars []string) {
	r := registrar.New(registrar.Config{})
	l, err := registrar.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go r.Serve(l)
	return func() { r.Close() }, []string{"tcp:" + l.Addr().String()}
}

// A pooled HTTP server and a client that reaches it by the pool's name.
func Example_http() {
	stop, registrars := startExampleRegistrar()
	defer stop()

	lc := rsp.ListenConfig{Registrars: registrars, LocalAddr: "127.0.0.1:0"}
	l, err := lc.Listen(context.Background(), "tcp", "pool:hello")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from the pool")
	})}
	go srv.Serve(l)
	defer srv.Close()

	d := &rsp.Dialer{Registrars: registrars}
	client := &http.Client{Transport: &http.Transport{
		// The URL's host names the pool.
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}}
	resp, err := client.Get("http://hello/")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	fmt.Println(string(b))
	// Output: hello from the pool
}

// A pool element and a pool user over plain connections.
func ExampleDialer_DialContext() {
	stop, registrars := startExampleRegistrar()
	defer stop()

	lc := rsp.ListenConfig{Registrars: registrars, LocalAddr: "127.0.0.1:0"}
	l, err := lc.Listen(context.Background(), "tcp", "pool:echo")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()

	d := rsp.Dialer{Registrars: registrars}
	c, err := d.DialContext(context.Background(), "tcp", "pool:echo")
	if err != nil {
		panic(err)
	}
	defer c.Close()
	fmt.Fprintln(c, "ping")
	reply := make([]byte, 5)
	io.ReadFull(c, reply)
	fmt.Print(string(reply))
	e, _ := rsp.PoolElementOf(c)
	fmt.Println(e.ID == l.ID())
	// Output:
	// ping
	// true
}

// A legacy server joins a pool without code changes (NO_MAPPING), and a
// program that keeps its own sockets finds it with GET_PRIMARY_SERVER.
func ExampleRegister() {
	stop, registrars := startExampleRegistrar()
	defer stop()

	legacy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer legacy.Close()

	lc := rsp.ListenConfig{Registrars: registrars}
	reg, err := lc.Register(context.Background(), "legacy", "tcp:"+legacy.Addr().String(), rsp.RoundRobinPolicy)
	if err != nil {
		panic(err)
	}
	defer reg.Close(context.Background())

	r := rsp.Resolver{Registrars: registrars}
	s, err := r.Primary(context.Background(), "legacy")
	if err != nil {
		panic(err)
	}
	fmt.Println(strings.EqualFold(s.Addr(), legacy.Addr().String()), s.ID == reg.ID())
	// Output: true true
}
