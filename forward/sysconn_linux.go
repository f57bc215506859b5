//go:build linux

package forward

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// sysConn is the plain TCP socket under TLS on a keyed hop, as tls.Conn
// reads and writes it. Go's net makes each read and write a system call
// that tells the runtime it may block (entersyscall), so that sysmon
// retakes the P of a call it finds in the kernel; sysConn reads and writes
// with raw system calls inside the socket's RawConn, as the event loop
// does: none can block, the socket is non-blocking, and the poller waits.
// It still reads until EAGAIN before it waits: without the event's flags
// it cannot tell a read that emptied the socket from one that left a FIN
// or a reset behind, which the next read must see. Everything else
// (deadlines, Close, CloseWrite, SetLinger) is the *net.TCPConn's.
//
// Reads are serialized by tls.Conn (and so are writes); a read and a write
// may run at once, so each has its own state.
type sysConn struct {
	*net.TCPConn
	rc syscall.RawConn

	readFn func(fd uintptr) bool // c.readFD, bound once
	rb     []byte
	rn     int
	rerr   error

	writeFn func(fd uintptr) bool // c.writeFD, bound once
	wb      []byte
	wn      int
	werr    error

	// loop is set when an event loop took the stream over
	// (tlsloop_linux.go): from then on only the loop reads and writes,
	// through it, and the *net.TCPConn is closed.
	loop *loopSock

	// fin: a read found the peer's FIN (returned 0). Only the reading
	// goroutine (or the loop) sets and reads it; see tlsTruncated.
	fin bool
}

// sysConnOf returns c as a sysConn when it is a *net.TCPConn, else c.
func sysConnOf(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	s := &sysConn{TCPConn: tc, rc: rc}
	s.readFn, s.writeFn = s.readFD, s.writeFD
	return s
}

func (c *sysConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if c.loop != nil {
		n, err := c.loop.read(b)
		c.fin = c.fin || err == io.EOF
		return n, err
	}
	c.rb, c.rn, c.rerr = b, 0, nil
	err := c.rc.Read(c.readFn)
	c.rb = nil
	if err == nil {
		err = c.rerr
	}
	switch {
	case err != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	case c.rn == 0:
		c.fin = true
		return 0, io.EOF
	}
	return c.rn, nil
}

// tlsTruncated reports whether c, a TLS conn that just returned io.EOF,
// ended without the peer's close_notify: its socket's FIN came first.
//
// crypto/tls returns io.EOF both for a close_notify and for a FIN between
// records (it must, for web servers that skip close_notify). Between two
// ambassadors a clean end always sends close_notify (CloseWrite), so a
// bare FIN means the peer went away mid-stream, its process killed with
// nothing unread, say: passed on as a clean end, the client would take a
// cut-off stream for a whole one. The two are told apart exactly: after
// a close_notify crypto/tls returns io.EOF without reading the socket
// again, so the socket's 0-byte read was never made.
func tlsTruncated(c net.Conn) bool {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return false
	}
	sc, ok := tc.NetConn().(*sysConn)
	return ok && sc.fin
}

// readFD is the RawConn.Read callback.
func (c *sysConn) readFD(fd uintptr) bool {
	n, err := readFD(int(fd), c.rb)
	switch {
	case err == unix.EAGAIN:
		return false
	case err != nil:
		c.rerr = os.NewSyscallError("read", err)
		return true
	}
	c.rn = n
	return true
}

func (c *sysConn) Write(b []byte) (int, error) {
	if c.loop != nil {
		return c.loop.write(b)
	}
	c.wb, c.wn, c.werr = b, 0, nil
	err := c.rc.Write(c.writeFn)
	n := c.wn
	c.wb = nil
	if err == nil {
		err = c.werr
	}
	if err != nil {
		return n, &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	return n, nil
}

// writeFD is the RawConn.Write callback: it writes what is left, and asks
// to wait when the socket is full.
func (c *sysConn) writeFD(fd uintptr) bool {
	w, err := writeFD(int(fd), c.wb[c.wn:])
	c.wn += w
	switch {
	case err == unix.EAGAIN:
		return false
	case err != nil:
		c.werr = os.NewSyscallError("write", err)
	}
	return true
}
