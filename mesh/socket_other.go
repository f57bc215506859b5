//go:build !unix

package mesh

import (
	"errors"
	"net"
)

// The control socket relies on Unix: a folder only the node's user can
// change (file owners), flock around the stale-socket check, a 0666
// socket file made through the umask, and the caller's uid. Without them
// it would be open to every local user, so on other systems it is not
// offered: a node given a socket path fails to start with errNoSocket,
// and runs without one when none is set (the status address still
// answers, read-only).
var errNoSocket = errors.New("the control socket needs a Unix system (folder ownership, flock, umask, peer credentials); set no socket path (--socket \"\") here")

func lockSocket(string) (unlock func(), err error) { return nil, errNoSocket }

func checkSocketDir(string, int) error { return errNoSocket }

func listenUnix0666(string) (net.Listener, error) { return nil, errNoSocket }
