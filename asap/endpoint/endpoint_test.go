package endpoint_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/asap/endpoint"
	"github.com/rsp-go/rsp/mapping"
	"github.com/rsp-go/rsp/policy"
)

// quiet is a re-registration period no test waits for.
const quiet = time.Minute

func TestRegistrationContents(t *testing.T) {
	f := newFake(t, answering(nil))
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, Reregistration: 10 * time.Second})
	ctx := ctxTimeout(t, waitLong)

	pe := testPE(0, 7)
	pe.Life = 0
	pe.Policy = policy.Policy{Type: policy.LeastUsed, Load: 5}
	r, err := ep.Register(ctx, "echo", pe)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := nextOf[*asap.Registration](f)
	if m.Handle != "echo" {
		t.Errorf("registration handle %q, want echo", m.Handle)
	}
	if m.PE.ID == 0 || m.PE.ID != r.ID() {
		t.Errorf("registered PE id %#x, Registration.ID %#x: want one non-zero id", m.PE.ID, r.ID())
	}
	if m.PE.Life != 30*time.Second {
		t.Errorf("registration life %v, want 3 x Reregistration = 30s", m.PE.Life)
	}
	if m.PE.Policy != pe.Policy || m.PE.UserTransport.Port != 7 || len(m.PE.UserTransport.Addrs) != 1 {
		t.Errorf("registered %+v, want policy %+v and transport 127.0.0.1:7", m.PE, pe.Policy)
	}
	if r.Handle() != "echo" || r.Policy() != pe.Policy {
		t.Errorf("Registration handle %q policy %+v, want echo %+v", r.Handle(), r.Policy(), pe.Policy)
	}

	// Another registration gets an identifier of its own.
	r2, err := ep.Register(ctx, "echo", testPE(0, 8))
	if err != nil {
		t.Fatal(err)
	}
	m2, _ := nextOf[*asap.Registration](f)
	if m2.PE.ID == 0 || m2.PE.ID == m.PE.ID || r2.ID() != m2.PE.ID {
		t.Errorf("second PE id %#x (Registration.ID %#x), first %#x: want a new non-zero id", m2.PE.ID, r2.ID(), m.PE.ID)
	}

	// A given identifier and life are kept.
	pe3 := testPE(0x77, 9)
	pe3.Life = 5 * time.Second
	r3, err := ep.Register(ctx, "echo", pe3)
	if err != nil {
		t.Fatal(err)
	}
	m3, _ := nextOf[*asap.Registration](f)
	if m3.PE.ID != 0x77 || r3.ID() != 0x77 || m3.PE.Life != 5*time.Second {
		t.Errorf("registered id %#x life %v, want 0x77 and 5s", m3.PE.ID, m3.PE.Life)
	}
}

func TestDefaultRegistrationLife(t *testing.T) {
	f := newFake(t, answering(nil))
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}})
	pe := testPE(0, 7)
	pe.Life = 0
	if _, err := ep.Register(ctxTimeout(t, waitLong), "echo", pe); err != nil {
		t.Fatal(err)
	}
	m, _ := nextOf[*asap.Registration](f)
	if want := 3 * endpoint.DefaultReregistration; m.PE.Life != want {
		t.Errorf("registration life %v, want %v", m.PE.Life, want)
	}
}

func TestRegistrationRefused(t *testing.T) {
	causes := []asap.Cause{{Code: asap.CauseInconsistentPolicy}, {Code: asap.CauseLackOfResources}}
	accept := answering(nil)
	f := newFake(t, func(m asap.Message) []asap.Message {
		if reg, ok := m.(*asap.Registration); ok && reg.Handle == "bad" {
			return []asap.Message{&asap.RegistrationResponse{Reject: true, Handle: reg.Handle, ID: reg.PE.ID, Causes: causes}}
		}
		return accept(m)
	})
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, Reregistration: quiet})
	ctx := ctxTimeout(t, waitLong)

	good, err := ep.Register(ctx, "good", testPE(0, 7))
	if err != nil {
		t.Fatal(err)
	}
	r, err := ep.Register(ctx, "bad", testPE(0, 8))
	if r != nil {
		t.Errorf("refused registration returned %+v, want nil", r)
	}
	var re *endpoint.RegistrationError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T), want *RegistrationError", err, err)
	}
	if re.Handle != "bad" || len(re.Causes) != 2 || re.Causes[0].Code != asap.CauseInconsistentPolicy || re.Causes[1].Code != asap.CauseLackOfResources {
		t.Errorf("RegistrationError %+v, want pool bad with the registrar's two causes", re)
	}
	if !re.Has(asap.CauseInconsistentPolicy) || !re.Has(asap.CauseLackOfResources) {
		t.Error("Has is false for a cause the refusal carries")
	}
	if re.Has(asap.CauseUnknownPoolHandle) {
		t.Error("Has is true for a cause the refusal does not carry")
	}
	if s := re.Error(); !strings.Contains(s, `"bad"`) {
		t.Errorf("error text %q does not name the pool", s)
	}

	// The refused element is not kept: a keep-alive for it is not answered,
	// while one for the accepted element is.
	_, conn := nextOf[*asap.Registration](f)
	nextOf[*asap.Registration](f)
	f.send(conn, &asap.EndpointKeepAlive{Server: 1, Handle: "bad"})
	f.send(conn, &asap.EndpointKeepAlive{Server: 1, Handle: "good", ID: good.ID()})
	ack, _ := nextOf[*asap.EndpointKeepAliveAck](f)
	if ack.Handle != "good" || ack.ID != good.ID() {
		t.Errorf("keep-alive ack %+v, want one for good/%#x only", ack, good.ID())
	}
}

func TestReregistrationEveryPeriod(t *testing.T) {
	const period = 60 * time.Millisecond
	f := newFake(t, answering(nil))
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, Reregistration: period})
	pe := testPE(0, 7)
	pe.Life = 0
	r, err := ep.Register(ctxTimeout(t, waitLong), "echo", pe)
	if err != nil {
		t.Fatal(err)
	}
	regs := f.waitCount(asap.TypeRegistration, 5)
	if span := regs[4].at.Sub(regs[0].at); span > 10*period {
		t.Errorf("four periods took %v, want about %v", span, 4*period)
	}
	for i, x := range regs[:5] {
		m := x.m.(*asap.Registration)
		if m.Handle != "echo" || m.PE.ID != r.ID() {
			t.Errorf("registration %d: %s/%#x, want echo/%#x", i, m.Handle, m.PE.ID, r.ID())
		}
		if m.PE.Life != 3*period {
			t.Errorf("registration %d: life %v, want %v", i, m.PE.Life, 3*period)
		}
		if i > 0 {
			if gap := x.at.Sub(regs[i-1].at); gap < period*3/4 {
				t.Errorf("registration %d came %v after the previous one, want about %v", i, gap, period)
			}
		}
	}
}

func TestUpdate(t *testing.T) {
	f := newFake(t, answering(nil))
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, Reregistration: quiet})
	ctx := ctxTimeout(t, waitLong)
	pe := testPE(0, 7)
	pe.Policy = policy.Policy{Type: policy.LeastUsed, Load: 1}
	r, err := ep.Register(ctx, "echo", pe)
	if err != nil {
		t.Fatal(err)
	}
	_, conn := nextOf[*asap.Registration](f)

	loaded := policy.Policy{Type: policy.LeastUsed, Load: 9}
	if err := r.Update(ctx, loaded); err != nil {
		t.Fatal(err)
	}
	m, _ := nextOf[*asap.Registration](f)
	if m.PE.ID != r.ID() || m.PE.Policy != loaded {
		t.Errorf("update sent %#x with %+v, want %#x with %+v", m.PE.ID, m.PE.Policy, r.ID(), loaded)
	}
	if r.Policy() != loaded {
		t.Errorf("Policy() = %+v after Update, want %+v", r.Policy(), loaded)
	}

	// The upkeep re-registers with the new values too.
	f.send(conn, &asap.DeregistrationResponse{Handle: "echo", ID: r.ID()})
	m, _ = nextOf[*asap.Registration](f)
	if m.PE.ID != r.ID() || m.PE.Policy != loaded {
		t.Errorf("re-registration sent %#x with %+v, want %#x with %+v", m.PE.ID, m.PE.Policy, r.ID(), loaded)
	}
}

func TestKeepAliveAnswered(t *testing.T) {
	f := newFake(t, answering(nil))
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, Reregistration: quiet})
	r, err := ep.Register(ctxTimeout(t, waitLong), "echo", testPE(0, 7))
	if err != nil {
		t.Fatal(err)
	}
	_, conn := nextOf[*asap.Registration](f)

	for _, id := range []asap.PEID{r.ID(), 0} { // with rsplib's PE id, and without
		f.send(conn, &asap.EndpointKeepAlive{Server: 0x51, Handle: "echo", ID: id})
		ack, c := nextOf[*asap.EndpointKeepAliveAck](f)
		if ack.Handle != "echo" || ack.ID != r.ID() {
			t.Errorf("keep-alive with id %#x answered with %+v, want echo/%#x", id, ack, r.ID())
		}
		if c != conn {
			t.Error("keep-alive answered on another connection")
		}
	}
}

func TestKeepAliveNotOursDiscarded(t *testing.T) {
	f := newFake(t, answering(nil))
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, Reregistration: quiet})
	r, err := ep.Register(ctxTimeout(t, waitLong), "echo", testPE(0, 7))
	if err != nil {
		t.Fatal(err)
	}
	_, conn := nextOf[*asap.Registration](f)

	// Keep-alives for another pool, or for another element of ours, are
	// discarded, even with the H flag. The endpoint handles messages in
	// order, so the first answer must be the one to the last keep-alive.
	f.send(conn, &asap.EndpointKeepAlive{Home: true, Server: 0x99, Handle: "other"})
	f.send(conn, &asap.EndpointKeepAlive{Home: true, Server: 0x98, Handle: "echo", ID: r.ID() + 1})
	f.send(conn, &asap.EndpointKeepAlive{Server: 0x11, Handle: "echo", ID: r.ID()})
	ack, _ := nextOf[*asap.EndpointKeepAliveAck](f)
	if ack.Handle != "echo" || ack.ID != r.ID() {
		t.Errorf("first answer %+v, want the ack for echo/%#x", ack, r.ID())
	}
	if h := ep.Home(); h != 0x11 {
		t.Errorf("Home() = %#x, want 0x11: keep-alives not ours must not change it", h)
	}
}

func TestKeepAliveHomeFlag(t *testing.T) {
	f := newFake(t, answering(nil))
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, Reregistration: quiet})
	r, err := ep.Register(ctxTimeout(t, waitLong), "echo", testPE(0, 7))
	if err != nil {
		t.Fatal(err)
	}
	if h := ep.Home(); h != 0 {
		t.Errorf("Home() = %#x before any keep-alive, want 0", h)
	}
	_, conn := nextOf[*asap.Registration](f)

	for _, step := range []struct {
		home   bool
		server asap.ServerID
		want   asap.ServerID
	}{
		{false, 0x11, 0x11}, // the first keep-alive names the home registrar
		{false, 0x22, 0x11}, // without H, another server id changes nothing
		{true, 0x33, 0x33},  // H: the sender becomes the home registrar
		{false, 0x44, 0x33},
	} {
		f.send(conn, &asap.EndpointKeepAlive{Home: step.home, Server: step.server, Handle: "echo", ID: r.ID()})
		nextOf[*asap.EndpointKeepAliveAck](f)
		if h := ep.Home(); h != step.want {
			t.Errorf("after a keep-alive from %#x with H=%v: Home() = %#x, want %#x", step.server, step.home, h, step.want)
		}
	}
}

func TestExpiredRegistrationRenewed(t *testing.T) {
	f := newFake(t, answering(nil))
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, Reregistration: quiet})
	r, err := ep.Register(ctxTimeout(t, waitLong), "echo", testPE(0, 7))
	if err != nil {
		t.Fatal(err)
	}
	_, conn := nextOf[*asap.Registration](f)

	// The registrar tells that the life ran out: the endpoint registers
	// again at once, long before its next period.
	f.send(conn, &asap.DeregistrationResponse{Handle: "echo", ID: r.ID()})
	m, _ := nextOf[*asap.Registration](f)
	if m.Handle != "echo" || m.PE.ID != r.ID() {
		t.Errorf("renewal %s/%#x, want echo/%#x", m.Handle, m.PE.ID, r.ID())
	}
}

func TestRegistrationClose(t *testing.T) {
	accept := answering(nil)
	f := newFake(t, func(m asap.Message) []asap.Message {
		if _, ok := m.(*asap.Deregistration); ok {
			return nil // the test answers
		}
		return accept(m)
	})
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, Reregistration: quiet})
	ctx := ctxTimeout(t, waitLong)
	r, err := ep.Register(ctx, "echo", testPE(0, 7))
	if err != nil {
		t.Fatal(err)
	}
	other, err := ep.Register(ctx, "other", testPE(0, 8))
	if err != nil {
		t.Fatal(err)
	}
	nextOf[*asap.Registration](f)
	nextOf[*asap.Registration](f)

	closed := make(chan error, 1)
	go func() { closed <- r.Close(ctx) }()
	m, conn := nextOf[*asap.Deregistration](f)
	if m.Handle != "echo" || m.ID != r.ID() {
		t.Errorf("deregistration %s/%#x, want echo/%#x", m.Handle, m.ID, r.ID())
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned %v before the registrar answered", err)
	default:
	}
	f.send(conn, &asap.DeregistrationResponse{Handle: "echo", ID: r.ID()})
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(waitLong):
		t.Fatal("Close did not return after the answer")
	}
	if err := r.Close(ctx); !errors.Is(err, endpoint.ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}

	// The closed element is no longer answered for.
	f.send(conn, &asap.EndpointKeepAlive{Server: 1, Handle: "echo", ID: r.ID()})
	f.send(conn, &asap.EndpointKeepAlive{Server: 1, Handle: "other", ID: other.ID()})
	ack, _ := nextOf[*asap.EndpointKeepAliveAck](f)
	if ack.Handle != "other" {
		t.Errorf("answer %+v after Close, want only the ack for other", ack)
	}
}

func TestRegistrationCloseRefused(t *testing.T) {
	accept := answering(nil)
	f := newFake(t, func(m asap.Message) []asap.Message {
		if d, ok := m.(*asap.Deregistration); ok {
			return []asap.Message{&asap.DeregistrationResponse{Handle: d.Handle, ID: d.ID, Causes: []asap.Cause{{Code: asap.CauseRejectedSecurity}}}}
		}
		return accept(m)
	})
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, Reregistration: quiet})
	ctx := ctxTimeout(t, waitLong)
	r, err := ep.Register(ctx, "echo", testPE(0, 7))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(ctx); err == nil || errors.Is(err, endpoint.ErrClosed) {
		t.Errorf("Close refused by the registrar: %v, want the refusal", err)
	}
}

func TestRegistrationCloseWithoutAnswer(t *testing.T) {
	accept := answering(nil)
	f := newFake(t, func(m asap.Message) []asap.Message {
		if _, ok := m.(*asap.Deregistration); ok {
			return nil
		}
		return accept(m)
	})
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, Reregistration: quiet})
	r, err := ep.Register(ctxTimeout(t, waitLong), "echo", testPE(0, 7))
	if err != nil {
		t.Fatal(err)
	}
	other, err := ep.Register(ctxTimeout(t, waitLong), "other", testPE(0, 8))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = r.Close(ctxTimeout(t, 100*time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close with a silent registrar: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v with a 100ms deadline", d)
	}
	if err := r.Close(ctxTimeout(t, waitLong)); !errors.Is(err, endpoint.ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
	// The registration ended all the same.
	msgs := f.waitCount(asap.TypeDeregistration, 1)
	conn := msgs[0].conn
	f.send(conn, &asap.EndpointKeepAlive{Server: 1, Handle: "echo", ID: r.ID()})
	f.send(conn, &asap.EndpointKeepAlive{Server: 1, Handle: "other", ID: other.ID()})
	for {
		x := f.next()
		if ack, ok := x.m.(*asap.EndpointKeepAliveAck); ok {
			if ack.Handle != "other" {
				t.Errorf("answer %+v after Close, want only the ack for other", ack)
			}
			break
		}
	}
}

func TestEndpointClose(t *testing.T) {
	f := newFake(t, answering(nil))
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, Reregistration: quiet})
	ctx := ctxTimeout(t, waitLong)
	r, err := ep.Register(ctx, "echo", testPE(0, 7))
	if err != nil {
		t.Fatal(err)
	}
	_, conn := nextOf[*asap.Registration](f)
	if err := ep.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-conn.done:
	case <-time.After(waitLong):
		t.Fatal("registrar connection still open after Endpoint.Close")
	}
	if n := f.count(asap.TypeDeregistration); n != 0 {
		t.Errorf("Endpoint.Close sent %d deregistrations, want none", n)
	}
	if err := ep.Close(); err != nil {
		t.Errorf("second Endpoint.Close: %v", err)
	}
	if _, err := ep.Resolve(ctx, "echo"); !errors.Is(err, endpoint.ErrClosed) {
		t.Errorf("Resolve after Close: %v, want ErrClosed", err)
	}
	if _, err := ep.Register(ctx, "echo", testPE(0, 8)); !errors.Is(err, endpoint.ErrClosed) {
		t.Errorf("Register after Close: %v, want ErrClosed", err)
	}
	if err := r.Close(ctx); !errors.Is(err, endpoint.ErrClosed) {
		t.Errorf("Registration.Close after Endpoint.Close: %v, want ErrClosed", err)
	}
}

func TestBadMessagesIgnored(t *testing.T) {
	f := newFake(t, answering(nil))
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, Reregistration: quiet})
	r, err := ep.Register(ctxTimeout(t, waitLong), "echo", testPE(0, 7))
	if err != nil {
		t.Fatal(err)
	}
	_, conn := nextOf[*asap.Registration](f)

	ka, err := (&asap.EndpointKeepAlive{Server: 1, Handle: "echo", ID: r.ID()}).AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	// On another PPID, a keep-alive that would change Home().
	enrpKA, err := (&asap.EndpointKeepAlive{Home: true, Server: 0x99, Handle: "echo", ID: r.ID()}).AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	asapError, err := (&asap.Error{Causes: []asap.Cause{{Code: asap.CauseUnrecognizedMessage}}}).AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		b    []byte
		ppid uint32
	}{
		{[]byte{0x3f, 0, 0, 4}, mapping.PPIDASAP}, // unknown message type
		{[]byte{0x07, 0, 0}, mapping.PPIDASAP},    // truncated
		{enrpKA, mapping.PPIDENRP},                // not ASAP
		{make([]byte, 100000), mapping.PPIDASAP},  // longer than any ASAP message
		{asapError, mapping.PPIDASAP},             // ASAP_ERROR
	} {
		if err := conn.c.WriteMsg(m.b, m.ppid); err != nil {
			t.Fatal(err)
		}
	}
	if err := conn.c.WriteMsg(ka, mapping.PPIDASAP); err != nil {
		t.Fatal(err)
	}
	ack, c := nextOf[*asap.EndpointKeepAliveAck](f)
	if ack.ID != r.ID() || c != conn {
		t.Errorf("after bad messages: %+v, want the ack on the same connection", ack)
	}
	if h := ep.Home(); h != 1 {
		t.Errorf("Home() = %#x, want 1: a message on another PPID is not ASAP", h)
	}
}

func TestHuntSkipsDeadRegistrars(t *testing.T) {
	f := newFake(t, answering(map[asap.PoolHandle]pool{"echo": {pes: []asap.PoolElement{testPE(1, 7)}}}))
	// More dead registrars than one hunt group, in random order.
	list := []string{deadAddr(t), deadAddr(t), deadAddr(t), deadAddr(t), f.addr}
	for range 3 {
		ep := newEndpoint(t, endpoint.Config{Registrars: list, CacheLifetime: -1})
		res, err := ep.Resolve(ctxTimeout(t, waitLong), "echo")
		if err != nil {
			t.Fatalf("resolving with %v: %v", list, err)
		}
		if len(res.PEs) != 1 || res.PEs[0].ID != 1 {
			t.Errorf("resolution %+v, want PE 1", res)
		}
		ep.Close()
	}
}

func TestHuntNoRegistrar(t *testing.T) {
	list := []string{deadAddr(t), deadAddr(t), deadAddr(t), deadAddr(t)}
	ep := newEndpoint(t, endpoint.Config{Registrars: list})
	ctx := ctxTimeout(t, waitLong)
	if _, err := ep.Resolve(ctx, "echo"); !errors.Is(err, endpoint.ErrNoRegistrar) {
		t.Errorf("Resolve with no registrar alive: %v, want ErrNoRegistrar", err)
	}
	if _, err := ep.Register(ctx, "echo", testPE(0, 7)); !errors.Is(err, endpoint.ErrNoRegistrar) {
		t.Errorf("Register with no registrar alive: %v, want ErrNoRegistrar", err)
	}
}

// dialLog is a Config.Dialer that records its calls and fails them, after
// waiting for the dial's context when block is set.
type dialLog struct {
	block bool

	mu      sync.Mutex
	calls   []string
	budgets []time.Duration // each dial's time to its deadline
	active  int
	maxOpen int
}

func (d *dialLog) dial(ctx context.Context, network, address string) (mapping.Conn, error) {
	d.mu.Lock()
	d.calls = append(d.calls, network+" "+address)
	if dl, ok := ctx.Deadline(); ok {
		d.budgets = append(d.budgets, time.Until(dl))
	}
	d.active++
	d.maxOpen = max(d.maxOpen, d.active)
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.active--
		d.mu.Unlock()
	}()
	if d.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return nil, errors.New("refused by the test dialer")
}

func (d *dialLog) sorted() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Sorted(slices.Values(d.calls))
}

func TestHuntTriesEveryRegistrar(t *testing.T) {
	var d dialLog
	ep := newEndpoint(t, endpoint.Config{
		Registrars: []string{"sctp:127.0.0.1:1", "tcp:127.0.0.1:2", "127.0.0.1:3", " tcp6:[::1]:4", "tcp4:127.0.0.1:5"},
		Dialer:     d.dial,
	})
	_, err := ep.Resolve(ctxTimeout(t, waitLong), "echo")
	if !errors.Is(err, endpoint.ErrNoRegistrar) {
		t.Errorf("Resolve: %v, want ErrNoRegistrar", err)
	}
	want := []string{"sctp 127.0.0.1:1", "tcp 127.0.0.1:2", "tcp 127.0.0.1:3", "tcp4 127.0.0.1:5", "tcp6 [::1]:4"}
	if got := d.sorted(); !slices.Equal(got, want) {
		t.Errorf("dialed %q, want %q", got, want)
	}
}

func TestHuntConnectTimeout(t *testing.T) {
	d := dialLog{block: true}
	ep := newEndpoint(t, endpoint.Config{
		Registrars:     []string{"tcp:127.0.0.1:1", "tcp:127.0.0.1:2", "tcp:127.0.0.1:3", "tcp:127.0.0.1:4", "tcp:127.0.0.1:5"},
		Dialer:         d.dial,
		ConnectTimeout: 50 * time.Millisecond,
	})
	start := time.Now()
	_, err := ep.Resolve(ctxTimeout(t, waitLong), "echo")
	if !errors.Is(err, endpoint.ErrNoRegistrar) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Resolve with hanging registrars: %v, want ErrNoRegistrar wrapping the deadline", err)
	}
	if el := time.Since(start); el < 100*time.Millisecond || el > 2*time.Second {
		t.Errorf("hunt took %v, want two groups of 50ms", el)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.calls) != 5 || d.maxOpen != 3 {
		t.Errorf("%d dials, at most %d at once; want 5, at most 3", len(d.calls), d.maxOpen)
	}
}

// TestHuntTimeoutDoubles checks T5: each time a hunt's connect timeout runs
// out, the next attempt gets twice as long, up to the cap, also in the next
// hunt; once a registrar answers it is back to its first value.
func TestHuntTimeoutDoubles(t *testing.T) {
	const t5, capT5 = 40 * time.Millisecond, 100 * time.Millisecond
	d := &dialLog{block: true}
	f := newFake(t, answering(map[asap.PoolHandle]pool{"echo": {pes: []asap.PoolElement{testPE(1, 7)}}}))
	var reachable atomic.Bool
	var blackholes []string
	for i := range 7 {
		blackholes = append(blackholes, fmt.Sprintf("tcp:127.0.0.1:%d", i+1))
	}
	ep := newEndpoint(t, endpoint.Config{
		Registrars: blackholes,
		Dialer: func(ctx context.Context, network, address string) (mapping.Conn, error) {
			if reachable.Load() {
				var md mapping.Dialer
				return md.DialContext(ctx, "tcp", strings.TrimPrefix(f.addr, "tcp:"))
			}
			return d.dial(ctx, network, address)
		},
		ConnectTimeout: t5, MaxConnectTimeout: capT5, CacheLifetime: -1,
	})
	checkBudgets := func(what string, want []time.Duration) {
		t.Helper()
		d.mu.Lock()
		got := d.budgets
		d.budgets = nil
		d.mu.Unlock()
		if len(got) != len(want) {
			t.Fatalf("%s: %d dials, want %d", what, len(got), len(want))
		}
		for i := range want {
			// A dial starts a little after its group's timer.
			if got[i] > want[i] || got[i] < want[i]-want[i]/2 {
				t.Errorf("%s: dial %d had %v, want about %v", what, i, got[i], want[i])
			}
		}
	}
	// Groups of three: 40 ms, 80 ms, then the cap of 100 ms.
	if _, err := ep.Resolve(ctxTimeout(t, waitLong), "echo"); !errors.Is(err, endpoint.ErrNoRegistrar) {
		t.Fatalf("Resolve: %v, want ErrNoRegistrar", err)
	}
	checkBudgets("first hunt", []time.Duration{t5, t5, t5, 2 * t5, 2 * t5, 2 * t5, capT5})
	// The next hunt goes on from the cap.
	ep.Resolve(ctxTimeout(t, waitLong), "echo")
	checkBudgets("second hunt", []time.Duration{capT5, capT5, capT5, capT5, capT5, capT5, capT5})
	// A registrar answers: back to the first value.
	reachable.Store(true)
	if _, err := ep.Resolve(ctxTimeout(t, waitLong), "echo"); err != nil {
		t.Fatalf("Resolve with a registrar: %v", err)
	}
	reachable.Store(false)
	f.Close()
	waitFor(t, "a hunt after the registrar went away", func() bool {
		_, err := ep.Resolve(ctxTimeout(t, waitLong), "echo")
		return errors.Is(err, endpoint.ErrNoRegistrar)
	})
	d.mu.Lock()
	first := d.budgets[0]
	d.mu.Unlock()
	if first > t5 {
		t.Errorf("first dial after a registrar answered had %v, want at most %v", first, t5)
	}
}

func TestHuntHonoursContext(t *testing.T) {
	d := dialLog{block: true}
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{"tcp:127.0.0.1:1"}, Dialer: d.dial, ConnectTimeout: time.Minute})
	start := time.Now()
	_, err := ep.Resolve(ctxTimeout(t, 100*time.Millisecond), "echo")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Resolve: %v, want context.DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Resolve took %v with a 100ms deadline", el)
	}
}

func TestHuntAfterConnectionLoss(t *testing.T) {
	pools := map[asap.PoolHandle]pool{"echo": {pes: []asap.PoolElement{testPE(1, 7)}}}
	a, b := newFake(t, answering(pools)), newFake(t, answering(pools))
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{a.addr, b.addr}, Reregistration: quiet, CacheLifetime: -1})
	ctx := ctxTimeout(t, waitLong)
	r1, err := ep.Register(ctx, "echo", testPE(0, 7))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := ep.Register(ctx, "other", testPE(0, 8))
	if err != nil {
		t.Fatal(err)
	}
	first, second := a, b
	if b.count(asap.TypeRegistration) > 0 {
		first, second = b, a
	}
	if n := first.count(asap.TypeRegistration); n != 2 {
		t.Fatalf("home registrar got %d registrations, want 2", n)
	}
	_, conn := nextOf[*asap.Registration](first)
	first.send(conn, &asap.EndpointKeepAlive{Server: 0xa, Handle: "echo", ID: r1.ID()})
	nextOf[*asap.Registration](first)
	nextOf[*asap.EndpointKeepAliveAck](first)
	if h := ep.Home(); h != 0xa {
		t.Fatalf("Home() = %#x, want 0xa", h)
	}

	// The home registrar goes away: the endpoint no longer names it, finds
	// the other one and registers both elements there, with their
	// identifiers.
	first.Close()
	regs := second.waitCount(asap.TypeRegistration, 2)
	if h := ep.Home(); h != 0 {
		t.Errorf("Home() = %#x after the home registrar went away, before the next keep-alive; want 0", h)
	}
	got := map[asap.PEID]asap.PoolHandle{}
	for _, x := range regs {
		m := x.m.(*asap.Registration)
		got[m.PE.ID] = m.Handle
	}
	if len(got) != 2 || got[r1.ID()] != "echo" || got[r2.ID()] != "other" {
		t.Errorf("registrations at the new registrar %v, want echo/%#x and other/%#x", got, r1.ID(), r2.ID())
	}
	if _, err := ep.Resolve(ctx, "echo"); err != nil {
		t.Errorf("Resolve after the hunt: %v", err)
	}
	if n := second.count(asap.TypeHandleResolution); n != 1 {
		t.Errorf("new registrar got %d handle resolutions, want 1", n)
	}

	// The new registrar's keep-alive names the new home registrar.
	conn2 := regs[0].conn
	second.send(conn2, &asap.EndpointKeepAlive{Server: 0xb, Handle: "echo", ID: r1.ID()})
	for {
		if _, ok := second.next().m.(*asap.EndpointKeepAliveAck); ok {
			break
		}
	}
	if h := ep.Home(); h != 0xb {
		t.Errorf("Home() = %#x after the hunt and a keep-alive from 0xb, want 0xb", h)
	}
}

func TestRequestRetransmission(t *testing.T) {
	for _, tc := range []struct {
		retransmit int
		attempts   int
	}{
		{0, 1 + endpoint.DefaultMaxRequestRetransmit},
		{-1, 1},
		{1, 2},
		{3, 4},
	} {
		f := newFake(t, nil) // never answers
		ep := newEndpoint(t, endpoint.Config{
			Registrars:           []string{f.addr},
			RequestTimeout:       50 * time.Millisecond,
			MaxRequestRetransmit: tc.retransmit,
		})
		start := time.Now()
		_, err := ep.Resolve(ctxTimeout(t, waitLong), "echo")
		el := time.Since(start)
		if !errors.Is(err, endpoint.ErrNoAnswer) {
			t.Errorf("MaxRequestRetransmit %d: Resolve: %v, want ErrNoAnswer", tc.retransmit, err)
		}
		f.waitCount(asap.TypeHandleResolution, tc.attempts)
		if n := f.count(asap.TypeHandleResolution); n != tc.attempts {
			t.Errorf("MaxRequestRetransmit %d: %d requests, want %d", tc.retransmit, n, tc.attempts)
		}
		if least := time.Duration(tc.attempts) * 50 * time.Millisecond; el < least {
			t.Errorf("MaxRequestRetransmit %d: failed after %v, want at least %v", tc.retransmit, el, least)
		}
	}
}

func TestRequestRetransmissionAnswered(t *testing.T) {
	var n int
	f := newFake(t, func(m asap.Message) []asap.Message {
		if hr, ok := m.(*asap.HandleResolution); ok {
			if n++; n == 2 { // silent to the first attempt
				return []asap.Message{resolution(map[asap.PoolHandle]pool{"echo": {pes: []asap.PoolElement{testPE(1, 7)}}}, hr.Handle)}
			}
		}
		return nil
	})
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, RequestTimeout: 100 * time.Millisecond})
	res, err := ep.Resolve(ctxTimeout(t, waitLong), "echo")
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if len(res.PEs) != 1 {
		t.Errorf("resolution %+v, want one PE", res)
	}
	reqs := f.messages(asap.TypeHandleResolution)
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	if reqs[0].conn == reqs[1].conn {
		t.Error("retransmission on the connection of the silent registrar, want a new one after a hunt")
	}
}

func TestRequestHonoursContext(t *testing.T) {
	f := newFake(t, func(m asap.Message) []asap.Message {
		if reg, ok := m.(*asap.Registration); ok && reg.Handle == "echo" {
			return []asap.Message{&asap.RegistrationResponse{Handle: reg.Handle, ID: reg.PE.ID}}
		}
		return nil // silent to everything else
	})
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, RequestTimeout: time.Minute, Reregistration: quiet})
	if _, err := ep.Register(ctxTimeout(t, waitLong), "echo", testPE(0, 7)); err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func(context.Context) error{
		"Resolve": func(ctx context.Context) error {
			_, err := ep.Resolve(ctx, "echo")
			return err
		},
		"Register": func(ctx context.Context) error {
			_, err := ep.Register(ctx, "silent", testPE(0, 8))
			return err
		},
	} {
		start := time.Now()
		err := call(ctxTimeout(t, 100*time.Millisecond))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s with a silent registrar: %v, want context.DeadlineExceeded", name, err)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("%s took %v with a 100ms deadline", name, el)
		}
	}
}

func TestRegistrarsFromEnvironment(t *testing.T) {
	t.Run("parsed", func(t *testing.T) {
		t.Setenv(endpoint.EnvRegistrars, "sctp:127.0.0.1:1, 127.0.0.1:2")
		var d dialLog
		ep := newEndpoint(t, endpoint.Config{Dialer: d.dial})
		if _, err := ep.Resolve(ctxTimeout(t, waitLong), "echo"); !errors.Is(err, endpoint.ErrNoRegistrar) {
			t.Errorf("Resolve: %v, want ErrNoRegistrar", err)
		}
		if got, want := d.sorted(), []string{"sctp 127.0.0.1:1", "tcp 127.0.0.1:2"}; !slices.Equal(got, want) {
			t.Errorf("dialed %q, want %q", got, want)
		}
	})
	t.Run("connects", func(t *testing.T) {
		f := newFake(t, answering(map[asap.PoolHandle]pool{"echo": {pes: []asap.PoolElement{testPE(1, 7)}}}))
		t.Setenv(endpoint.EnvRegistrars, deadAddr(t)+","+strings.TrimPrefix(f.addr, "tcp:"))
		ep := newEndpoint(t, endpoint.Config{})
		if _, err := ep.Resolve(ctxTimeout(t, waitLong), "echo"); err != nil {
			t.Fatalf("Resolve through $%s: %v", endpoint.EnvRegistrars, err)
		}
		if n := f.count(asap.TypeHandleResolution); n != 1 {
			t.Errorf("registrar from the environment got %d requests, want 1", n)
		}
	})
	t.Run("configured first", func(t *testing.T) {
		t.Setenv(endpoint.EnvRegistrars, "tcp:127.0.0.1:1")
		var d dialLog
		ep := newEndpoint(t, endpoint.Config{Registrars: []string{"tcp:127.0.0.1:2"}, Dialer: d.dial})
		ep.Resolve(ctxTimeout(t, waitLong), "echo")
		if got, want := d.sorted(), []string{"tcp 127.0.0.1:2"}; !slices.Equal(got, want) {
			t.Errorf("dialed %q, want %q", got, want)
		}
	})
	t.Run("default", func(t *testing.T) {
		t.Setenv(endpoint.EnvRegistrars, "")
		var d dialLog
		ep := newEndpoint(t, endpoint.Config{Dialer: d.dial})
		ep.Resolve(ctxTimeout(t, waitLong), "echo")
		network, address, _ := strings.Cut(endpoint.DefaultRegistrar, ":")
		if got, want := d.sorted(), []string{network + " " + address}; !slices.Equal(got, want) {
			t.Errorf("dialed %q, want %q", got, want)
		}
	})
}

// TestRegisterGivenUpIsWithdrawn checks that a registration whose caller
// gives up before the answer (the registrar took it, the answer is late)
// is withdrawn with a DEREGISTRATION, so that no element is left in the
// pool that nobody keeps registered.
func TestRegisterGivenUpIsWithdrawn(t *testing.T) {
	f := newFake(t, nil) // silent: the test answers
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, Reregistration: quiet, RequestTimeout: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := ep.Register(ctx, "late", testPE(0, 7))
		errc <- err
	}()
	reg, _ := nextOf[*asap.Registration](f)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Register after cancel: %v, want context.Canceled", err)
	}
	dereg, _ := nextOf[*asap.Deregistration](f)
	if dereg.Handle != "late" || dereg.ID != reg.PE.ID {
		t.Fatalf("withdrawal %+v, want pool late, PE %08x", dereg, reg.PE.ID)
	}
}

// TestRegisterRefusedIsNotWithdrawn checks that a refused registration,
// which the registrar did not take, is not followed by a DEREGISTRATION.
func TestRegisterRefusedIsNotWithdrawn(t *testing.T) {
	f := newFake(t, func(m asap.Message) []asap.Message {
		if r, ok := m.(*asap.Registration); ok {
			return []asap.Message{&asap.RegistrationResponse{Reject: true, Handle: r.Handle, ID: r.PE.ID,
				Causes: []asap.Cause{{Code: asap.CauseLackOfResources}}}}
		}
		return nil
	})
	ep := newEndpoint(t, endpoint.Config{Registrars: []string{f.addr}, Reregistration: quiet})
	if _, err := ep.Register(ctxTimeout(t, waitLong), "full", testPE(0, 7)); err == nil {
		t.Fatal("refused registration succeeded")
	}
	nextOf[*asap.Registration](f)
	if m, ok := f.nextWithin(300 * time.Millisecond); ok {
		t.Fatalf("after a refusal the endpoint sent %T", m.m)
	}
}
