package mesh

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/ambassador-mesh/ambassador/gossip"
)

// nameClaims is what awaitNameTaken needs of gossip (*gossip.Cluster), a
// seam for tests.
type nameClaims interface {
	Conflicts() <-chan gossip.Member
	ConfirmName(ctx context.Context, m gossip.Member) error
}

// awaitNameTaken blocks until ctx is done (nil) or until a node that
// started before this one holds this node's name at another address (an
// error naming the name and that address: this node must stop, and its
// caller exits with status 1). The rule is the same at any time, on
// joining as after two partitions that each had a node of that name heal.
//
// Two guards keep it from stopping the node that rightly holds the name.
// Conflicts reports only a namesake that started before this node
// (memberlist tells both twins; gossip's holdsName gives both the same
// answer the other way round), so the holder only logs. And the claim must
// be live: ConfirmName pings the name at the claimant's address, so gossip
// still carrying an earlier namesake that has stopped (a crashed node
// restarted at another address keeps its --node) is logged, not obeyed.
func awaitNameTaken(ctx context.Context, claims nameClaims, name string, log *slog.Logger) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-claims.Conflicts():
			peer := net.JoinHostPort(m.Addr, strconv.Itoa(m.Port))
			if err := claims.ConfirmName(ctx, m); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				log.Warn("gossip reports an earlier node holding this node's name, but nothing answers to the name there; keeping it",
					"node", name, "peer", peer, "err", err)
				continue
			}
			return fmt.Errorf("mesh: node name %q is already taken by a live member at %s that started earlier; give this node another --node", name, peer)
		}
	}
}
