package main

import (
	"testing"

	"github.com/rsp-go/rsp/policy"
)

func TestParsePolicy(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want policy.Policy
	}{
		{"rr", policy.Policy{Type: policy.RoundRobin}},
		{"RR", policy.Policy{Type: policy.RoundRobin}},
		{"wrr:4", policy.Policy{Type: policy.WeightedRoundRobin, Weight: 4}},
		{"rand", policy.Policy{Type: policy.Random}},
		{"wrand:9", policy.Policy{Type: policy.WeightedRandom, Weight: 9}},
		{"pri:2", policy.Policy{Type: policy.Priority, Priority: 2}},
		{"lu", policy.Policy{Type: policy.LeastUsed}},
		{"lud:0", policy.Policy{Type: policy.LeastUsedDegradation}},
		{"lud:1", policy.Policy{Type: policy.LeastUsedDegradation, LoadDegradation: 0xffffffff}},
		{"plu:0.5", policy.Policy{Type: policy.PriorityLeastUsed, LoadDegradation: 0x7fffffff}},
		{"rlu", policy.Policy{Type: policy.RandomizedLeastUsed}},
	} {
		got, err := parsePolicy(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parsePolicy(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "best", "wrr", "wrr:x", "wrr:-1", "wrr:4294967296", "pri", "lud", "lud:1.5", "lud:-0.1", "plu:x"} {
		if p, err := parsePolicy(in); err == nil {
			t.Errorf("parsePolicy(%q) = %+v, want an error", in, p)
		}
	}
}
