package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/enrp"
	"github.com/rsp-go/rsp/mapping"
)

// runDump prints a registrar's handlespace and peers, read over ENRP as
// rsplib's hsdump reads them: from an rsp registrar's ENRP listener
// (tcp: or sctp:) or from rsplib's (sctp:HOST:9901).
func runDump(ctx context.Context, std stdio, args []string) error {
	fs := newFlags("dump", argsOf("dump"), std.err, nil)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkArgs(fs, "NETWORK:HOST:PORT"); err != nil {
		return err
	}
	network, address, ok := mapping.SplitAddress(fs.Arg(0))
	if !ok {
		return usageError(fs, "%q: want network:host:port, such as sctp:10.0.0.1:9901", fs.Arg(0))
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var d mapping.Dialer
	c, err := d.DialContext(ctx, network, address)
	if err != nil {
		return err
	}
	defer c.Close()
	dump, err := enrp.Fetch(ctx, c, asap.ServerID(rand.Uint32()|1))
	if err != nil {
		return err
	}
	// A registrar may list itself among its peers.
	peers := slices.DeleteFunc(dump.Peers, func(p asap.ServerInformation) bool { return p.Server == dump.Server })
	n := 0
	for _, p := range dump.Pools {
		n += len(p.PEs)
	}
	fmt.Fprintf(std.out, "registrar %08x: %d peers, %d pools, %d elements\n", uint32(dump.Server), len(peers), len(dump.Pools), n)
	tw := tabwriter.NewWriter(std.out, 0, 4, 2, ' ', 0)
	if len(peers) > 0 {
		fmt.Fprintln(tw, "PEER\tENRP")
		for _, p := range peers {
			fmt.Fprintf(tw, "%08x\t%s\n", uint32(p.Server), transportString(p.Transport))
		}
		tw.Flush()
	}
	for _, p := range dump.Pools {
		pol := ""
		if len(p.PEs) > 0 {
			pol = p.PEs[0].Policy.Type.String()
		}
		fmt.Fprintf(std.out, "pool %q, policy %s, %d elements\n", p.Handle, pol, len(p.PEs))
		fmt.Fprintln(tw, "  PE\tHOME\tTRANSPORT\tPOLICY\tLIFE\tASAP")
		for _, pe := range p.PEs {
			at := "-"
			if pe.ASAPTransport != nil {
				at = transportString(*pe.ASAPTransport)
			}
			fmt.Fprintf(tw, "  %08x\t%08x\t%s\t%v\t%v\t%s\n", uint32(pe.ID), uint32(pe.Home), transportString(pe.UserTransport), pe.Policy, pe.Life, at)
		}
		tw.Flush()
	}
	return nil
}
