// Package policy implements the pool member selection policies of RFC 5356
// and the extensions of the reference implementation rsplib: their wire
// values and the selection they describe.
package policy

// Type is a pool member selection policy type as carried on the wire.
// Bit 31 marks a private (non-standard) policy, bit 30 an adaptive one that
// uses the load of the pool elements.
type Type uint32

// Policy types of RFC 5356 and of rsplib's extensions.
const (
	RoundRobin         Type = 0x00000001
	WeightedRoundRobin Type = 0x00000002
	Random             Type = 0x00000003
	WeightedRandom     Type = 0x00000004
	Priority           Type = 0x00000005

	LeastUsed            Type = 0x40000001
	LeastUsedDegradation Type = 0x40000002
	PriorityLeastUsed    Type = 0x40000003
	RandomizedLeastUsed  Type = 0x40000004

	RandomizedPriorityLeastUsed            Type = 0xb0001001
	RandomizedLeastUsedDegradation         Type = 0xb0001002
	PriorityLeastUsedDegradation           Type = 0xb0001003
	RandomizedPriorityLeastUsedDegradation Type = 0xb0001004

	WeightedRandomDPF       Type = 0xb0002001
	LeastUsedDPF            Type = 0xb0002002
	LeastUsedDegradationDPF Type = 0xb0002003
)

// Policy is a pool element's policy: its type and the values the type uses.
// Fields a type does not use are zero. Load, LoadDegradation, LoadDPF and
// WeightDPF are fractions of 0xFFFFFFFF.
type Policy struct {
	Type            Type
	Weight          uint32
	Priority        uint32
	Load            uint32
	LoadDegradation uint32
	LoadDPF         uint32
	WeightDPF       uint32
	Distance        uint32
}
