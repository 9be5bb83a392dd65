package main

import "github.com/rsp-go/rsp/mapping"

// defaultListen is the ASAP port over TCP, and over SCTP where the kernel
// has it.
func defaultListen() []string {
	l := []string{"tcp::3863"}
	if mapping.SCTPSupported() {
		l = append(l, "sctp::3863")
	}
	return l
}
