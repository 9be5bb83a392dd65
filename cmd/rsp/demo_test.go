package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the demo for its shortest sensible duration: servers are
// killed at 2/12 and 4/12 of it and restarted at 6/12 and 8/12, and the
// requests go on every 50 ms; five seconds leave about a second between
// events, which is what the registrar needs to notice a dead server.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs for seconds")
	}
	t.Parallel()
	start := time.Now()
	out, errOut, err := runCommand(t, runDemo, "", "-duration", "5s")
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("the demo took %v", d)
	}
	if err != nil {
		t.Fatalf("demo: %v\n%s%s", err, out, errOut)
	}
	t.Logf("demo output:\n%s", out)

	// The timeline, in order.
	timeline := []string{
		`registrar [0-9a-f]{8} serving ASAP on 127\.0\.0\.1:\d+`,
		`server a up: PE [0-9a-f]{8} on 127\.0\.0\.1:\d+ registered in pool "web"`,
		`server b up: `,
		`server c up: `,
		`server b killed \(PE [0-9a-f]{8}, no deregistration`,
		`server a killed `,
		`server b up: `,
		`server a up: `,
		`server c killed `,
	}
	lines := strings.Split(out, "\n")
	stamp := regexp.MustCompile(`^ *\d+\.\d\ds  `)
	i := 0
	for _, l := range lines {
		if i < len(timeline) && regexp.MustCompile(`^ *\d+\.\d\ds  `+timeline[i]).MatchString(l) {
			i++
		}
	}
	if i < len(timeline) {
		t.Errorf("the timeline lacks a line matching %q after the ones before it", timeline[i])
	}

	// A report each second, with no failed request.
	report := regexp.MustCompile(`^ *\d+\.\d\ds  +(\d+) ok (\d+) failed  answers \[.*\]  pool \[.*\]$`)
	reports := 0
	for _, l := range lines {
		if m := report.FindStringSubmatch(l); m != nil {
			reports++
			if m[2] != "0" {
				t.Errorf("a report with failed requests: %s", l)
			}
		} else if l != "" && !stamp.MatchString(l) && !strings.HasSuffix(l, "while servers died and came back.") && !strings.HasPrefix(l, "One streaming session: ") {
			t.Errorf("an unexpected line: %q", l)
		}
		if strings.Contains(l, "GET failed") {
			t.Errorf("a failed request: %s", l)
		}
	}
	if reports < 4 {
		t.Errorf("%d reports, want one a second", reports)
	}

	// The streaming session survived every death: every message answered,
	// failed over at least twice (servers a or b, and c, died under it),
	// and no error.
	stream := regexp.MustCompile(`\nOne streaming session: (\d+) messages sent, (\d+) answered, (\d+) failovers, error: <nil>\.\n$`).FindStringSubmatch(out)
	if stream == nil {
		t.Fatalf("the output does not end with the streaming session's count and no error")
	}
	if fo, _ := strconv.Atoi(stream[3]); stream[1] != stream[2] || fo < 1 {
		t.Errorf("streaming session: %s sent, %s answered, %s failovers; want all answered and a failover", stream[1], stream[2], stream[3])
	}
	if !strings.Contains(out, "streaming session failed over from PE ") {
		t.Error("no failover of the streaming session shown")
	}
	last := regexp.MustCompile(`\n\n(\d+) requests answered, 0 failed, while servers died and came back\.\n`).FindStringSubmatch(out)
	if last == nil {
		t.Fatalf("the output does not end with the count of answered requests and 0 failed")
	}
	// One request each 50 ms, less the time a dial takes.
	if n, _ := strconv.Atoi(last[1]); n < 50 {
		t.Errorf("%d requests answered in 5 s, want more than 50", n)
	}
}
