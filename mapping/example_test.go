package mapping_test

import (
	"context"
	"fmt"
	"log"

	"github.com/rsp-go/rsp/mapping"
)

// A pipelining peer sends several messages with one write; the other end
// reads whatever has arrived with one read.
func ExampleBatchConn() {
	ctx := context.Background()
	var lc mapping.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	var d mapping.Dialer
	c, err := d.DialContext(ctx, "tcp", l.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	s, err := l.Accept()
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	out := []mapping.Msg{
		{Buf: []byte("first"), PPID: mapping.PPIDASAP},
		{Buf: []byte("second"), PPID: mapping.PPIDASAP},
		{Buf: []byte("third"), PPID: 0},
	}
	if _, err := c.(mapping.BatchConn).WriteBatch(out); err != nil {
		log.Fatal(err)
	}

	in := make([]mapping.Msg, 8)
	for i := range in {
		in[i].Buf = make([]byte, 512)
	}
	for got := 0; got < len(out); {
		n, err := s.(mapping.BatchConn).ReadBatch(in, 4096)
		if err != nil {
			log.Fatal(err)
		}
		for _, m := range in[:n] {
			fmt.Printf("%s (PPID %d)\n", m.Buf[:m.N], m.PPID)
		}
		got += n
	}
	// Output:
	// first (PPID 11)
	// second (PPID 11)
	// third (PPID 0)
}
