package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
)

// Attack is the mix of misbehaving peers of the registrar's load check
// (issue 9): a flood of resolutions, senders that trickle their frames in,
// idle connections that hold sockets, and a peer that reports every
// element unreachable, all at once, on loopback TCP. Each group comes from
// loopback addresses of its own (127.0.0.x), as distinct hosts would.
type Attack struct {
	Flooders  int // connections sending resolutions as fast as they can
	Tricklers int // connections trickling a frame in, a byte every 100 ms
	Idle      int // connections that open and do nothing (250 per address)
	Reporter  bool
}

// IssueAttack is the load check's attack: four flooding connections, ten
// trickling ones, 1000 idle ones and a reporter.
var IssueAttack = Attack{Flooders: 4, Tricklers: 10, Idle: 1000, Reporter: true}

// Pool is a pool registered over one connection whose elements answer
// their keep-alives for as long as it runs.
type Pool struct {
	Handle asap.PoolHandle
	IDs    []asap.PEID
	c      mapping.Conn
	done   chan struct{}
}

// RegisterPool registers n elements in pool h at addr over one connection
// and answers their keep-alives until Close.
func RegisterPool(ctx context.Context, addr string, h asap.PoolHandle, n int) (*Pool, error) {
	var d mapping.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Pool{Handle: h, c: c, done: make(chan struct{})}
	buf := make([]byte, 65536)
	for i := range n {
		id := asap.PEID(0x1000 + i)
		b, _ := (&asap.Registration{Handle: h, PE: pe(id, netip.MustParseAddr("127.0.0.1"), uint16(1000+i), asap.ParamTCPTransport)}).AppendBinary(nil)
		if err := c.WriteMsg(b, mapping.PPIDASAP); err != nil {
			c.Close()
			return nil, err
		}
		for {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			k, _, err := c.ReadMsg(buf)
			if err != nil {
				c.Close()
				return nil, err
			}
			m, err := asap.Unmarshal(buf[:k])
			if rr, ok := m.(*asap.RegistrationResponse); ok && err == nil {
				if rr.Reject {
					c.Close()
					return nil, fmt.Errorf("registration of %s/%d refused: %v", h, id, rr.Causes)
				}
				break
			}
		}
		p.IDs = append(p.IDs, id)
	}
	c.SetReadDeadline(time.Time{})
	go func() {
		defer close(p.done)
		cl := &Client{c: c, in: buf}
		for {
			k, _, err := c.ReadMsg(buf)
			if err != nil {
				return
			}
			if m, err := asap.Unmarshal(buf[:k]); err == nil {
				if _, err := cl.answerKeepAlive(m); err != nil {
					return
				}
			}
		}
	}()
	return p, nil
}

// Close ends the pool's connection.
func (p *Pool) Close() { p.c.Close(); <-p.done }

// Start runs the attack on the registrar at addr against pool p until
// ctx ends; the returned function waits for its goroutines.
func (a Attack) Start(ctx context.Context, addr string, p *Pool) (wait func(), err error) {
	var wg sync.WaitGroup
	var conns []net.Conn
	fail := func(err error) (func(), error) {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
		return nil, err
	}
	dialFrom := func(src string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		return d.DialContext(ctx, "tcp", addr)
	}
	for i := range a.Idle {
		c, err := dialFrom(fmt.Sprintf("127.0.1.%d", 1+i/250))
		if err != nil {
			return fail(fmt.Errorf("idle connection %d: %w", i, err))
		}
		conns = append(conns, c)
	}
	closeOnDone := func(c net.Conn) {
		wg.Go(func() { <-ctx.Done(); c.Close() })
	}
	for _, c := range conns {
		closeOnDone(c)
	}
	resolution := frame(mustEncode(&asap.HandleResolution{Handle: p.Handle}))
	for i := range a.Flooders {
		c, err := dialFrom(fmt.Sprintf("127.0.2.%d", 1+i))
		if err != nil {
			return fail(err)
		}
		closeOnDone(c)
		burst := slices.Repeat(resolution, 64)
		wg.Go(func() { // as fast as the registrar takes them
			for ctx.Err() == nil {
				if _, err := c.Write(burst); err != nil {
					return
				}
			}
		})
		wg.Go(func() { discard(c) })
	}
	for i := range a.Tricklers {
		wg.Go(func() {
			for ctx.Err() == nil {
				c, err := dialFrom(fmt.Sprintf("127.0.3.%d", 1+i))
				if err != nil {
					return
				}
				stop := context.AfterFunc(ctx, func() { c.Close() })
				for _, b := range resolution {
					if _, err := c.Write([]byte{b}); err != nil {
						break
					}
					select {
					case <-time.After(100 * time.Millisecond):
					case <-ctx.Done():
					}
				}
				stop()
				c.Close()
			}
		})
	}
	if a.Reporter {
		c, err := dialFrom("127.0.4.1")
		if err != nil {
			return fail(err)
		}
		closeOnDone(c)
		var reports []byte
		for _, id := range p.IDs {
			reports = append(reports, frame(mustEncode(&asap.EndpointUnreachable{Handle: p.Handle, ID: id}))...)
		}
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := c.Write(reports); err != nil {
					return
				}
				time.Sleep(time.Millisecond)
			}
		})
		wg.Go(func() { discard(c) })
	}
	return wg.Wait, nil
}

// discard reads c until it fails.
func discard(c net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

// frame returns an ASAP message in a TCP mapping frame.
func frame(msg []byte) []byte {
	return append(mapping.AppendFrameHeader(nil, mapping.FrameHeader{Type: mapping.FrameData, Length: uint32(len(msg)), Tag: mapping.PPIDASAP}), msg...)
}

func mustEncode(m asap.Message) []byte {
	b, err := m.AppendBinary(nil)
	if err != nil {
		panic(err)
	}
	return b
}

// ResolutionLatencies has a well-behaved pool user resolve pool h at addr
// n times, one resolution every gap (well within the registrar's default
// rate limit), and returns how long each answer took.
func ResolutionLatencies(ctx context.Context, addr string, h asap.PoolHandle, n int, gap time.Duration) ([]time.Duration, error) {
	return roundTrips(ctx, addr, mustEncode(&asap.HandleResolution{Handle: h}), n, gap, func(b []byte) error {
		m, err := asap.Unmarshal(b)
		if err != nil {
			return err
		}
		if hr, ok := m.(*asap.HandleResolutionResponse); !ok || len(hr.Causes) > 0 || len(hr.PEs) == 0 {
			return fmt.Errorf("%w: %T %+v", errBadResolution, m, m)
		}
		return nil
	})
}

// roundTrips sends req to addr over the TCP mapping n times, one every
// gap, checks each answer with check (if not nil) and returns how long
// each took.
func roundTrips(ctx context.Context, addr string, req []byte, n int, gap time.Duration, check func([]byte) error) ([]time.Duration, error) {
	var d mapping.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	buf := make([]byte, 65536)
	lat := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if err := c.WriteMsg(req, mapping.PPIDASAP); err != nil {
			return lat, err
		}
		c.SetReadDeadline(start.Add(5 * time.Second))
		k, _, err := c.ReadMsg(buf)
		if err != nil {
			return lat, err
		}
		lat = append(lat, time.Since(start))
		if check != nil {
			if err := check(buf[:k]); err != nil {
				return lat, err
			}
		}
		select {
		case <-time.After(gap):
		case <-ctx.Done():
			return lat, ctx.Err()
		}
	}
	return lat, nil
}

var errBadResolution = errors.New("benchmarks: resolution not answered with elements")

// Quantile returns the q-quantile (0 < q ≤ 1) of ds, which it sorts.
func Quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := min(int(q*float64(len(ds))+0.5), len(ds)) - 1
	return ds[max(i, 0)]
}
