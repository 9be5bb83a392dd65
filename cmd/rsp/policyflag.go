package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/rsp-go/rsp/policy"
)

// parsePolicy reads a policy written NAME or NAME:VALUE: rr, wrr:WEIGHT,
// rand, wrand:WEIGHT, pri:PRIORITY, lu, lud:DEGRADATION, plu:DEGRADATION,
// rlu. Degradations are fractions (0.05 = 5 % of full load).
func parsePolicy(s string) (policy.Policy, error) {
	name, arg, hasArg := strings.Cut(strings.ToLower(s), ":")
	var p policy.Policy
	num := func() (uint32, error) {
		if !hasArg {
			return 0, fmt.Errorf("policy %q needs a value (%s:N)", s, name)
		}
		v, err := strconv.ParseUint(arg, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("policy %q: %q is not a whole number from 0 to %d", s, arg, uint32(1<<32-1))
		}
		return uint32(v), nil
	}
	frac := func() (uint32, error) {
		if !hasArg {
			return 0, fmt.Errorf("policy %q needs a fraction (%s:0.05)", s, name)
		}
		f, err := strconv.ParseFloat(arg, 64)
		if err != nil || f < 0 || f > 1 {
			return 0, fmt.Errorf("policy %q: want a fraction between 0 and 1", s)
		}
		return uint32(f * 0xffffffff), nil
	}
	var err error
	switch name {
	case "rr":
		p.Type = policy.RoundRobin
	case "wrr":
		p.Type = policy.WeightedRoundRobin
		p.Weight, err = num()
	case "rand":
		p.Type = policy.Random
	case "wrand":
		p.Type = policy.WeightedRandom
		p.Weight, err = num()
	case "pri":
		p.Type = policy.Priority
		p.Priority, err = num()
	case "lu":
		p.Type = policy.LeastUsed
	case "lud":
		p.Type = policy.LeastUsedDegradation
		p.LoadDegradation, err = frac()
	case "plu":
		p.Type = policy.PriorityLeastUsed
		p.LoadDegradation, err = frac()
	case "rlu":
		p.Type = policy.RandomizedLeastUsed
	default:
		return p, fmt.Errorf("unknown policy %q (rr, wrr:W, rand, wrand:W, pri:P, lu, lud:D, plu:D, rlu)", s)
	}
	return p, err
}

// policyFlag defines the -policy flag on fs: a bad value is reported by the
// flag package, naming the flag.
func policyFlag(fs *flag.FlagSet) *policy.Policy {
	p := &policy.Policy{Type: policy.RoundRobin}
	fs.Func("policy", "selection policy (rr, wrr:W, rand, wrand:W, pri:P, lu, lud:D, plu:D, rlu; default rr)", func(s string) error {
		v, err := parsePolicy(s)
		if err != nil {
			return err
		}
		*p = v
		return nil
	})
	return p
}
