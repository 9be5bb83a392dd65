package policy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidPolicy is returned for a policy value that does not decode or
// encode: an unknown type, or a length that does not match the type.
var ErrInvalidPolicy = errors.New("policy: invalid policy value")

// field names one of a policy's values.
type field uint8

const (
	fieldWeight field = iota
	fieldPriority
	fieldLoad
	fieldDegradation
	fieldLoadDPF
	fieldWeightDPF
	fieldDistance
)

// layouts lists, per type, the policy's values in wire order after the type.
var layouts = map[Type][]field{
	RoundRobin:                             {},
	Random:                                 {},
	WeightedRoundRobin:                     {fieldWeight},
	WeightedRandom:                         {fieldWeight},
	Priority:                               {fieldPriority},
	LeastUsed:                              {fieldLoad},
	RandomizedLeastUsed:                    {fieldLoad},
	LeastUsedDegradation:                   {fieldLoad, fieldDegradation},
	PriorityLeastUsed:                      {fieldLoad, fieldDegradation},
	RandomizedPriorityLeastUsed:            {fieldLoad, fieldDegradation},
	RandomizedLeastUsedDegradation:         {fieldLoad, fieldDegradation},
	PriorityLeastUsedDegradation:           {fieldLoad, fieldDegradation},
	RandomizedPriorityLeastUsedDegradation: {fieldLoad, fieldDegradation},
	WeightedRandomDPF:                      {fieldWeight, fieldWeightDPF, fieldDistance},
	LeastUsedDPF:                           {fieldLoad, fieldLoadDPF, fieldDistance},
	LeastUsedDegradationDPF:                {fieldLoad, fieldDegradation, fieldLoadDPF, fieldDistance},
}

func (t Type) fields() ([]field, bool) {
	f, ok := layouts[t]
	return f, ok
}

func (p *Policy) value(f field) *uint32 {
	switch f {
	case fieldWeight:
		return &p.Weight
	case fieldPriority:
		return &p.Priority
	case fieldLoad:
		return &p.Load
	case fieldDegradation:
		return &p.LoadDegradation
	case fieldLoadDPF:
		return &p.LoadDPF
	case fieldWeightDPF:
		return &p.WeightDPF
	}
	return &p.Distance
}

// Valid reports whether t is a policy type this package knows.
func (t Type) Valid() bool {
	_, ok := t.fields()
	return ok
}

// Adaptive reports whether the policy uses the pool elements' load, so that
// a pool element re-registers when its load changes.
func (t Type) Adaptive() bool {
	f, ok := t.fields()
	if !ok {
		return false
	}
	for _, x := range f {
		if x == fieldLoad {
			return true
		}
	}
	return false
}

// EncodedLen is the length of the policy's value on the wire (type and
// fields, without the parameter header), or 0 for an unknown type.
func (t Type) EncodedLen() int {
	f, ok := t.fields()
	if !ok {
		return 0
	}
	return 4 + 4*len(f)
}

// AppendBinary appends the policy's wire value (the policy type and the
// values it uses, without the parameter header) to b.
func (p Policy) AppendBinary(b []byte) ([]byte, error) {
	f, ok := p.Type.fields()
	if !ok {
		return b, fmt.Errorf("%w: unknown type %#08x", ErrInvalidPolicy, uint32(p.Type))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(p.Type))
	for _, field := range f {
		b = binary.BigEndian.AppendUint32(b, *p.value(field))
	}
	return b, nil
}

// ParsePolicy decodes a policy's wire value (without the parameter header).
func ParsePolicy(b []byte) (Policy, error) {
	var p Policy
	if len(b) < 4 {
		return p, fmt.Errorf("%w: %d bytes", ErrInvalidPolicy, len(b))
	}
	p.Type = Type(binary.BigEndian.Uint32(b))
	f, ok := p.Type.fields()
	if !ok {
		return p, fmt.Errorf("%w: unknown type %#08x", ErrInvalidPolicy, uint32(p.Type))
	}
	if len(b) != 4+4*len(f) {
		return p, fmt.Errorf("%w: type %v takes %d bytes, got %d", ErrInvalidPolicy, p.Type, 4+4*len(f), len(b))
	}
	for i, field := range f {
		*p.value(field) = binary.BigEndian.Uint32(b[4+4*i:])
	}
	return p, nil
}

var typeNames = map[Type]string{
	RoundRobin: "RR", WeightedRoundRobin: "WRR", Random: "RAND", WeightedRandom: "WRAND", Priority: "PRI",
	LeastUsed: "LU", LeastUsedDegradation: "LUD", PriorityLeastUsed: "PLU", RandomizedLeastUsed: "RLU",
	RandomizedPriorityLeastUsed: "RPLU", RandomizedLeastUsedDegradation: "RLUD",
	PriorityLeastUsedDegradation: "PLUD", RandomizedPriorityLeastUsedDegradation: "RPLUD",
	WeightedRandomDPF: "WRAND-DPF", LeastUsedDPF: "LU-DPF", LeastUsedDegradationDPF: "LUD-DPF",
}

// String returns the policy's short name (RR, LU, WRAND-DPF, ...).
func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("policy(%#08x)", uint32(t))
}

// String describes the policy: its short name and the parameters that are
// set, such as "WRR weight=5" or "LU load=12.5%". Loads and degradation
// factors are fractions of 0xFFFFFFFF and shown as percentages.
func (p Policy) String() string {
	var b strings.Builder
	b.WriteString(p.Type.String())
	for _, f := range []struct {
		name    string
		v       uint32
		percent bool
	}{
		{"weight", p.Weight, false},
		{"priority", p.Priority, false},
		{"load", p.Load, true},
		{"degradation", p.LoadDegradation, true},
		{"load-dpf", p.LoadDPF, true},
		{"weight-dpf", p.WeightDPF, true},
		{"distance", p.Distance, false},
	} {
		switch {
		case f.v == 0:
		case f.percent:
			fmt.Fprintf(&b, " %s=%.1f%%", f.name, float64(f.v)/0xFFFFFFFF*100)
		default:
			fmt.Fprintf(&b, " %s=%d", f.name, f.v)
		}
	}
	return b.String()
}
