package benchmarks

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/policy"
)

// Target is a registrar under load: how to reach it over which network.
type Target struct {
	Name    string // reported in benchmark names: "rsp", "rsplib"
	Network string // "tcp" or "sctp"
	Addr    string
	PID     int // the registrar's process, when it runs in one of its own
	// TLS, when set, is the client configuration of TLS connections to
	// the registrar.
	TLS *tls.Config
}

// Client is one load-generating ASAP connection.
type Client struct {
	c    mapping.Conn
	sent int
	in   []byte
}

func dial(ctx context.Context, t Target) (*Client, error) {
	d := mapping.Dialer{TLSConfig: t.TLS}
	c, err := d.DialContext(ctx, t.Network, t.Addr)
	if err != nil {
		return nil, err
	}
	return &Client{c: c, in: make([]byte, 65536)}, nil
}

// keepAlivesAnswered counts the keep-alives the load generator has
// acknowledged.
var keepAlivesAnswered atomic.Int64

// answerKeepAlive acknowledges m if it is a keep-alive, so that the
// registrar keeps the elements registered while the benchmark runs, and
// reports whether it was one.
func (c *Client) answerKeepAlive(m asap.Message) (bool, error) {
	ka, ok := m.(*asap.EndpointKeepAlive)
	if !ok {
		return false, nil
	}
	b, err := (&asap.EndpointKeepAliveAck{Handle: ka.Handle, ID: ka.ID}).AppendBinary(nil)
	if err == nil {
		err = c.c.WriteMsg(b, mapping.PPIDASAP)
	}
	if err == nil {
		keepAlivesAnswered.Add(1)
	}
	return true, err
}

// pe returns a pool element registration for address addr. Its life of
// an hour outlasts any benchmark: BenchmarkRegistrarScale on a loaded
// machine takes minutes to register its elements before it holds them for
// a minute, and an element whose life ran out would count as lost.
func pe(id asap.PEID, addr netip.Addr, port uint16, kind asap.ParamType) asap.PoolElement {
	return asap.PoolElement{
		ID:            id,
		Life:          time.Hour,
		UserTransport: asap.Transport{Kind: kind, Port: port, Addrs: []netip.Addr{addr}},
		Policy:        policy.Policy{Type: policy.RoundRobin},
	}
}

// AckWrites says how a populated connection writes its answers to the
// registrar's keep-alives.
type AckWrites int

const (
	// AckBatch answers all the keep-alives read together with one write,
	// as a multiplexer serving many pool elements over one connection
	// would: the registrar's reads then bring many acknowledgements each.
	AckBatch AckWrites = iota
	// AckEach writes each acknowledgement with a write of its own, as one
	// pool element per connection does.
	AckEach
)

// Populated is a connection over which pool elements registered, which
// answers the registrar's keep-alives until Stop.
type Populated struct {
	c    *Client
	done chan struct{}
	err  error // why it stopped answering; set before done closes
}

// Stop closes the connection: the registrar drops its elements.
func (p *Populated) Stop() { p.c.c.Close(); <-p.done }

// Err returns nil while the connection answers keep-alives, and the error
// that ended it once it stopped: the load generator's side of a lost
// connection (such as the mapping's heartbeat timeout, or the registrar
// closing it).
func (p *Populated) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Populate registers n pool elements in pool h over one connection, which
// the caller keeps open (registrars drop the elements of a closed
// registration connection), answering keep-alives as AckBatch does.
func Populate(ctx context.Context, t Target, h asap.PoolHandle, n int, addr netip.Addr, kind asap.ParamType) (stop func(), err error) {
	p, err := PopulateAcks(ctx, t, h, n, addr, kind, AckBatch)
	if err != nil {
		return nil, err
	}
	return p.Stop, nil
}

// PopulateAcks is Populate answering keep-alives as acks says.
func PopulateAcks(ctx context.Context, t Target, h asap.PoolHandle, n int, addr netip.Addr, kind asap.ParamType, acks AckWrites) (*Populated, error) {
	c, err := dial(ctx, t)
	if err != nil {
		return nil, err
	}
	i := 0
	var refused error
	err = c.pipeline(1, func() (asap.Message, bool) {
		if i == n || refused != nil {
			return nil, false
		}
		i++
		return &asap.Registration{Handle: h, PE: pe(asap.PEID(0x10000+i-1), addr, uint16(1000+(i-1)%60000), kind)}, true
	}, func(m asap.Message) {
		if r, ok := m.(*asap.RegistrationResponse); (!ok || r.Reject) && refused == nil {
			refused = fmt.Errorf("registration %d refused: %+v", i-1, m)
		}
	})
	if err == nil {
		err = refused
	}
	if err != nil {
		c.c.Close()
		return nil, err
	}
	// Answer the registrar's keep-alives while the elements stay
	// registered, so that it keeps them.
	p := &Populated{c: c, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = c.answerKeepAlives(acks)
	}()
	return p, nil
}

// answerKeepAlives answers the registrar's keep-alives until the
// connection ends, and returns the error that ended it. It reads what has
// arrived with one read and writes the acknowledgements as acks says.
func (c *Client) answerKeepAlives(acks AckWrites) error {
	c.c.SetReadDeadline(time.Time{})
	bc := mapping.Batched(c.c)
	in := make([]mapping.Msg, 256)
	for i := range in {
		in[i].Buf = make([]byte, 256)
	}
	var out []mapping.Msg
	var buf []byte
	var ends []int
	for {
		n, err := bc.ReadBatch(in, len(c.in))
		if err != nil {
			return err
		}
		buf, ends = buf[:0], ends[:0]
		for _, m := range in[:n] {
			if m.Err != nil {
				continue
			}
			msg, err := asap.Unmarshal(m.Buf[:m.N])
			ka, ok := msg.(*asap.EndpointKeepAlive)
			if err != nil || !ok {
				continue
			}
			if buf, err = (&asap.EndpointKeepAliveAck{Handle: ka.Handle, ID: ka.ID}).AppendBinary(buf); err != nil {
				return err
			}
			ends = append(ends, len(buf))
		}
		out = out[:0]
		start := 0
		for _, end := range ends {
			out = append(out, mapping.Msg{Buf: buf[start:end], PPID: mapping.PPIDASAP})
			start = end
		}
		switch {
		case len(out) == 0:
		case acks == AckBatch:
			if _, err := bc.WriteBatch(out); err != nil {
				return err
			}
		default:
			for _, m := range out {
				if err := c.c.WriteMsg(m.Buf, m.PPID); err != nil {
					return err
				}
			}
		}
		keepAlivesAnswered.Add(int64(len(out)))
	}
}

// Dial opens conns load-generating connections to t, closed when ctx ends.
func Dial(ctx context.Context, t Target, conns int) ([]*Client, error) {
	clients := make([]*Client, 0, conns)
	for range conns {
		c, err := dial(ctx, t)
		if err != nil {
			for _, c := range clients {
				c.c.Close()
			}
			return nil, err
		}
		clients = append(clients, c)
	}
	context.AfterFunc(ctx, func() {
		for _, c := range clients {
			c.c.Close()
		}
	})
	return clients, nil
}

// Run runs total requests built by next over the clients concurrently, each
// client keeping up to depth requests outstanding (pipelined, answered in
// order), and returns how many answers were not what ok accepts. With
// depth 1 a client waits for each answer before it sends the next request.
func Run(clients []*Client, total, depth int, next func(i int) asap.Message, ok func(asap.Message) bool) (bad int64, err error) {
	var issued atomic.Int64
	var badCount atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.pipeline(depth, func() (asap.Message, bool) {
				i := issued.Add(1) - 1
				if i >= int64(total) {
					return nil, false
				}
				return next(int(i)), true
			}, func(m asap.Message) {
				if !ok(m) {
					badCount.Add(1)
				}
			})
			if err != nil {
				once.Do(func() { firstErr = err })
			}
		}()
	}
	wg.Wait()
	return badCount.Load(), firstErr
}

// pipeline sends the requests next gives, keeping up to depth outstanding,
// and passes each answer to done. Over a connection that reads and writes
// in batches, the requests that can go out together are sent with one
// write, and the answers that are waiting are read with one read.
func (c *Client) pipeline(depth int, next func() (asap.Message, bool), done func(asap.Message)) error {
	bc, batched := c.c.(mapping.BatchConn)
	out := make([]mapping.Msg, depth)
	in := make([]mapping.Msg, depth+1)
	for i := range in {
		in[i].Buf = make([]byte, 4096)
	}
	outstanding, exhausted := 0, false
	for {
		k := 0
		for !exhausted && outstanding+k < depth {
			m, more := next()
			if !more {
				exhausted = true
				break
			}
			b, err := m.AppendBinary(out[k].Buf[:0])
			if err != nil {
				return err
			}
			out[k] = mapping.Msg{Buf: b, PPID: mapping.PPIDASAP}
			k++
		}
		if k > 0 {
			if batched {
				if _, err := bc.WriteBatch(out[:k]); err != nil {
					return err
				}
			} else {
				for _, m := range out[:k] {
					if err := c.c.WriteMsg(m.Buf, m.PPID); err != nil {
						return err
					}
				}
			}
			outstanding += k
		}
		if outstanding == 0 {
			return nil
		}
		// A deadline guards against a registrar that stops answering. It
		// is renewed every few hundred requests, not for each one:
		// reading the clock is a system call inside User-mode Linux, and
		// the benchmarks measure the registrars, not the load generator's
		// clock.
		if c.sent/256 != (c.sent+k)/256 || c.sent == 0 {
			c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
		}
		c.sent += k
		var n int
		var err error
		if batched {
			n, err = bc.ReadBatch(in, len(c.in))
		} else {
			n, in[0].PPID, err = c.c.ReadMsg(in[0].Buf)
			in[0].N = n
			n = 1
		}
		if err != nil {
			return err
		}
		for _, m := range in[:n] {
			if m.Err != nil {
				return m.Err
			}
			resp, err := asap.Unmarshal(m.Buf[:m.N])
			if err != nil {
				return err
			}
			if ka, err := c.answerKeepAlive(resp); ka || err != nil {
				if err != nil {
					return err
				}
				continue
			}
			outstanding--
			done(resp)
		}
	}
}
