// Package ulpack is the pure core of rsp's sessions: the session frame
// codec, sequence numbers, upper-layer acknowledgements and the replay set.
// Its wire format and flows are specified in spec/session.md at the root of
// the module.
//
// The package does no I/O and reads no clock: a caller passes now where a
// time matters and asks for a Deadline. It is shaped for an I/O loop that
// owns, per session, one Sender (the direction it sends: a bounded buffer of
// unacknowledged messages, which is also what it replays after failover)
// and one Receiver (the direction it receives: duplicate suppression and the
// acknowledgements to send). Neither is safe for concurrent use.
package ulpack
