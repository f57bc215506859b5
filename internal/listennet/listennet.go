// Package listennet picks the network a listener asks for, for every
// listener of a node: the forwarders, the data port, the status API, the
// DNS server and gossip.
package listennet

import "net/netip"

// Network returns network ("tcp" or "udp") with a 4 appended when addr
// (host:port) has an IPv4 address as its host. For 0.0.0.0 Go's "tcp"
// and "udp" open [::], every IPv6 address as well, which a firewall
// written for IPv4 does not cover: an IPv4 address listens on IPv4 only,
// as asked. Any other host (an IPv6 address, a name, none) keeps network.
func Network(network, addr string) string {
	if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().Is4() {
		return network + "4"
	}
	return network
}
