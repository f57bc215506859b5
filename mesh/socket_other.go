//go:build !unix

package mesh

import (
	"errors"
	"net"
	"runtime"
)

// The control socket relies on Unix: a folder only the node's user can
// change (file owners), flock around the stale-socket check, a 0666
// socket file made through the umask, and the caller's uid. Without them
// it would be open to every local user, so on other systems it is not
// offered: a node given a socket path fails to start with errNoSocket,
// and runs without one when none is set (the status address still
// answers, read-only), which is the CLI's default here (SocketSupported).
var errNoSocket = errors.New("the control socket needs a Unix system (folder ownership, flock, umask, peer credentials), which " + runtime.GOOS +
	" is not: a node here runs without one (no --socket); read its documents over --http, and change what it announces with --announce or --config and a restart")

// SocketSupported reports why this system has no control socket.
func SocketSupported() error { return errNoSocket }

func lockSocket(string) (unlock func(), err error) { return nil, errNoSocket }

func checkSocketDir(string, int) error { return errNoSocket }

func listenUnix0666(string) (net.Listener, error) { return nil, errNoSocket }
