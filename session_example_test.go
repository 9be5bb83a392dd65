package rsp_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/rsp-go/rsp"
)

// A session survives the loss of its server: messages not acknowledged
// are replayed to another element of the pool, and the application reads
// on. Here two stateless elements answer each message; the first to
// answer shuts down (GoAway) after its answer.
func ExampleSession() {
	stop, registrars := startExampleRegistrar()
	defer stop()
	var gone atomic.Bool
	for range 2 {
		lc := rsp.ListenConfig{Registrars: registrars, LocalAddr: "127.0.0.1:0",
			Session: rsp.SessionConfig{Stateless: true}}
		l, err := lc.Listen(context.Background(), "tcp", "pool:names")
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
				s := c.(*rsp.Session)
				go func() {
					defer s.Close()
					for {
						m, err := s.ReadMsg()
						if err != nil {
							return
						}
						s.Write([]byte("got " + string(m.Data)))
						if gone.CompareAndSwap(false, true) {
							s.GoAway() // this server goes away
							return
						}
					}
				}()
			}
		}()
	}

	failovers := make(chan rsp.FailoverEvent, 1)
	d := rsp.Dialer{Registrars: registrars, Session: rsp.SessionConfig{Failovers: failovers}}
	c, err := d.DialContext(context.Background(), "tcp", "pool:names")
	if err != nil {
		panic(err)
	}
	s := c.(*rsp.Session)
	defer s.Close()
	s.SetDeadline(time.Now().Add(10 * time.Second))
	for _, msg := range []string{"one", "two"} {
		if _, err := s.WriteMsg([]byte(msg), rsp.WriteOptions{AckRequest: true}); err != nil {
			panic(err)
		}
		reply, err := s.ReadMsg()
		if err != nil {
			panic(err)
		}
		fmt.Println(string(reply.Data))
	}
	f := <-failovers
	fmt.Println("failed over to another element:", f.Old.ID != f.New.ID && s.Element().ID == f.New.ID)
	// Output:
	// got one
	// got two
	// failed over to another element: true
}
