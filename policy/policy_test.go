package policy

import "testing"

func TestPolicyString(t *testing.T) {
	for _, tc := range []struct {
		p    Policy
		want string
	}{
		{Policy{Type: RoundRobin}, "RR"},
		{Policy{Type: WeightedRoundRobin, Weight: 5}, "WRR weight=5"},
		{Policy{Type: LeastUsed, Load: 0x80000000}, "LU load=50.0%"},
		{Policy{Type: LeastUsedDegradation, Load: 0xFFFFFFFF, LoadDegradation: 0x1999999A}, "LUD load=100.0% degradation=10.0%"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("%#v: %q, want %q", tc.p, got, tc.want)
		}
	}
}
