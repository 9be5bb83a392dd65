// Package benchmarks measures rsp against peers in the same run: the
// registrar against rsplib's registrar, rsp.Dial against a plain
// net.Dial, and TLS against plain TCP (sub-benchmarks tls=off and tls=on,
// for benchstat -col /tls). The ENRP benchmarks (BenchmarkENRP*) measure a
// registrar's replication against a scripted fake peer: the time from a
// registration to its handle update at a peer (median and 99th
// percentile), the time to notice a hung peer and take it over at each
// registrar's default timers, and the rate of handle table
// synchronisation. BenchmarkResolutionUnderAttack measures
// a well-behaved pool user's resolution latency with the registrar's
// default limits, without and under the attack of the load check (a
// flood, trickling senders, 1000 idle connections, unreachable reports for
// every element; sub-benchmarks attack=off and attack=on, for benchstat
// -col /attack), and TestWellBehavedUserUnderAttack holds it to its bound.
// BenchmarkRegistrarScale holds up to 10^6 pool elements at a registrar
// in a process of its own over 16 connections; its load generator
// emulates 62,500 elements per connection and answers, by default, all
// the keep-alives it read together with one write, as a multiplexer of
// many elements would (RSP_SCALE_ACKS=each writes each answer on its
// own, as one element per connection does).
// It holds benchmarks, their load generator and that test.
package benchmarks
