package failover_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/failover"
)

// The session's goroutine feeds events, carries out the actions, and sets its
// one timer to Deadline. Here the "I/O" is scripted: element 1 connects,
// breaks, and the session fails over to element 2, echoing the cookie that 1
// handed out.
func Example() {
	m := failover.New(failover.Config{})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pe := func(id asap.PEID) failover.Candidate { return failover.Candidate{PE: asap.PoolElement{ID: id}} }
	show := func(acts []failover.Action) {
		for _, a := range acts {
			switch a.Kind {
			case failover.Connect:
				fmt.Printf("connect %d within %v\n", a.PE, a.Deadline.Sub(now))
			case failover.Indicate:
				fmt.Printf("failed over from %d to %d, %d replayed\n", a.Old, a.New, a.Replayed)
			case failover.SendCookieEcho:
				fmt.Printf("echo cookie %q to %d\n", a.Cookie, a.PE)
			default:
				fmt.Println(a.Kind, a.PE)
			}
		}
	}
	show(m.Handle(now, failover.Event{Kind: failover.Open, Candidates: []failover.Candidate{pe(1)}}))
	show(m.Handle(now, failover.Event{Kind: failover.Connected, PE: 1}))
	show(m.Handle(now, failover.Event{Kind: failover.CookieReceived, Cookie: []byte("state 42")}))
	show(m.Handle(now, failover.Event{Kind: failover.BusinessCardReceived, Candidates: []failover.Candidate{pe(2), pe(3)}}))
	show(m.Handle(now, failover.Event{Kind: failover.TransportError, PE: 1, Err: errors.New("reset")}))
	show(m.Handle(now, failover.Event{Kind: failover.Connected, PE: 2}))
	show(m.Handle(now, failover.Event{Kind: failover.ReplayDone, Replayed: 3}))
	fmt.Println(m.State(), m.Current())
	// Output:
	// connect 1 within 5s
	// Established 1
	// Disconnect 1
	// ReportUnreachable 1
	// connect 2 within 5s
	// echo cookie "state 42" to 2
	// Replay 2
	// failed over from 1 to 2, 3 replayed
	// Connected 2
}
