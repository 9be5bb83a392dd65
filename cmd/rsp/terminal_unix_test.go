//go:build unix

package main

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTerminalSurvivesKilledAndStoppedElements runs the issue's
// motivating case with processes: a terminal on a pool of three echo
// servers carries on when the server it is on is killed (SIGKILL) and
// when the next one it is on stops without closing (SIGSTOP), and every
// line typed is answered, none lost. Before the terminal waited for a
// session to notice a silent element, it ended with "i/o timeout" after
// its 2 s wait, before the session's heartbeats (3 s) found the element
// stopped.
func TestTerminalSurvivesKilledAndStoppedElements(t *testing.T) {
	t.Parallel()
	bin := buildCommand(t, t.TempDir(), "rsp")
	_, reg := startRegistrar(t)
	echoes := map[string]*process{}
	idRE := regexp.MustCompile(`echo server ([0-9a-f]{8})`)
	for range 3 {
		p := startProcess(t, bin, nil, "echo", "-registrar", reg, "-listen", "127.0.0.1:0", "-pool", "silent")
		var id string
		waitFor(t, "the echo server", func() bool {
			m := idRE.FindStringSubmatch(p.stderr.String())
			if m != nil {
				id = m[1]
			}
			return m != nil
		})
		echoes[id] = p
	}
	stopped := map[*process]bool{}
	t.Cleanup(func() {
		for p := range stopped {
			p.cmd.Process.Signal(syscall.SIGCONT)
		}
	})
	stdin, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	term := startProcess(t, bin, stdin, "terminal", "-registrar", reg, "silent")
	stdin.Close()
	replyRE := regexp.MustCompile(`from PE ([0-9a-f]{8})> (line \d+)\n`)
	// send writes a line and waits for its reply, returning the element
	// that answered.
	send := func(n int) string {
		t.Helper()
		fmt.Fprintf(w, "line %d\n", n)
		want := fmt.Sprintf("line %d", n)
		deadline := time.Now().Add(20 * time.Second)
		for {
			for _, m := range replyRE.FindAllStringSubmatch(term.stdout.String(), -1) {
				if m[2] == want {
					return m[1]
				}
			}
			select {
			case <-term.done:
				t.Fatalf("the terminal ended waiting for %q: %v\nstdout:\n%s\nstderr:\n%s", want, term.err, term.stdout, term.stderr)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no reply to %q; stdout:\n%s\nstderr:\n%s", want, term.stdout, term.stderr)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	on := send(1)
	send(2)
	if err := echoes[on].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := on
	select { // as for the stop below: until it is dead it may answer
	case <-echoes[killed].done:
	case <-time.After(10 * time.Second):
		t.Fatal("the killed element did not end")
	}
	if on = send(3); on == killed {
		t.Fatalf("line 3 answered by the killed element %s", on)
	}
	send(4)
	if err := echoes[on].cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped[echoes[on]] = true
	// kill returns before the stop takes effect: until then the element
	// may still answer.
	waitFor(t, "the element to stop", func() bool { return processStopped(echoes[on].cmd.Process.Pid) })
	silent := on
	if on = send(5); on == silent || on == killed {
		t.Fatalf("line 5 answered by %s; killed %s, stopped %s", on, killed, silent)
	}
	send(6)
	out := term.stdout.String()
	for n := 1; n <= 6; n++ {
		if c := strings.Count(out, fmt.Sprintf("> line %d\n", n)); c != 1 {
			t.Errorf("line %d answered %d times, want once; stdout:\n%s", n, c, out)
		}
	}
	if code := term.signal(t, os.Interrupt); code != 0 {
		t.Errorf("terminal: exit %d after SIGINT, want 0; stderr:\n%s", code, term.stderr)
	}
}

// processStopped reports whether process pid is stopped (state T in
// /proc/PID/stat). Where there is no /proc it waits a moment and says
// yes.
func processStopped(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		time.Sleep(100 * time.Millisecond)
		return true
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'T'
}
