// interfaces.go: which interfaces to use, and the RFC 6762 §11 on-link test.

package announce

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// linkLocal4 is IPv4 link-local, on-link by definition (RFC 3927).
var linkLocal4 = netip.MustParsePrefix("169.254.0.0/16")

// onLink reports whether addr is inside one of nets or an IPv4 link-local
// address: the RFC 6762 §11 test for a packet that came from the local
// link.
func onLink(nets []netip.Prefix, addr netip.Addr) bool {
	addr = addr.Unmap()
	if !addr.Is4() {
		return false
	}
	if linkLocal4.Contains(addr) {
		return true
	}
	for _, n := range nets {
		if n.Contains(addr) {
			return true
		}
	}
	return false
}

// ifaceInfo is what interface selection needs to know about an interface.
type ifaceInfo struct {
	name  string
	index int
	flags net.Flags
	addrs []netip.Addr   // IPv4 only
	nets  []netip.Prefix // the prefixes of addrs (RFC 6762 §11 on-link test)
	addr  netip.Addr     // A record address, set by selectInterfaces
}

// systemInterfaces lists the host's interfaces.
func systemInterfaces() ([]ifaceInfo, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	out := make([]ifaceInfo, 0, len(ifs))
	for _, ifi := range ifs {
		info := ifaceInfo{name: ifi.Name, index: ifi.Index, flags: ifi.Flags}
		addrs, err := ifi.Addrs()
		if err != nil {
			continue // vanished meanwhile
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok || !ip.Unmap().Is4() {
				continue
			}
			ones, bits := ipn.Mask.Size()
			if bits == 8*net.IPv6len {
				ones -= 8 * (net.IPv6len - net.IPv4len) // a v4 mask in v6 form
			}
			if bits == 0 || ones < 0 {
				ones = 32 // non-canonical mask: trust only the address itself
			}
			info.addrs = append(info.addrs, ip.Unmap())
			info.nets = append(info.nets, netip.PrefixFrom(ip.Unmap(), ones))
		}
		out = append(out, info)
	}
	return out, nil
}

// selectInterfaces picks the interfaces to use and their A record address
// (addr, or the interface's first IPv4 address). With names, those that
// are up and have an address are used, and missing lists the names that
// do not exist; without, every up, multicast-capable, non-loopback
// interface with an IPv4 address.
func selectInterfaces(all []ifaceInfo, names []string, addr netip.Addr) (want []ifaceInfo, missing []string) {
	usable := func(i ifaceInfo) (ifaceInfo, bool) {
		if i.flags&net.FlagUp == 0 || len(i.addrs) == 0 {
			return i, false
		}
		i.addr = i.addrs[0]
		if addr.IsValid() {
			i.addr = addr
		}
		return i, true
	}
	if len(names) == 0 {
		for _, i := range all {
			if i.flags&net.FlagMulticast == 0 || i.flags&net.FlagLoopback != 0 {
				continue
			}
			if u, ok := usable(i); ok {
				want = append(want, u)
			}
		}
		return want, nil
	}
	for _, name := range names {
		j := slices.IndexFunc(all, func(i ifaceInfo) bool { return i.name == name })
		if j < 0 {
			missing = append(missing, name)
			continue
		}
		if u, ok := usable(all[j]); ok {
			want = append(want, u)
		}
	}
	return want, missing
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
