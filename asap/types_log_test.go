package asap

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestIdentifiersLogInHex: logs print pool element and registrar
// identifiers as the tools do, in eight hex digits.
func TestIdentifiersLogInHex(t *testing.T) {
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "pe", PEID(0xbeef), "registrar", ServerID(0x12))
	if out := buf.String(); !strings.Contains(out, "pe=0000beef") || !strings.Contains(out, "registrar=00000012") {
		t.Errorf("log %q: want pe=0000beef registrar=00000012", out)
	}
}
