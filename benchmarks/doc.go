// Package benchmarks measures rsp against peers in the same run: the
// registrar against rsplib's registrar, rsp.Dial against a plain
// net.Dial, and TLS against plain TCP (sub-benchmarks tls=off and tls=on,
// for benchstat -col /tls). It holds only benchmarks and their load generator.
package benchmarks
