package peer

import (
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
	"github.com/rsp-go/rsp/enrp"
)

// TestNewRegistrarWaitsForItsMentor: with MentorWait set, a new registrar
// is not Ready until its mentor's handlespace has arrived, or, with no
// peer to answer, until MentorWait has passed (Deadline names that
// moment); without it, it is Ready at once.
func TestNewRegistrarWaitsForItsMentor(t *testing.T) {
	const wait = 500 * ms
	tests := []struct {
		name     string
		wait     time.Duration
		mentor   bool          // a registrar with elements is up
		readyAt  time.Duration // when Ready first holds, from Start
		elements int           // what the new registrar then holds
	}{
		// Without a wait it serves before the mentor's table is here.
		{"no wait", 0, true, 0, 0},
		// The table comes at once on the fake network.
		{"mentor answers", wait, true, 0, 3},
		{"lone registrar", wait, false, wait, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			if tt.mentor {
				a := w.add(fast(1))
				for i := range 3 {
					w.register(a, "echo", asap.PEID(10+i))
				}
				w.deliver()
			}
			cfg := fast(2)
			cfg.MentorWait = tt.wait
			b := w.add(cfg)
			if got, want := b.core.Ready(w.now), tt.wait == 0; got != want {
				t.Fatalf("Ready at start = %v, want %v", got, want)
			}
			if tt.wait > 0 {
				if d := b.core.Deadline(); d.After(w.now.Add(tt.wait)) {
					t.Fatalf("Deadline %v is after the end of the wait", d.Sub(w.now))
				}
			}
			start := w.now
			for {
				for _, n := range w.nodes {
					if !n.core.Deadline().After(w.now) {
						n.core.Tick(w.now)
					}
				}
				if b.core.Ready(w.now) {
					break
				}
				w.deliver()
				if b.core.Ready(w.now) {
					break
				}
				if w.now.Sub(start) > 2*wait {
					t.Fatal("never Ready")
				}
				w.now = w.now.Add(10 * ms)
			}
			if got := w.now.Sub(start); got != tt.readyAt {
				t.Errorf("Ready after %v, want %v", got, tt.readyAt)
			}
			if got := len(view(b.hs)); got != tt.elements {
				t.Errorf("holds %d elements when Ready, want %d", got, tt.elements)
			}
		})
	}
}

// TestNewMentorWhenTheMentorGoes: a new registrar whose mentor dies before
// its handlespace has arrived asks another peer for the whole handlespace,
// and is Ready with it long before MentorWait, whether the mentor owned
// nothing (it is only forgotten) or owned elements (it is taken over).
func TestNewMentorWhenTheMentorGoes(t *testing.T) {
	const wait = 30 * time.Second
	tests := []struct {
		name                 string
		mentorOwns           bool
		stays, mentor, joins asap.ServerID
	}{
		{"forgotten", false, 1, 2, 3},
		{"taken over", true, 1, 2, 3},
		// The joining registrar has the lowest identifier and notices the
		// death first, but knows none of the mentor's elements: it forgets
		// the mentor, and the registrar that stays takes it over.
		{"taken over, joining registrar lowest", true, 3, 2, 1},
	}
	slow := func(id asap.ServerID) Config {
		// The registrar that stays notices the mentor's death last, so
		// that the joining one starts the takeover.
		cfg := fast(id)
		cfg.MaxTimeLastHeard = time.Second
		return cfg
	}
	for _, tt := range tests {
		mentorOwns := tt.mentorOwns
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			a, m := w.add(slow(tt.stays)), w.add(fast(tt.mentor))
			w.register(a, "echo", 10)
			w.register(a, "echo", 11)
			if mentorOwns {
				w.register(m, "echo", 20)
			}
			w.run(300*ms, 10*ms)
			want := w.converged()
			// The mentor's handle table never reaches the new registrar,
			// which hears the mentor first.
			w.drop = func(from, to asap.ServerID, typ enrp.MessageType) bool {
				return from == tt.mentor && to == tt.joins && typ == enrp.TypeHandleTableResponse
			}
			w.partition([]asap.ServerID{tt.stays}, []asap.ServerID{tt.joins})
			cfg := fast(tt.joins)
			cfg.MentorWait = wait
			b := w.add(cfg)
			w.run(100*ms, 10*ms)
			if b.core.Ready(w.now) {
				t.Fatal("Ready without the mentor's handlespace")
			}
			m.down = true
			w.heal()
			start := w.now
			for !b.core.Ready(w.now) {
				if w.now.Sub(start) > 5*time.Second {
					t.Fatalf("not Ready %v after the mentor died (MentorWait %v); peers %v, holds %v", w.now.Sub(start), wait, b.core.Peers(), view(b.hs))
				}
				w.run(10*ms, 10*ms)
			}
			w.run(time.Second, 10*ms)
			got := w.converged()
			if len(got) != len(want) {
				t.Errorf("the new registrar holds %v, want the elements of %v", got, want)
			}
			for k, h := range got {
				if h == tt.mentor {
					t.Errorf("%s still homed at the dead mentor", keyName(k))
				}
			}
		})
	}
}
