// Package interop holds the tests of rsp against rsplib, the reference
// RSerPool implementation, over kernel SCTP: its registrar, its pool
// elements and pool users, and its handlespace dump. They run where the
// kernel has SCTP and rsplib is installed (see .ci/uml), and skip
// elsewhere.
package interop
