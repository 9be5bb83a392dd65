package peer

import (
	"testing"
	"time"

	"github.com/rsp-go/rsp/asap"
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
