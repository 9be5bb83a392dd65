package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rsp-go/rsp"
	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/registrar"
)

// demo is the live demonstration: an embedded registrar, pooled HTTP
// servers that are killed and restarted, and a client that keeps getting
// answers.
type demo struct {
	out        io.Writer
	start      time.Time
	registrars []string
	reg        *registrar.Registrar

	mu      sync.Mutex
	servers map[string]*demoServer
}

// demoServer is one pooled HTTP server with an ASAP endpoint of its own, as
// a separate process would have.
type demoServer struct {
	name string
	ep   *endpoint.Endpoint
	l    *rsp.Listener
	srv  *http.Server

	stream   *rsp.Listener // pool "stream": stateless sessions
	mu       sync.Mutex
	sessions []*rsp.Session
}

func (d *demo) logf(format string, args ...any) {
	fmt.Fprintf(d.out, "%6.2fs  %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

func runDemo(ctx context.Context, std stdio, args []string) error {
	fs := newFlags("demo", argsOf("demo"), std.err, nil)
	duration := fs.Duration("duration", 12*time.Second, "how long the demo runs")
	rate := fs.Duration("every", 50*time.Millisecond, "time between two client requests")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkArgs(fs); err != nil {
		return err
	}
	if *duration <= 0 || *rate <= 0 {
		return usageError(fs, "-duration and -every must be positive")
	}
	d := &demo{out: std.out, start: time.Now(), servers: make(map[string]*demoServer)}
	d.reg = registrar.New(registrar.Config{KeepAliveInterval: 500 * time.Millisecond, KeepAliveTimeout: 500 * time.Millisecond})
	defer d.reg.Close()
	l, err := registrar.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go d.reg.Serve(l)
	d.registrars = []string{"tcp:" + l.Addr().String()}
	d.logf("registrar %08x serving ASAP on %v", uint32(d.reg.ID()), l.Addr())

	for _, name := range []string{"a", "b", "c"} {
		if err := d.startServer(ctx, name); err != nil {
			return err
		}
	}
	defer d.stopAll()

	client := d.client()
	st, err := d.openStream(ctx)
	if err != nil {
		return err
	}
	defer st.s.Close()
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()

	events := []struct {
		at     time.Duration
		action string
		name   string
	}{
		{*duration * 2 / 12, "kill", "b"},
		{*duration * 4 / 12, "kill", "a"},
		{*duration * 6 / 12, "restart", "b"},
		{*duration * 8 / 12, "restart", "a"},
		{*duration * 9 / 12, "kill", "c"},
	}
	tick := time.NewTicker(*rate)
	defer tick.Stop()
	second := time.NewTicker(time.Second)
	defer second.Stop()
	var ok, failed, totalOK, totalFailed int
	answers := map[string]int{}
	for {
		select {
		case <-ctx.Done():
			if ok+failed > 0 {
				d.report(ok, failed, answers)
			}
			totalOK, totalFailed = totalOK+ok, totalFailed+failed
			fmt.Fprintf(d.out, "\n%d requests answered, %d failed, while servers died and came back.\n", totalOK, totalFailed)
			fmt.Fprintf(d.out, "One streaming session: %d messages sent, %d answered, %d failovers, error: %v.\n", st.sent, st.answered, st.s.Failovers(), st.err)
			if totalFailed > 0 {
				return fmt.Errorf("%d requests failed", totalFailed)
			}
			if st.err != nil {
				return fmt.Errorf("the streaming session failed: %w", st.err)
			}
			return nil
		case <-second.C:
			d.report(ok, failed, answers)
			st.report(d)
			totalOK, totalFailed = totalOK+ok, totalFailed+failed
			ok, failed = 0, 0
			clear(answers)
		case <-tick.C:
			for len(events) > 0 && time.Since(d.start) >= events[0].at {
				e := events[0]
				events = events[1:]
				if e.action == "kill" {
					d.kill(e.name)
				} else if err := d.startServer(ctx, e.name); err != nil {
					return err
				}
			}
			st.step(d)
			name, err := get(ctx, client)
			if err != nil {
				if ctx.Err() != nil {
					continue
				}
				failed++
				d.logf("GET failed: %v", err)
				continue
			}
			ok++
			answers[name]++
		}
	}
}

func (d *demo) client() *http.Client {
	ep := endpoint.New(endpoint.Config{Registrars: d.registrars, CacheLifetime: time.Second})
	dialer := &rsp.Dialer{Endpoint: ep, Timeout: time.Second}
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return dialer.DialContext(ctx, network, addr)
			},
			// A connection per request shows the pool's policy at work.
			DisableKeepAlives: true,
		},
	}
}

func get(ctx context.Context, c *http.Client) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://web/", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func (d *demo) startServer(ctx context.Context, name string) error {
	ep := endpoint.New(endpoint.Config{Registrars: d.registrars})
	lc := rsp.ListenConfig{Endpoint: ep, LocalAddr: "127.0.0.1:0"}
	l, err := lc.Listen(ctx, "tcp", "pool:web")
	if err != nil {
		ep.Close()
		return err
	}
	s := &demoServer{name: name, ep: ep, l: l}
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, name)
	})}
	go s.srv.Serve(l)
	// The streaming pool: each message is answered with the server's name
	// and the message, and stands alone, so sessions may move.
	slc := rsp.ListenConfig{Endpoint: ep, LocalAddr: "127.0.0.1:0", Session: rsp.SessionConfig{Stateless: true, HeartbeatInterval: 200 * time.Millisecond}}
	if s.stream, err = slc.Listen(ctx, "tcp", "pool:stream"); err != nil {
		s.srv.Close()
		ep.Close()
		return err
	}
	go s.serveStream()
	d.mu.Lock()
	d.servers[name] = s
	d.mu.Unlock()
	d.logf("server %s up: PE %08x on %v registered in pool \"web\"", name, uint32(l.ID()), l.Addr())
	return nil
}

// serveStream answers the streaming sessions.
func (s *demoServer) serveStream() {
	for {
		c, err := s.stream.Accept()
		if err != nil {
			return
		}
		ss, ok := c.(*rsp.Session)
		if !ok {
			c.Close()
			continue
		}
		s.mu.Lock()
		s.sessions = append(s.sessions, ss)
		s.mu.Unlock()
		go func() {
			defer ss.Close()
			for {
				m, err := ss.ReadMsg()
				if err != nil {
					return
				}
				if _, err := ss.Write(append([]byte(s.name+" "), m.Data...)); err != nil {
					return
				}
			}
		}()
	}
}

// kill stops a server as a crash would: no deregistration; the registrar
// notices on its own.
func (d *demo) kill(name string) {
	d.mu.Lock()
	s := d.servers[name]
	delete(d.servers, name)
	d.mu.Unlock()
	if s == nil {
		return
	}
	s.ep.Close()
	s.srv.Close()
	s.stream.Close()
	s.mu.Lock()
	for _, ss := range s.sessions {
		ss.GoAway()
	}
	s.mu.Unlock()
	d.logf("server %s killed (PE %08x, no deregistration; its streaming sessions are told to go)", name, uint32(s.l.ID()))
}

func (d *demo) stopAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.servers {
		s.srv.Close()
		s.stream.Close()
		s.ep.Close()
	}
}

// report prints a second's requests and the pool as the registrar holds it.
func (d *demo) report(ok, failed int, answers map[string]int) {
	names := make([]string, 0, len(answers))
	for n := range answers {
		names = append(names, fmt.Sprintf("%s:%d", n, answers[n]))
	}
	sort.Strings(names)
	d.mu.Lock()
	byID := map[asap.PEID]string{}
	for _, s := range d.servers {
		byID[s.l.ID()] = s.name
	}
	d.mu.Unlock()
	var members []string
	if p, found := d.reg.Pool("web"); found {
		for _, pe := range p.Elements {
			name, known := byID[pe.ID]
			if !known {
				name = "dead"
			}
			members = append(members, fmt.Sprintf("%s(%08x)", name, uint32(pe.ID)))
		}
	}
	sort.Strings(members)
	d.logf("%3d ok %d failed  answers [%s]  pool [%s]", ok, failed, strings.Join(names, " "), strings.Join(members, " "))
}

// stream is the demo's streaming session: a numbered message each tick,
// and its answer read back, across the servers' deaths.
type stream struct {
	s              *rsp.Session
	failovers      chan rsp.FailoverEvent
	sent, answered int
	answers        map[string]int
	err            error
}

func (d *demo) openStream(ctx context.Context) (*stream, error) {
	ep := endpoint.New(endpoint.Config{Registrars: d.registrars, CacheLifetime: time.Second})
	st := &stream{failovers: make(chan rsp.FailoverEvent, 16), answers: map[string]int{}}
	dialer := &rsp.Dialer{Endpoint: ep, Timeout: time.Second,
		Session: rsp.SessionConfig{HeartbeatInterval: 200 * time.Millisecond, Failovers: st.failovers}}
	c, err := dialer.DialContext(ctx, "tcp", "pool:stream")
	if err != nil {
		return nil, err
	}
	s, ok := c.(*rsp.Session)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("pool stream gave a %T, not a session", c)
	}
	st.s = s
	d.logf("streaming session to pool \"stream\" on PE %08x", uint32(s.Element().ID))
	return st, nil
}

// step sends the next message and reads its answer.
func (st *stream) step(d *demo) {
	for {
		select {
		case f := <-st.failovers:
			d.logf("streaming session failed over from PE %08x to PE %08x in %v, %d messages replayed, no error", uint32(f.Old.ID), uint32(f.New.ID), f.Took.Round(time.Millisecond), f.Replayed)
			continue
		default:
		}
		break
	}
	if st.err != nil {
		return
	}
	st.sent++
	st.s.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := st.s.WriteMsg([]byte(fmt.Sprint(st.sent)), rsp.WriteOptions{AckRequest: true}); err != nil {
		st.err = err
		return
	}
	// Answers to messages replayed after a failover come again: read up
	// to this message's.
	for {
		m, err := st.s.ReadMsg()
		if err != nil {
			st.err = err
			return
		}
		name, n, _ := strings.Cut(string(m.Data), " ")
		if n == fmt.Sprint(st.sent) {
			st.answered++
			st.answers[name]++
			return
		}
	}
}

func (st *stream) report(d *demo) {
	names := make([]string, 0, len(st.answers))
	for n, k := range st.answers {
		names = append(names, fmt.Sprintf("%s:%d", n, k))
	}
	sort.Strings(names)
	d.logf("stream: %d of %d messages answered, by %s", st.answered, st.sent, strings.Join(names, " "))
	clear(st.answers)
}
