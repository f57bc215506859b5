//go:build !linux && !darwin && !freebsd

package mesh

import (
	"fmt"
	"net"
	"runtime"
)

// socketPeerUID cannot read the caller's uid here: ambassador knows how on
// Linux (SO_PEERCRED), darwin and FreeBSD (LOCAL_PEERCRED) only. Without
// it the control socket cannot tell the node's operator from another local
// user, so callerAllowed refuses every change (the read-only documents
// still answer). On a system without Unix sockets (Windows) there is no
// control socket at all; see errNoSocket.
func socketPeerUID(net.Conn) (uint32, error) {
	return 0, fmt.Errorf("ambassador reads peer credentials on Linux, darwin and FreeBSD, not on %s; "+
		"change what this node announces with --announce or its --config file (and SIGHUP)", runtime.GOOS)
}
