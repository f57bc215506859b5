package mesh

import (
	"context"
	"fmt"
	"net"

	"github.com/ambassador-mesh/ambassador/creds"
)

// handshakeFunc is what forward runs between dialing a backend and
// copying (forward.Route.Handshake).
type handshakeFunc = func(ctx context.Context, client, backend net.Conn) (net.Conn, net.Conn, error)

// loadCredentials reads every credentials file and builds the handshakes
// that log in on the application's behalf. Secrets stay in the returned
// closures: they are never gossiped, logged or shown by the status API.
// A file that others than its owner can read gets a warning.
func (n *Node) loadCredentials(specs []creds.Spec) (map[string]handshakeFunc, error) {
	out := map[string]handshakeFunc{}
	for _, sp := range specs {
		secret, warn, err := creds.Load(sp.Proto, sp.Path)
		if err != nil {
			return nil, fmt.Errorf("mesh: credentials for %q: %w", sp.Name, err)
		}
		if warn {
			n.log.Warn("credentials file is readable by others than its owner", "service", sp.Name, "file", sp.Path)
		}
		h, err := creds.New(sp.Proto, secret)
		if err != nil {
			return nil, fmt.Errorf("mesh: credentials for %q: %w", sp.Name, err)
		}
		out[sp.Name.Lower().String()] = h
	}
	return out, nil
}
