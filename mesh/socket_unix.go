//go:build unix

package mesh

import (
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
)

// lockSocket takes an exclusive flock on path+".lock", so that of two
// nodes starting at once on one path only one checks for, removes and
// replaces a stale socket at a time, and a stopping node removes only its
// own socket. The lock file stays: removing it would let a node lock a
// new file while another still holds the old one. It is made in the
// socket's folder, which checkSocketDir vetted, and never followed if it
// is a link.
func lockSocket(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("control socket lock: %w", err)
	}
	// Held only around a check that waits at most a second for an answer.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("control socket lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// checkSocketDir refuses a control socket folder that is not a real
// directory (a symbolic link is refused, not followed), is owned by
// someone other than euid or root, or that group or others may write.
func checkSocketDir(dir string, euid int) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("control socket folder %s is not a directory (%s); not using it", dir, fi.Mode().Type())
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("control socket folder %s: cannot tell its owner", dir)
	}
	if int(st.Uid) != euid && st.Uid != 0 {
		return fmt.Errorf("control socket folder %s belongs to uid %d, not to this node's user (uid %d) or root; not using it", dir, st.Uid, euid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("control socket folder %s is writable by others (mode %04o): they could replace the socket; give --socket a path in a folder only this user can write", dir, fi.Mode().Perm())
	}
	return nil
}

// umaskMu makes socket creation one at a time in this process, so two
// nodes in one process (tests) do not restore each other's umask.
var umaskMu sync.Mutex

// listenUnix0666 listens on a Unix socket at path whose file is created
// with mode 0666 (the peer-credential check decides, and everyone else
// should hear why they are refused). A socket file takes its mode from the
// umask at bind time, and that is the only safe way to set it: chmod by
// path would follow a link put there in between, and fchmod on a socket's
// descriptor does not change the file. The umask is process-wide: during
// the bind, a file another goroutine created would be writable by group
// and others. That is acceptable because a node creates no other files
// (it makes the socket's folder and lock file before this, and only reads
// its configuration), and it happens once, at startup.
func listenUnix0666(path string) (net.Listener, error) {
	umaskMu.Lock()
	defer umaskMu.Unlock()
	old := syscall.Umask(0o111)
	defer syscall.Umask(old)
	return net.Listen("unix", path)
}

// SocketSupported reports why this system has no control socket: nil on
// Unix. (The caller's uid is read on Linux, darwin and FreeBSD; on other
// Unix systems the socket serves the read-only documents and refuses
// every change, see socketPeerUID.)
func SocketSupported() error { return nil }
