// Package failover is the state machine that carries one session across the
// elements of a pool: the initial connect and every failover after it.
//
// It is a pure core in the shape of quic-go's ackhandler and x/net/http2's
// serve loop: it imports neither net nor os and reads no clock. The goroutine
// that owns a session feeds it [Event]s with the time they happened
// ([Machine.Handle]), carries out the [Action]s it returns, and sets one timer
// to [Machine.Deadline], feeding a [Timer] event when it fires. Any event with
// a time at or past the deadline first runs what the timer would have, so a
// late timer never changes the outcome.
//
// # A session's life
//
// [Open] starts the initial connect. The machine tries the candidates the
// Open event names, in their order, then asks for a resolution of the pool
// ([Resolve]) and tries what it returns in the order given (the pool's policy
// has ordered it; the machine never reorders). Each try is a [Connect] with
// its own deadline; the session answers [Connected] or [ConnectFailed]. The
// first element that connects is announced by [Established].
//
// A connected session fails over when its element is lost:
//
//   - a [TransportError] on its connection;
//   - [Config.HeartbeatMisses] [HeartbeatMiss] events in a row (any
//     [HeartbeatAck], which the session feeds for every sign of life from the
//     element, starts the count again);
//   - a [GoAway] from the element (it is leaving: it is not reported
//     unreachable);
//   - a [FailoverRequest] from the application.
//
// A failover then runs these steps, each an action:
//
//  1. [Disconnect] the lost element and [ReportUnreachable] it (the
//     registrar's ASAP_ENDPOINT_UNREACHABLE).
//  2. Judge the data in doubt (below); if nothing that is configured can
//     settle it, fail at once with [ErrDataInDoubt].
//  3. Choose the next element: first the elements of the last business card
//     the session received ([BusinessCardReceived]), in the card's order;
//     then those of a fresh resolution, in the pool's order. The lost element
//     is never chosen within this failover, nor is any element already tried
//     in it: each element is tried at most once per failover.
//  4. [Connect] to it with a per-attempt deadline (now plus
//     [Config.ConnectTimeout], never past the failover's deadline). An
//     element that fails to connect, or whose attempt runs out of time, is
//     reported unreachable and the next is tried at once. When every
//     candidate has been tried, the machine waits a back-off
//     ([Config.RetryDelay], doubling up to [Config.MaxRetryDelay]) and
//     resolves the pool again; a resolution that fails or names no new
//     element counts as a round with nothing to try.
//  5. Once connected, [SendCookieEcho] with the newest cookie the session
//     received ([CookieReceived]) from any element; no cookie, no echo.
//  6. [Callback]: call the application's failover callback (only if
//     [Config.Callback] says there is one). It may send resync messages; it
//     answers [CallbackDone]. A callback that refuses (a non-nil Err) makes
//     the machine disconnect that element (it is alive, so it is not reported)
//     and go on with the next candidate; a refusal that wraps [ErrRefused]
//     ends the session instead ([Fail] with ErrRefused).
//  7. [Replay] the messages the old element did not acknowledge (only in
//     [ModeReplay]); the session answers [ReplayDone] with their number.
//  8. [Indicate] the failover: old element, new element, messages replayed.
//
// A failover is held back first when the lost element is one the last
// failover replayed messages to and it acknowledged none of them (the
// detection's [StreamState.Acked] is the one at that failover's detection).
// Such elements may be
// refusing what is replayed (one that finds a message over its size limit
// closes the connection, and every element of the pool would), so the
// machine disconnects the element at once and waits in [StateHolding]
// ([Machine.Deadline] is the hold-back's end) before it runs the steps
// above: [Config.RetryDelay] for the first such loss, doubled for each one
// in a row before it, at most [Config.FailoverTimeout]. The
// [Config.MaxAttempts]-th such loss in a row fails the session at once
// ([Fail] with [ErrReplayUnacked]) instead of replaying on and on. An element
// that acknowledges anything, or a failover that replays nothing, starts
// the count again.
//
// A failover ends by a [Fail] with an [*Error] when its deadline
// ([Config.FailoverTimeout] from the detection, or from the end of its
// hold-back) passes ([ErrTimeout]), when
// [Config.MaxAttempts] connect attempts have failed ([ErrAttemptsExhausted]),
// when data is in doubt ([ErrDataInDoubt]), or when the callback ends it
// ([ErrRefused]). The initial connect follows
// the same rules (its deadline is also capped by [Event.Deadline] of Open),
// except that it has no lost element, no data, no echo, no callback and no
// replay. Failing or failing over disconnects what the machine connected or
// was connecting.
//
// A transport error or the heartbeat limit on the new element while the
// failover is still under way (echo, callback or replay) counts as that
// element failing: it is disconnected, reported, and the failover goes on
// with the next candidate under the same deadline. A failover request
// during a failover is ignored.
//
// # Bytes in doubt: fail, never splice
//
// A session moves to another element only if the application's view of the
// stream can be made whole on it. Every detection event carries a
// [StreamState] snapshot; from it and the [Mode] the machine computes the
// [Doubt]:
//
//   - [DoubtPartialRead]: part of a message from the old element reached the
//     application's Read and the rest died with it. Only the callback can
//     settle this (the application knows how to resynchronise).
//   - [DoubtUnacked]: in [ModeNoReplay], messages to the old element were
//     not acknowledged and no copy is kept to replay. Only the callback can
//     settle this. (In [ModeReplay] they are replayed: at least once.)
//   - [DoubtLost]: messages from the old element are known to be missing and
//     cannot be requested again, since each element numbers its own
//     messages. A cookie echo that the new element accepts
//     ([CookieEchoResult] with Accepted: the session tells so from the
//     element's answer to its resuming HELLO, see spec/session.md) settles
//     it, for that element has taken up the old one's state; so does the
//     callback. The machine waits
//     for the echo's answer (up to [Config.ConnectTimeout]) before calling
//     the callback, and takes no answer as a refusal of the cookie.
//   - [DoubtStream]: in [ModeStream], bytes have flowed ([StreamState.Used])
//     on a byte stream whose state belongs to the old element (TLS, HTTP/2).
//     Nothing settles it.
//
// A callback settles only the bits it names in [Event.Settled]; accepting
// the failover without naming them leaves them in doubt. If doubt remains
// once the new element is connected, the echo answered and the callback done,
// the machine fails with [ErrDataInDoubt] rather than let the new element's
// bytes follow the old one's. If at detection no configured means could
// settle the doubt (no callback and, for [DoubtLost], no cookie), it fails
// at once without connecting anywhere. A transport error on a new element
// during the failover adds its snapshot's doubt to what is already in doubt.
//
// # Events that do not fit
//
// Events the current state does not expect (a connect result for an element
// the machine is not connecting to, an answer after the failover moved on, a
// connection event naming an element other than the connected one) are
// ignored, except that a [Connected] for an element the machine is not
// waiting for is answered by a [Disconnect] of it. After [Fail] and after
// [Close] the machine ignores every event.
package failover
