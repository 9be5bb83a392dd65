package rsp_test

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap"
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

// A pool element shuts down gracefully: Shutdown deregisters it, lets its
// sessions' applications finish what they read, and sends each session
// away (GOAWAY) with the acknowledgement of what it processed. The pool
// user fails over to another element and replays the rest there; its
// application sees no error. Here the pool user's failover callback, set
// for this dial only, tells the new element where the stream stands.
func ExampleListener_Shutdown() {
	stop, registrars := startExampleRegistrar()
	defer stop()
	listeners := map[asap.PEID]*rsp.Listener{}
	for range 2 {
		lc := rsp.ListenConfig{Registrars: registrars, LocalAddr: "127.0.0.1:0",
			Session: rsp.SessionConfig{Stateless: true}}
		l, err := lc.Listen(context.Background(), "tcp", "pool:upper")
		if err != nil {
			panic(err)
		}
		defer l.Close()
		listeners[l.ID()] = l
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					s := c.(*rsp.Session)
					for {
						m, err := s.ReadMsg()
						if err != nil {
							return // io.EOF once the element shuts down
						}
						s.Write(bytes.ToUpper(m.Data))
					}
				}()
			}
		}()
	}

	d := rsp.Dialer{Registrars: registrars}
	ctx := rsp.WithFailoverCallback(context.Background(), func(ctx context.Context, f *rsp.Failover) error {
		_, err := f.SendMsg([]byte("resync"), rsp.WriteOptions{AckRequest: true})
		return err
	})
	c, err := d.DialContext(ctx, "tcp", "pool:upper")
	if err != nil {
		panic(err)
	}
	s := c.(*rsp.Session)
	defer s.Close()
	s.SetDeadline(time.Now().Add(10 * time.Second))
	write := func(msg string) {
		if _, err := s.WriteMsg([]byte(msg), rsp.WriteOptions{AckRequest: true}); err != nil {
			panic(err)
		}
	}
	read := func() {
		reply, err := s.ReadMsg()
		if err != nil {
			panic(err)
		}
		fmt.Println(string(reply.Data))
	}
	write("one")
	read()
	first := s.Element().ID
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := listeners[first].Shutdown(sctx); err != nil {
		panic(err)
	}
	write("two")
	read() // the new element's answer to the callback's message comes first
	read()
	fmt.Println("moved to the other element:", s.Element().ID != first)
	// Output:
	// ONE
	// RESYNC
	// TWO
	// moved to the other element: true
}
