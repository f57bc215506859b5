// The node's interfaces, address and default name.

package mesh

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
)

// usableInterfaces returns the named interfaces (each must exist and be up)
// or, with no names, every up, multicast-capable, non-loopback interface
// that has an IPv4 address.
func usableInterfaces(names []string) ([]net.Interface, error) {
	if len(names) > 0 {
		var out []net.Interface
		for _, name := range names {
			ifc, err := net.InterfaceByName(name)
			if err != nil {
				return nil, fmt.Errorf("mesh: interface %q: %w", name, err)
			}
			if ifc.Flags&net.FlagUp == 0 {
				return nil, fmt.Errorf("mesh: interface %q is down", name)
			}
			out = append(out, *ifc)
		}
		return out, nil
	}
	all, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("mesh: list interfaces: %w", err)
	}
	var out []net.Interface
	for _, ifc := range all {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagMulticast == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		if _, ok := firstIPv4([]net.Interface{ifc}); ok {
			out = append(out, ifc)
		}
	}
	return out, nil
}

func firstIPv4(ifaces []net.Interface) (netip.Addr, bool) {
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if pfx, err := netip.ParsePrefix(a.String()); err == nil && pfx.Addr().Is4() {
				return pfx.Addr(), true
			}
		}
	}
	return netip.Addr{}, false
}

// defaultNodeName is the host name plus 16 hex digits (64 bits of SHA-256)
// of the advertise address and gossip port. The suffix is long enough that
// cloned hosts sharing a host name never collide in practice (100 hosts:
// about 3e-16; 16 bits gave about 7 %), and derived rather than random so
// that a restarted node takes its own place back instead of leaving a dead
// twin behind. Two nodes on one address and port cannot both run anyway;
// a duplicate --node is caught when the node joins (see Run).
func defaultNodeName(addr netip.Addr, gossipPort int) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "node"
	}
	host, _, _ = strings.Cut(host, ".")
	var b strings.Builder
	for _, r := range strings.ToLower(host) {
		if r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' {
			b.WriteRune(r)
		}
	}
	sum := sha256.Sum256([]byte(netip.AddrPortFrom(addr, uint16(gossipPort)).String()))
	name := strings.Trim(b.String(), "-")
	if name == "" {
		name = "node"
	}
	if len(name) > 40 {
		name = strings.TrimRight(name[:40], "-")
	}
	return name + "-" + hex.EncodeToString(sum[:8])
}
