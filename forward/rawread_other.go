//go:build !unix

package forward

import "errors"

// rawReads is false: Go's sockets on Windows are not non-blocking, so a
// read inside RawConn.Read would block past deadlines. Every conn is read
// through net.Conn.Read with a pooled buffer instead (readChunk, r nil).
const rawReads = false

// readNonblock is never called when rawReads is false.
func readNonblock(uintptr, []byte) (int, bool, error) {
	return 0, false, errors.New("forward: raw socket reads need a Unix system")
}

// socketError is never called when rawReads is false.
func socketError(uintptr) error { return nil }
