package main

import (
	"bufio"
	"context"
	"crypto/tls"
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
	"github.com/rsp-go/rsp/internal/tlsflag"
)

func runResolve(ctx context.Context, std stdio, args []string) error {
	var registrars []string
	fs := newFlags("resolve", argsOf("resolve"), std.err, &registrars)
	items := fs.Uint("n", 0, "how many elements to ask for (0: the registrar's choice)")
	tf := addTLSFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkArgs(fs, "POOL"); err != nil {
		return err
	}
	tc, err := tf.Client()
	if err != nil {
		return err
	}
	ep := endpoint.New(endpoint.Config{Registrars: registrars, ResolveItems: uint32(*items), TLSConfig: tc})
	defer ep.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := ep.Resolve(ctx, asap.PoolHandle(fs.Arg(0)))
	if err != nil {
		return err
	}
	fmt.Fprintf(std.out, "pool %q, policy %v\n", fs.Arg(0), res.Policy.Type)
	tw := tabwriter.NewWriter(std.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PE\tTRANSPORT\tPOLICY\tHOME")
	for _, pe := range res.PEs {
		fmt.Fprintf(tw, "%08x\t%s\t%v\t%08x\n", uint32(pe.ID), transportString(pe.UserTransport), pe.Policy, uint32(pe.Home))
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

// echoShutdownWait bounds how long an interrupted echo server waits for
// its sessions to move to other elements.
const echoShutdownWait = 5 * time.Second

func runEcho(ctx context.Context, std stdio, args []string) error {
	var registrars []string
	fs := newFlags("echo", argsOf("echo"), std.err, &registrars)
	pool := fs.String("pool", "echo", "pool handle")
	local := fs.String("listen", ":0", "address to listen on")
	pol := policyFlag(fs)
	transport := "tcp"
	fs.Func("transport", "transport pool users reach the server over: tcp (default), or sctp where the kernel has it (rsplib's pool users speak SCTP only; a pool holds elements of one transport)", func(s string) error {
		if s != "tcp" && s != "sctp" {
			return fmt.Errorf("unknown transport %q: want tcp or sctp", s)
		}
		transport = s
		return nil
	})
	tf := addTLSFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkArgs(fs); err != nil {
		return err
	}
	if transport == "sctp" && tf.Set() {
		return errors.New("TLS needs -transport tcp: rsp serves no TLS over SCTP")
	}
	lc := rsp.ListenConfig{Registrars: registrars, LocalAddr: *local, Policy: *pol, Session: rsp.SessionConfig{Stateless: true}}
	var err error
	if lc.RegistrarTLSConfig, err = tf.Client(); err != nil {
		return err
	}
	if tf.Set() {
		if lc.TLSConfig, err = tf.Server(); err != nil {
			return err
		}
		lc.TLSConfig.ClientAuth, lc.TLSConfig.ClientCAs = tls.NoClientCert, nil
	}
	l, err := lc.Listen(ctx, transport, "pool:"+*pool)
	if err != nil {
		return err
	}
	fmt.Fprintf(std.err, "echo server %08x in pool %q on %v\n", uint32(l.ID()), *pool, l.Addr())
	shut := make(chan struct{})
	go func() {
		defer close(shut)
		<-ctx.Done()
		// Deregister, and move the sessions to other elements once each
		// has echoed what it read.
		sctx, cancel := context.WithTimeout(context.Background(), echoShutdownWait)
		defer cancel()
		l.Shutdown(sctx)
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				<-shut // the sessions' GOAWAYs are out
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			// An interrupt ends the connections too, not only the
			// listener: a client must not keep the server running.
			// Shutdown sends the sessions to another element.
			stop := context.AfterFunc(ctx, func() {
				if _, ok := c.(*rsp.Session); !ok {
					c.Close()
				}
			})
			defer stop()
			io.Copy(c, c)
		}()
	}
}

func runTerminal(ctx context.Context, std stdio, args []string) error {
	var registrars []string
	fs := newFlags("terminal", argsOf("terminal"), std.err, &registrars)
	wait := fs.Duration("wait", 2*time.Second, "how long to wait for a reply to a line (over a session, 4 s more, for it to move from a silent element)")
	tf := addTLSFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkArgs(fs, "POOL"); err != nil {
		return err
	}
	d := rsp.Dialer{Registrars: registrars, Timeout: 5 * time.Second}
	var err error
	if d.RegistrarTLSConfig, err = tf.Client(); err != nil {
		return err
	}
	d.TLSConfig = d.RegistrarTLSConfig
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	c, err := d.DialContext(dctx, "tcp", "pool:"+fs.Arg(0))
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()
	pe := func() uint32 { e, _ := rsp.PoolElementOf(c); return uint32(e.ID) }
	fmt.Fprintf(std.err, "connected to PE %08x of pool %q\n", pe(), fs.Arg(0))
	// Standard input is read aside so that an interrupt ends the terminal
	// while it waits for a line.
	lines := make(chan string)
	inErr := make(chan error, 1)
	go func() {
		in := bufio.NewScanner(std.in)
		for in.Scan() {
			select {
			case lines <- in.Text():
			case <-ctx.Done():
				return
			}
		}
		inErr <- in.Err()
	}()
	replies := bufio.NewReader(c)
	for {
		var text string
		select {
		case <-ctx.Done():
			return nil
		case err := <-inErr:
			return err
		case text = <-lines:
		}
		line, err := exchangeLine(ctx, c, replies, text, *wait)
		if line != "" {
			fmt.Fprintf(std.out, "from PE %08x> %s", pe(), line)
			if line[len(line)-1] != '\n' {
				fmt.Fprintln(std.out)
			}
		}
		if err != nil {
			return err
		}
	}
}

func runRegister(ctx context.Context, std stdio, args []string) error {
	var registrars []string
	fs := newFlags("register", argsOf("register"), std.err, &registrars)
	pol := policyFlag(fs)
	tf := addTLSFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkArgs(fs, "POOL", "PROTO:HOST:PORT"); err != nil {
		return err
	}
	p := *pol
	lc := rsp.ListenConfig{Registrars: registrars}
	var err error
	if lc.RegistrarTLSConfig, err = tf.Client(); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	reg, err := lc.Register(rctx, fs.Arg(0), fs.Arg(1), p)
	cancel()
	if err != nil {
		return err
	}
	fmt.Fprintf(std.err, "registered %s in pool %q as PE %08x; interrupt to deregister\n", fs.Arg(1), fs.Arg(0), uint32(reg.ID()))
	<-ctx.Done()
	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return reg.Close(dctx)
}

// addTLSFlags defines the TLS flags of a command that speaks to
// registrars and pool elements. With any of them, every TCP link of the
// command runs over TLS 1.3: to the registrar, whatever its address form,
// and to or from pool elements.
func addTLSFlags(fs *flag.FlagSet) *tlsflag.Flags {
	var f tlsflag.Flags
	f.Register(fs, "tls-ca", "PEM file of the CA that verifies the registrar and pool elements (default: the system's roots); any -tls- flag turns on TLS on every TCP link")
	return &f
}

// sessionSilence is how much longer than its wait the terminal waits for
// a reply over a session: the time the session's default heartbeats take
// to find its element silent (rsp.DefaultHeartbeatMisses intervals), and
// one more interval to move to another element and replay the line.
const sessionSilence = (rsp.DefaultHeartbeatMisses + 1) * rsp.DefaultHeartbeatInterval

// exchangeLine sends a line and reads the reply within wait (over a
// session, within wait and then sessionSilence, so that a session that
// fails over from a silent element carries the line to the next). Over an
// *rsp.ASAPConn (an rsplib element), whose failover replays nothing, a
// line whose reply does not come is sent again once to the element the
// connection moved to, moving it first if it had not moved (an element
// that stopped answering): the terminal carries on as rsplib's does.
func exchangeLine(ctx context.Context, c net.Conn, replies *bufio.Reader, text string, wait time.Duration) (string, error) {
	ac, _ := c.(*rsp.ASAPConn)
	for try := 0; ; try++ {
		before := 0
		if ac != nil {
			before = ac.Failovers()
		}
		if _, err := fmt.Fprintf(c, "%s\n", text); err != nil {
			return "", err
		}
		c.SetReadDeadline(time.Now().Add(wait))
		line, err := replies.ReadString('\n')
		if _, ok := c.(*rsp.Session); ok && errors.Is(err, os.ErrDeadlineExceeded) {
			// A session notices a silent element by its heartbeats,
			// moves to another and replays the line there: wait for
			// that too rather than give up before it could.
			c.SetReadDeadline(time.Now().Add(sessionSilence))
			more, err := replies.ReadString('\n')
			return line + more, err
		}
		if ac == nil || try > 0 || line != "" || !errors.Is(err, os.ErrDeadlineExceeded) {
			return line, err
		}
		if ac.Failovers() == before {
			if ferr := ac.Failover(ctx); ferr != nil {
				return "", ferr
			}
		}
	}
}
