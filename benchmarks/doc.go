// Package benchmarks measures rsp against peers in the same run: the
// registrar against rsplib's registrar, and rsp.Dial against a plain
// net.Dial. It holds only benchmarks and their load generator.
package benchmarks
