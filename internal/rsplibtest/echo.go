package rsplibtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rsp-go/rsp"
)

// ServeSCTPEcho is the body of an element process: it registers a session
// echo element in pool at the rsp registrar reg over SCTP, with 200 ms
// heartbeats, prints ReadyLine, and echoes each session's bytes until the
// process is killed. An echo's messages stand alone, so the element is
// stateless: a session may move to another element with what a dead one
// did not acknowledge. A connection that is not a session is reported on
// standard output. It exits with status 1 when it cannot listen.
func ServeSCTPEcho(reg, pool string) {
	lc := rsp.ListenConfig{Registrars: []string{"sctp:" + reg}, LocalAddr: HostAddr + ":0",
		Session: rsp.SessionConfig{HeartbeatInterval: 200 * time.Millisecond, Stateless: true}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	l, err := lc.Listen(ctx, "sctp", "pool:"+pool)
	cancel()
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	fmt.Println(ReadyLine(l.ID()))
	for {
		c, err := l.Accept()
		if err != nil {
			os.Exit(1)
		}
		go func() {
			defer c.Close()
			if _, ok := c.(*rsp.Session); !ok {
				fmt.Printf("a plain connection (%T)\n", c)
			}
			io.Copy(c, c)
		}()
	}
}
