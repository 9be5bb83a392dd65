package enrp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/mapping"
)

// Dump is a registrar's handlespace and peer list as Fetch reads them.
type Dump struct {
	Server asap.ServerID            // the registrar's identifier
	Peers  []asap.ServerInformation // its peer list
	Pools  []PoolEntry              // its handlespace, pool by pool
}

// ErrRejected is returned by Fetch when the registrar rejects the request
// (as one that is still starting does).
var ErrRejected = errors.New("enrp: request rejected")

// Fetch reads a registrar's peer list and whole handlespace over c, an
// ENRP connection to it, as rsplib's hsdump does: a presence of a
// short-lived peer with identifier self, a list request, and handle table
// requests until a response without the M flag. The registrar keeps self
// in its peer list until it notices that it is gone.
func Fetch(ctx context.Context, c mapping.Conn, self asap.ServerID) (*Dump, error) {
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
		defer c.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	send := func(m Message) error {
		b, err := m.AppendBinary(nil)
		if err != nil {
			return err
		}
		return c.WriteMsg(b, mapping.PPIDENRP)
	}
	hdr := Header{Sender: self}
	if err := send(&Presence{Header: hdr, Checksum: 0xffff}); err != nil {
		return nil, err
	}
	if err := send(&ListRequest{Header: hdr}); err != nil {
		return nil, err
	}
	if err := send(&HandleTableRequest{Header: hdr}); err != nil {
		return nil, err
	}
	d := &Dump{}
	index := make(map[asap.PoolHandle]int)
	listed, tableDone := false, false
	buf := make([]byte, 1<<16)
	for !listed || !tableDone {
		n, ppid, err := c.ReadMsg(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if tableDone && errors.Is(err, os.ErrDeadlineExceeded) {
				return d, nil // no peer list: the handlespace is what counts
			}
			return nil, err
		}
		if ppid != mapping.PPIDENRP {
			continue
		}
		m, err := Unmarshal(buf[:n])
		if m == nil {
			return nil, err
		}
		switch m := m.(type) {
		case *Presence:
			if m.ReplyRequired {
				send(&Presence{Header: Header{Sender: self, Receiver: m.Sender}, Checksum: 0xffff})
			}
		case *ListResponse:
			d.Server = m.Sender
			if !m.Reject {
				d.Peers = append(d.Peers, m.Servers...)
			}
			listed = true
		case *HandleTableResponse:
			d.Server = m.Sender
			if m.Reject {
				return nil, fmt.Errorf("%w: handle table request of %08x", ErrRejected, uint32(m.Sender))
			}
			for _, p := range m.Pools {
				i, ok := index[p.Handle]
				if !ok {
					i = len(d.Pools)
					index[p.Handle] = i
					d.Pools = append(d.Pools, PoolEntry{Handle: p.Handle})
				}
				d.Pools[i].PEs = append(d.Pools[i].PEs, p.PEs...)
			}
			if m.More {
				if err := send(&HandleTableRequest{Header: hdr}); err != nil {
					return nil, err
				}
				continue
			}
			tableDone = true
			if !listed {
				// Wait a moment for the peer list, else go without.
				c.SetReadDeadline(time.Now().Add(time.Second))
			}
		}
	}
	return d, nil
}
