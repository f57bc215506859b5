//go:build unix

package hostsfile

import (
	"io/fs"
	"os"
	"syscall"
)

// chown gives t the owner and group of the file st describes. It is a
// no-op when they already match (an unprivileged process can then still
// write its own file).
func chown(t *os.File, st fs.FileInfo) error {
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok || (int(s.Uid) == os.Getuid() && int(s.Gid) == os.Getgid()) {
		return nil
	}
	return t.Chown(int(s.Uid), int(s.Gid))
}
