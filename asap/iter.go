package asap

import "fmt"

// ParamIter walks a sequence of parameters for other codecs that share
// RFC 5354's parameters (ENRP). Unknown parameter types are handled by
// their action bits, as in Unmarshal.
type ParamIter struct {
	w params
}

// NewParamIter returns an iterator over the parameters in b.
func NewParamIter(b []byte) *ParamIter { return &ParamIter{w: params{rest: b}} }

// Next returns the next known parameter whole (header and value, without
// padding); ok is false at the end.
func (it *ParamIter) Next() (t ParamType, raw []byte, ok bool, err error) {
	p, ok, err := it.w.next()
	return p.typ, p.raw, ok, err
}

// Absorb takes the skipped parameters to report out of the error of a
// nested parameter's decoding (ParsePoolElement, ParseServerInformation,
// ParseTransport) so that Done reports them with the iterator's own, and
// returns any other error.
func (it *ParamIter) Absorb(err error) error { return it.w.absorb(err) }

// Done returns an *UnrecognizedParamError with Skipped set when skipped
// parameters are to be reported, or nil.
func (it *ParamIter) Done() error { return it.w.done() }

func rawTLV(b []byte, t ParamType) (tlv, error) {
	p, _, err := nextTLV(b)
	if err != nil {
		return p, err
	}
	if p.typ != t {
		return p, &ParamError{Type: t, Param: p.raw, Err: fmt.Errorf("%w: found %v", ErrMissingParam, p.typ)}
	}
	return p, nil
}

// ParsePoolHandle decodes a whole pool handle parameter.
func ParsePoolHandle(b []byte) (PoolHandle, error) {
	p, err := rawTLV(b, ParamPoolHandle)
	if err != nil {
		return "", err
	}
	return parseHandle(p)
}

// ParsePEChecksum decodes a whole PE checksum parameter.
func ParsePEChecksum(b []byte) (uint16, error) {
	p, err := rawTLV(b, ParamPEChecksum)
	if err != nil {
		return 0, err
	}
	return parseChecksum(p)
}

// ParseOperationError decodes a whole operation error parameter.
func ParseOperationError(b []byte) ([]Cause, error) {
	p, err := rawTLV(b, ParamOperationError)
	if err != nil {
		return nil, err
	}
	return parseCauses(p)
}

// ParamLen returns the length field of the parameter starting b (which
// excludes its padding), or 0.
func ParamLen(b []byte) int {
	if len(b) < 4 {
		return 0
	}
	return int(b[2])<<8 | int(b[3])
}
