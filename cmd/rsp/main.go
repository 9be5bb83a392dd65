// Command rsp is the command-line tool of rsp, Reliable Server Pooling for
// Go.
//
//	rsp resolve POOL                 list a pool's elements
//	rsp echo [-pool P]               run a pooled echo server
//	rsp terminal POOL                send standard input to a pool, print the replies
//	rsp register POOL PROTO:HOST:PORT  put an existing service in a pool
//	rsp demo                         an embedded registrar, three pooled HTTP servers and a client
//
// Registrars come from -registrar, or else the environment variable
// RSP_REGISTRARS (comma-separated, such as "tcp:10.0.0.1:3863"), or else
// tcp:127.0.0.1:3863.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

type command struct {
	name, args, help string
	run              func(ctx context.Context, args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"resolve", "[flags] POOL", "list the elements of a pool", runResolve},
		{"echo", "[flags]", "run a pooled echo server", runEcho},
		{"terminal", "[flags] POOL", "send standard input to a pool line by line and print the replies", runTerminal},
		{"register", "[flags] POOL PROTO:HOST:PORT", "register an existing service (NO_MAPPING) in a pool until interrupted", runRegister},
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
			err := c.run(ctx, os.Args[2:])
			if errors.Is(err, flag.ErrHelp) {
				return
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

// newFlags returns a flag set for a command with the common -registrar
// flag.
func newFlags(name, args string, registrars *[]string) *flag.FlagSet {
	fs := flag.NewFlagSet("rsp "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: rsp %s %s\n\nFlags:\n", name, args)
		fs.PrintDefaults()
	}
	if registrars != nil {
		fs.Func("registrar", "registrars, comma-separated (tcp:HOST:PORT or sctp:HOST:PORT; default $RSP_REGISTRARS or tcp:127.0.0.1:3863)", func(s string) error {
			*registrars = append(*registrars, strings.Split(s, ",")...)
			return nil
		})
	}
	return fs
}

func argsOf(c string) string {
	for _, x := range commands {
		if x.name == c {
			return x.args
		}
	}
	return ""
}
