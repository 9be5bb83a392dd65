// Package pingpong is rsplib's PingPong service protocol, the reference
// RSerPool implementation's example of failover with ASAP cookies, as a
// test peer: its message codec, the pure state of its server (pool
// element) and client (pool user), and a server over a mapping
// connection.
//
// The protocol, as rsplib's pingpongpackets.h, pingpongclient and
// rspserver -pingpong define it: the pool user sends PING messages with a
// message number counting from 1; the pool element answers each with a
// PONG that repeats the message number and carries its own reply number,
// counting from 1, then sends an ASAP_COOKIE holding the next reply number.
// A pool user that fails over echoes the last cookie (ASAP_COOKIE_ECHO) to
// the next element, which goes on with that reply number: the user sees
// the reply numbers continue without a gap. Data messages travel with PPID
// 33; all integers are big-endian.
//
//	PING:   type 0x01 | flags | length (16) | message number (64) | data
//	PONG:   type 0x02 | flags | length (16) | message number (64) | reply number (64) | data
//	cookie: "<PP-TD1>" (8 bytes) | reply number (64)
//
// The length counts the whole message, header included.
package pingpong

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// PPID is the payload protocol identifier of PingPong data messages.
const PPID uint32 = 33

// Message types.
const (
	TypePing = 0x01
	TypePong = 0x02
)

// Header and fixed message sizes.
const (
	headerLen = 4
	pingLen   = headerLen + 8
	pongLen   = headerLen + 16
	// CookieLen is the length of the service's cookie.
	CookieLen = 16
)

// cookieID opens every PingPong cookie.
const cookieID = "<PP-TD1>"

// Errors of the codec.
var (
	ErrTruncated = errors.New("pingpong: message truncated")
	ErrType      = errors.New("pingpong: unexpected message type")
	ErrLength    = errors.New("pingpong: bad length")
	ErrCookie    = errors.New("pingpong: not a PingPong cookie")
)

// Ping is a pool user's request.
type Ping struct {
	MessageNo uint64
	Data      []byte
}

// Pong is a pool element's answer to a Ping.
type Pong struct {
	// MessageNo is the number of the Ping answered.
	MessageNo uint64
	// ReplyNo counts the element's replies, carried on across failover
	// by the cookie.
	ReplyNo uint64
	Data    []byte
}

// Cookie is the state a PingPong element hands its user: the reply number
// of its next Pong.
type Cookie struct {
	ReplyNo uint64
}

func appendHeader(b []byte, typ uint8, length int) ([]byte, error) {
	if length > 0xffff {
		return b, fmt.Errorf("%w: %d bytes", ErrLength, length)
	}
	return binary.BigEndian.AppendUint16(append(b, typ, 0), uint16(length)), nil
}

// AppendBinary appends the Ping's wire form to b.
func (p Ping) AppendBinary(b []byte) ([]byte, error) {
	b, err := appendHeader(b, TypePing, pingLen+len(p.Data))
	if err != nil {
		return b, err
	}
	return append(binary.BigEndian.AppendUint64(b, p.MessageNo), p.Data...), nil
}

// AppendBinary appends the Pong's wire form to b.
func (p Pong) AppendBinary(b []byte) ([]byte, error) {
	b, err := appendHeader(b, TypePong, pongLen+len(p.Data))
	if err != nil {
		return b, err
	}
	b = binary.BigEndian.AppendUint64(b, p.MessageNo)
	return append(binary.BigEndian.AppendUint64(b, p.ReplyNo), p.Data...), nil
}

// AppendBinary appends the cookie's bytes to b.
func (c Cookie) AppendBinary(b []byte) ([]byte, error) {
	return binary.BigEndian.AppendUint64(append(b, cookieID...), c.ReplyNo), nil
}

// body checks the header of a message of type typ and at least min bytes
// and returns the message as its length says (rsplib ignores what follows).
func body(b []byte, typ uint8, min int) ([]byte, error) {
	if len(b) < headerLen {
		return nil, ErrTruncated
	}
	if b[0] != typ {
		return nil, fmt.Errorf("%w: %#02x, want %#02x", ErrType, b[0], typ)
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if n < min {
		return nil, fmt.Errorf("%w: %d, at least %d", ErrLength, n, min)
	}
	if n > len(b) {
		return nil, fmt.Errorf("%w: %d of %d bytes", ErrTruncated, n, len(b))
	}
	return b[:n], nil
}

// ParsePing decodes a Ping. Its Data aliases b.
func ParsePing(b []byte) (Ping, error) {
	m, err := body(b, TypePing, pingLen)
	if err != nil {
		return Ping{}, err
	}
	return Ping{MessageNo: binary.BigEndian.Uint64(m[4:]), Data: m[pingLen:]}, nil
}

// ParsePong decodes a Pong. Its Data aliases b.
func ParsePong(b []byte) (Pong, error) {
	m, err := body(b, TypePong, pongLen)
	if err != nil {
		return Pong{}, err
	}
	return Pong{MessageNo: binary.BigEndian.Uint64(m[4:]), ReplyNo: binary.BigEndian.Uint64(m[12:]), Data: m[pongLen:]}, nil
}

// ParseCookie decodes a PingPong cookie: exactly CookieLen bytes opening
// with the service's identifier, as rsplib's element requires of an echo.
func ParseCookie(b []byte) (Cookie, error) {
	if len(b) != CookieLen || string(b[:8]) != cookieID {
		return Cookie{}, ErrCookie
	}
	return Cookie{ReplyNo: binary.BigEndian.Uint64(b[8:])}, nil
}
