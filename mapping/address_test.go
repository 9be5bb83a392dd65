package mapping

import "testing"

func TestSplitAddress(t *testing.T) {
	tests := []struct {
		in, network, address string
		ok                   bool
	}{
		{"tcp:127.0.0.1:3863", "tcp", "127.0.0.1:3863", true},
		{"SCTP:10.0.0.1,10.0.0.2:3863", "sctp", "10.0.0.1,10.0.0.2:3863", true},
		{"tcp6:[::1]:1", "tcp6", "[::1]:1", true},
		{"tcp::3863", "tcp", ":3863", true},
		{" udp:1.2.3.4:5 ", "udp", "1.2.3.4:5", true},
		{"127.0.0.1:3863", "tcp", "127.0.0.1:3863", false},
		{"[::1]:3863", "tcp", "[::1]:3863", false},
		{"host:80", "tcp", "host:80", false},
		{"", "tcp", "", false},
	}
	for _, tt := range tests {
		n, a, ok := SplitAddress(tt.in)
		if n != tt.network || a != tt.address || ok != tt.ok {
			t.Errorf("SplitAddress(%q) = %q, %q, %v; want %q, %q, %v", tt.in, n, a, ok, tt.network, tt.address, tt.ok)
		}
	}
}
