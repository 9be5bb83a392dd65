//go:build !unix

package mapping

// readIdle reports that the connection reads its next header into hdr.
func (c *TCPConn) readIdle() (bool, error) { return false, nil }
