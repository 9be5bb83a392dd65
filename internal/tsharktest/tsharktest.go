// Package tsharktest decodes messages with Wireshark's dissectors (tshark),
// an independent reader of what the project sends: each message is wrapped
// in a synthetic SCTP DATA chunk with the given PPID by text2pcap.
package tsharktest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Decode returns tshark's verbose decoding of msgs, each sent as one SCTP
// message with payload protocol identifier ppid. It skips the test when
// tshark or text2pcap is missing.
func Decode(t testing.TB, ppid int, msgs [][]byte) string {
	t.Helper()
	for _, tool := range []string{"tshark", "text2pcap"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install tshark; .ci/run installs it)", tool)
		}
	}
	dir := t.TempDir()
	var hex bytes.Buffer
	for _, m := range msgs {
		for off := 0; off < len(m); off += 16 {
			fmt.Fprintf(&hex, "%06x", off)
			for _, b := range m[off:min(off+16, len(m))] {
				fmt.Fprintf(&hex, " %02x", b)
			}
			hex.WriteByte('\n')
		}
	}
	in, pcap := filepath.Join(dir, "msgs.hex"), filepath.Join(dir, "msgs.pcap")
	if err := os.WriteFile(in, hex.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("text2pcap", "-q", "-S", fmt.Sprintf("40000,3863,%d", ppid), in, pcap).CombinedOutput(); err != nil {
		t.Fatalf("text2pcap: %v\n%s", err, out)
	}
	cmd := exec.Command("tshark", "-n", "-r", pcap, "-V")
	cmd.Env = append(os.Environ(), "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	return string(out)
}
