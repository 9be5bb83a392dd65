//go:build !linux

package sctp

// Supported reports whether the kernel provides SCTP sockets: only Linux's
// are used.
func Supported() bool { return false }
