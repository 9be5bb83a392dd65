// Command rsp is the command-line tool of rsp, Reliable Server Pooling for
// Go.
//
//	rsp resolve POOL                 list a pool's elements
//	rsp echo [-pool P] [-transport tcp|sctp]  run a pooled echo server
//	rsp terminal POOL                send standard input to a pool, print the replies
//	rsp register POOL PROTO:HOST:PORT  put an existing service in a pool
//	rsp dump NETWORK:HOST:PORT       print a registrar's handlespace, read over ENRP
//	rsp demo                         an embedded registrar, three pooled HTTP servers and a client
//
// Registrars come from -registrar, or else the environment variable
// RSP_REGISTRARS (comma-separated, such as "tcp:10.0.0.1:3863"); with
// RSP_ANNOUNCE set to a multicast group ("239.0.0.50:3863"), also from the
// registrars' announces there; with neither, tcp:127.0.0.1:3863.
//
// The commands that speak to registrars take -tls-ca, -tls-cert and
// -tls-key; with any of them, every TCP link runs over TLS 1.3: to the
// registrar (whether its address says tcp: or tls:), and between pool
// users and pool elements, whose certificates must name the pool handle as
// a DNS name (rsp echo -pool echo needs a certificate for "echo"). rsp
// demo needs no certificates.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

type command struct {
	name, args, help string
	run              func(ctx context.Context, std stdio, args []string) error
}

// stdio is where a command reads its input and writes its output and its
// messages: the process's standard streams.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// errUsage is returned by a command whose arguments are wrong after it has
// printed what is wrong and its usage.
var errUsage = errors.New("usage")

var commands []command

func init() {
	commands = []command{
		{"resolve", "[flags] POOL", "list the elements of a pool", runResolve},
		{"echo", "[flags]", "run a pooled echo server", runEcho},
		{"terminal", "[flags] POOL", "send standard input to a pool line by line and print the replies", runTerminal},
		{"register", "[flags] POOL PROTO:HOST:PORT", "register an existing service (NO_MAPPING) in a pool until interrupted", runRegister},
		{"dump", "NETWORK:HOST:PORT", "print a registrar's handlespace and peers, read over ENRP from its ENRP address (as rsplib's hsdump)", runDump},
		{"demo", "[flags]", "an embedded registrar, three pooled HTTP servers and a client that keeps working while servers die", runDemo},
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: rsp COMMAND [flags] [arguments]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-9s %s\n", c.name, c.help)
	}
	fmt.Fprintf(os.Stderr, "\nRun rsp COMMAND -h for a command's flags.\n")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "help" || os.Args[1] == "--help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, c := range commands {
		if c.name == os.Args[1] {
			err := c.run(ctx, stdio{os.Stdin, os.Stdout, os.Stderr}, os.Args[2:])
			if errors.Is(err, flag.ErrHelp) {
				return
			}
			if errors.Is(err, errUsage) {
				os.Exit(2)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "rsp %s: %v\n", c.name, err)
				os.Exit(1)
			}
			return
		}
	}
	fmt.Fprintf(os.Stderr, "rsp: unknown command %q\n\n", os.Args[1])
	usage()
	os.Exit(2)
}

// newFlags returns a flag set for a command, writing to stderr, with the
// common -registrar flag.
func newFlags(name, args string, stderr io.Writer, registrars *[]string) *flag.FlagSet {
	fs := flag.NewFlagSet("rsp "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: rsp %s %s\n\nFlags:\n", name, args)
		fs.PrintDefaults()
	}
	if registrars != nil {
		fs.Func("registrar", "registrars, comma-separated (tcp:HOST:PORT, tls:HOST:PORT or sctp:HOST:PORT; default $RSP_REGISTRARS or tcp:127.0.0.1:3863)", func(s string) error {
			*registrars = append(*registrars, strings.Split(s, ",")...)
			return nil
		})
	}
	return fs
}

// parseFlags parses a command's flags. A bad flag or value is a usage
// error: the flag package has printed it, with the usage, once.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return errUsage
	}
	return err
}

// usageError prints what is wrong with a command's arguments and the
// command's usage, and returns errUsage.
func usageError(fs *flag.FlagSet, format string, args ...any) error {
	fmt.Fprintf(fs.Output(), "%s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return errUsage
}

// checkArgs checks that fs has one argument for each of names (such as
// "POOL") and otherwise returns a usage error naming what is missing or
// extra.
func checkArgs(fs *flag.FlagSet, names ...string) error {
	switch {
	case fs.NArg() < len(names):
		return usageError(fs, "missing %s", strings.Join(names[fs.NArg():], " "))
	case fs.NArg() > len(names):
		return usageError(fs, "unexpected arguments %q", fs.Args()[len(names):])
	}
	return nil
}

func argsOf(c string) string {
	for _, x := range commands {
		if x.name == c {
			return x.args
		}
	}
	return ""
}
