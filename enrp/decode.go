package enrp

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/rsp-go/rsp/asap"
)

// UnrecognizedMessageError reports a message of an unknown type; Report is
// set when its action bits ask for an "unrecognized message" error.
type UnrecognizedMessageError struct {
	Type   MessageType
	Report bool
}

func (e *UnrecognizedMessageError) Error() string {
	return fmt.Sprintf("enrp: unrecognized message type %#02x", uint8(e.Type))
}

// Unmarshal decodes one ENRP message (exactly one, perhaps followed by its
// padding). The result is a pointer to one of this package's message
// types. Unknown parameters follow their action bits as in asap.Unmarshal:
// skipped ones to report come back as an *asap.UnrecognizedParamError with
// Skipped set, alongside the message.
func Unmarshal(b []byte) (Message, error) {
	if len(b) < 12 {
		return nil, fmt.Errorf("%w: %d bytes", ErrInvalid, len(b))
	}
	t, flags := MessageType(b[0]), b[1]
	n := int(binary.BigEndian.Uint16(b[2:]))
	if n < 12 || n > len(b) || len(b)-n > 3 {
		return nil, fmt.Errorf("%w: length %d of %d bytes", ErrInvalid, n, len(b))
	}
	h := Header{Sender: asap.ServerID(binary.BigEndian.Uint32(b[4:])), Receiver: asap.ServerID(binary.BigEndian.Uint32(b[8:]))}
	body := b[12:n]
	target := func() (asap.ServerID, error) {
		if len(body) != 4 {
			return 0, fmt.Errorf("%w: %v takes a 4-byte target, got %d bytes", ErrInvalid, t, len(body))
		}
		return asap.ServerID(binary.BigEndian.Uint32(body)), nil
	}
	empty := func() error {
		if len(body) != 0 {
			return fmt.Errorf("%w: %v takes no body, got %d bytes", ErrInvalid, t, len(body))
		}
		return nil
	}
	switch t {
	case TypePresence:
		p := &Presence{Header: h, ReplyRequired: flags&1 != 0}
		it := asap.NewParamIter(body)
		sawChecksum := false
		err := each(it, func(pt asap.ParamType, raw []byte) error {
			var err error
			switch pt {
			case asap.ParamPEChecksum:
				p.Checksum, err = asap.ParsePEChecksum(raw)
				sawChecksum = true
			case asap.ParamServerInformation:
				var si asap.ServerInformation
				si, err = asap.ParseServerInformation(raw)
				p.Info = &si
			}
			return err
		})
		if decoded(err) && !sawChecksum {
			return nil, fmt.Errorf("%w: presence without PE checksum", ErrInvalid)
		}
		return result(p, err)
	case TypeHandleTableRequest:
		return result(&HandleTableRequest{Header: h, OwnChildrenOnly: flags&1 != 0}, empty())
	case TypeHandleTableResponse:
		r := &HandleTableResponse{Header: h, Reject: flags&1 != 0, More: flags&2 != 0}
		err := each(asap.NewParamIter(body), func(pt asap.ParamType, raw []byte) error {
			switch pt {
			case asap.ParamPoolHandle:
				handle, err := asap.ParsePoolHandle(raw)
				if err != nil {
					return err
				}
				r.Pools = append(r.Pools, PoolEntry{Handle: handle})
			case asap.ParamPoolElement:
				if len(r.Pools) == 0 {
					return fmt.Errorf("%w: pool element before any pool handle", ErrInvalid)
				}
				pe, err := asap.ParsePoolElement(raw)
				if err != nil {
					return err
				}
				last := &r.Pools[len(r.Pools)-1]
				last.PEs = append(last.PEs, pe)
			}
			return nil
		})
		if decoded(err) {
			for _, p := range r.Pools {
				if len(p.PEs) == 0 {
					return nil, fmt.Errorf("%w: pool %q without elements", ErrInvalid, p.Handle)
				}
			}
		}
		return result(r, err)
	case TypeHandleUpdate:
		if len(body) < 4 {
			return nil, fmt.Errorf("%w: handle update without action", ErrInvalid)
		}
		u := &HandleUpdate{Header: h, TakeoverSuggested: flags&1 != 0, Action: UpdateAction(binary.BigEndian.Uint16(body))}
		if u.Action > DelPE {
			return nil, fmt.Errorf("%w: update action %d", ErrInvalid, u.Action)
		}
		var sawHandle, sawPE bool
		err := each(asap.NewParamIter(body[4:]), func(pt asap.ParamType, raw []byte) error {
			var err error
			switch {
			case pt == asap.ParamPoolHandle && !sawHandle:
				u.Handle, err = asap.ParsePoolHandle(raw)
				sawHandle = true
			case pt == asap.ParamPoolElement && !sawPE:
				u.PE, err = asap.ParsePoolElement(raw)
				sawPE = true
			}
			return err
		})
		if decoded(err) && (!sawHandle || !sawPE) {
			return nil, fmt.Errorf("%w: handle update without pool handle or element", ErrInvalid)
		}
		return result(u, err)
	case TypeListRequest:
		return result(&ListRequest{Header: h}, empty())
	case TypeListResponse:
		r := &ListResponse{Header: h, Reject: flags&1 != 0}
		err := each(asap.NewParamIter(body), func(pt asap.ParamType, raw []byte) error {
			if pt != asap.ParamServerInformation {
				return nil
			}
			si, err := asap.ParseServerInformation(raw)
			r.Servers = append(r.Servers, si)
			return err
		})
		return result(r, err)
	case TypeInitTakeover:
		id, err := target()
		return result(&InitTakeover{Header: h, Target: id}, err)
	case TypeInitTakeoverAck:
		id, err := target()
		return result(&InitTakeoverAck{Header: h, Target: id}, err)
	case TypeTakeoverServer:
		id, err := target()
		return result(&TakeoverServer{Header: h, Target: id}, err)
	case TypeError:
		e := &Error{Header: h}
		err := each(asap.NewParamIter(body), func(pt asap.ParamType, raw []byte) error {
			if pt != asap.ParamOperationError {
				return nil
			}
			cs, err := asap.ParseOperationError(raw)
			e.Causes = append(e.Causes, cs...)
			return err
		})
		if decoded(err) && len(e.Causes) == 0 {
			return nil, fmt.Errorf("%w: error without causes", ErrInvalid)
		}
		return result(e, err)
	}
	return nil, &UnrecognizedMessageError{Type: t, Report: t>>6 == 1}
}

// each calls f for every known parameter.
func each(it *asap.ParamIter, f func(asap.ParamType, []byte) error) error {
	for {
		t, raw, ok, err := it.Next()
		if err != nil {
			return err
		}
		if !ok {
			return it.Done()
		}
		if err := it.Absorb(f(t, raw)); err != nil {
			return err
		}
	}
}

// decoded reports whether err leaves the message decoded: no error, or
// skipped parameters to report.
func decoded(err error) bool {
	var up *asap.UnrecognizedParamError
	return err == nil || errors.As(err, &up) && up.Skipped
}

// result returns m with a reportable skip error, or nil with any other
// error.
func result(m Message, err error) (Message, error) {
	if decoded(err) {
		return m, err
	}
	return nil, err
}
