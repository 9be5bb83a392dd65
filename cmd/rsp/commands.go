package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
)

func runResolve(ctx context.Context, args []string) error {
	var registrars []string
	fs := newFlags("resolve", argsOf("resolve"), &registrars)
	items := fs.Uint("n", 0, "how many elements to ask for (0: the registrar's choice)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return flag.ErrHelp
	}
	ep := endpoint.New(endpoint.Config{Registrars: registrars, ResolveItems: uint32(*items)})
	defer ep.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := ep.Resolve(ctx, asap.PoolHandle(fs.Arg(0)))
	if err != nil {
		return err
	}
	fmt.Printf("pool %q, policy %v\n", fs.Arg(0), res.Policy.Type)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PE\tTRANSPORT\tPOLICY\tHOME")
	for _, pe := range res.PEs {
		fmt.Fprintf(tw, "%08x\t%s\t%+v\t%08x\n", uint32(pe.ID), transportString(pe.UserTransport), pe.Policy, uint32(pe.Home))
	}
	return tw.Flush()
}

func transportString(t asap.Transport) string {
	kind := map[asap.ParamType]string{
		asap.ParamTCPTransport: "tcp", asap.ParamSCTPTransport: "sctp", asap.ParamUDPTransport: "udp",
		asap.ParamUDPLiteTransport: "udplite", asap.ParamDCCPTransport: "dccp", asap.ParamOpaqueTransport: "opaque",
	}[t.Kind]
	s := kind + ":"
	for i, a := range t.Addrs {
		if i > 0 {
			s += ","
		}
		s += a.String()
	}
	return fmt.Sprintf("%s:%d", s, t.Port)
}

func runEcho(ctx context.Context, args []string) error {
	var registrars []string
	fs := newFlags("echo", argsOf("echo"), &registrars)
	pool := fs.String("pool", "echo", "pool handle")
	local := fs.String("listen", ":0", "address to listen on")
	pol := fs.String("policy", "rr", "selection policy (rr, wrr:W, rand, wrand:W, pri:P, lu, lud:D, plu:D, rlu)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p, err := parsePolicy(*pol)
	if err != nil {
		return err
	}
	lc := rsp.ListenConfig{Registrars: registrars, LocalAddr: *local, Policy: p}
	l, err := lc.Listen(ctx, "tcp", "pool:"+*pool)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "echo server %08x in pool %q on %v\n", uint32(l.ID()), *pool, l.Addr())
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

func runTerminal(ctx context.Context, args []string) error {
	var registrars []string
	fs := newFlags("terminal", argsOf("terminal"), &registrars)
	wait := fs.Duration("wait", 2*time.Second, "how long to wait for a reply to a line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return flag.ErrHelp
	}
	d := rsp.Dialer{Registrars: registrars, Timeout: 5 * time.Second}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	c, err := d.DialContext(dctx, "tcp", "pool:"+fs.Arg(0))
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(os.Stderr, "connected to PE %08x of pool %q\n", uint32(c.PoolElement().ID), fs.Arg(0))
	in := bufio.NewScanner(os.Stdin)
	replies := bufio.NewReader(c)
	for in.Scan() {
		if _, err := fmt.Fprintf(c, "%s\n", in.Text()); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(*wait))
		line, err := replies.ReadString('\n')
		if line != "" {
			fmt.Printf("from PE %08x> %s", uint32(c.PoolElement().ID), line)
			if line[len(line)-1] != '\n' {
				fmt.Println()
			}
		}
		if err != nil {
			return err
		}
	}
	return in.Err()
}

func runRegister(ctx context.Context, args []string) error {
	var registrars []string
	fs := newFlags("register", argsOf("register"), &registrars)
	pol := fs.String("policy", "rr", "selection policy (rr, wrr:W, rand, wrand:W, pri:P, lu, lud:D, plu:D, rlu)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return flag.ErrHelp
	}
	p, err := parsePolicy(*pol)
	if err != nil {
		return err
	}
	lc := rsp.ListenConfig{Registrars: registrars}
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	reg, err := lc.Register(rctx, fs.Arg(0), fs.Arg(1), p)
	cancel()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "registered %s in pool %q as PE %08x; interrupt to deregister\n", fs.Arg(1), fs.Arg(0), uint32(reg.ID()))
	<-ctx.Done()
	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return reg.Close(dctx)
}
