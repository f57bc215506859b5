//go:build linux

package gossip

import (
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/hashicorp/memberlist"
	"golang.org/x/sys/unix"
)

// A link-local peer's zone becomes the scope id of the sockaddr sent to,
// and the scope id the kernel reports comes back as the zone: without it
// an answer to fe80::1 could leave by the wrong interface.
func TestUDPSockaddrZone(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no lo: %v", err)
	}
	u := &udpIO{v6: true}
	for _, tc := range []struct {
		to    string
		scope uint32
		err   bool
	}{
		{to: "[fe80::1%lo]:7946", scope: uint32(lo.Index)},
		{to: "[fe80::1%" + strconv.Itoa(lo.Index) + "]:7946", scope: uint32(lo.Index)},
		{to: "[fe80::1]:7946", scope: 0},
		{to: "[2001:db8::1]:7946", scope: 0},
		{to: "[fe80::1%no-such-if0]:7946", err: true},
	} {
		rsa, _, err := u.sockaddr(netip.MustParseAddrPort(tc.to))
		if tc.err {
			if err == nil || !strings.Contains(err.Error(), "no-such-if0") {
				t.Errorf("%s: err %v, want one naming the zone", tc.to, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.to, err)
			continue
		}
		if rsa.Scope_id != tc.scope {
			t.Errorf("%s: scope id %d, want %d", tc.to, rsa.Scope_id, tc.scope)
		}
	}

	// And back: the kernel's scope id names the interface.
	var any unix.RawSockaddrAny
	sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&any))
	sa.Family = unix.AF_INET6
	sa.Addr = netip.MustParseAddr("fe80::1").As16()
	putPort(&sa.Port, 7946)
	sa.Scope_id = uint32(lo.Index)
	if got, want := sockaddrAddrPort(&any), netip.MustParseAddrPort("[fe80::1%lo]:7946"); got != want {
		t.Errorf("from scope id %d: %s, want %s", lo.Index, got, want)
	}
}

// TestTransportLinkLocalZone sends gossip between link-local addresses
// on real interfaces: a veth pair in a network namespace of its own. The
// test runs itself again inside `unshare --net` (root only), so that the
// interface names it looks up are the namespace's.
func TestTransportLinkLocalZone(t *testing.T) {
	if os.Getenv("AMB_ZONE_CHILD") == "" {
		if os.Geteuid() != 0 {
			t.Skip("needs root for a network namespace")
		}
		for _, tool := range []string{"unshare", "ip"} {
			if _, err := exec.LookPath(tool); err != nil {
				t.Skipf("needs %s", tool)
			}
		}
		cmd := exec.Command("unshare", "--net", os.Args[0], "-test.run=^TestTransportLinkLocalZone$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "AMB_ZONE_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestTransportLinkLocalZone") {
			t.Fatalf("in a fresh network namespace: %v\n%s", err, out)
		}
		return
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "za", "type", "veth", "peer", "name", "zb"},
		{"link", "set", "za", "up"},
		{"link", "set", "zb", "up"},
		{"addr", "add", "fe80::a/64", "dev", "za", "nodad"},
		{"addr", "add", "fe80::b/64", "dev", "zb", "nodad"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	// An added address is tentative until the kernel's address work runs,
	// even with nodad, and that work waits for the rtnl lock: in CI, other
	// tests' labs create and delete hundreds of interfaces meanwhile, which
	// held it past this test's old 5 s wait (a packet sent to or from a
	// tentative address is dropped, not queued). So wait for both
	// addresses to be usable, then ping until one gets through.
	waitUsable(t, 30*time.Second, "za", "zb")
	a, err := newTransport("::", 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	b, err := newTransport("::", 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()

	p := sendUntilHeard(t, a, b, "ping", "[fe80::b%zb]:"+strconv.Itoa(b.port()))
	from := p.From.(*net.UDPAddr)
	if from.Zone != "za" && from.Zone != "zb" {
		t.Fatalf("From = %s: want the zone of the interface it came in on (za or zb)", from)
	}
	if back := sendUntilHeard(t, b, a, "ack", from.String()); string(back.Buf) != "ack" {
		t.Errorf("read back %q, want ack", back.Buf)
	}
}

// waitUsable waits until no address on the named links is tentative.
func waitUsable(t *testing.T, limit time.Duration, links ...string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for _, link := range links {
		for {
			out, err := exec.Command("ip", "-6", "-o", "addr", "show", "dev", link, "tentative").CombinedOutput()
			if err != nil {
				t.Fatalf("ip addr show dev %s: %v: %s", link, err, out)
			}
			if len(strings.TrimSpace(string(out))) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still tentative after %s: %s", link, limit, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// sendUntilHeard sends msg from one transport to addr every 100 ms until
// the other transport reads a packet, for at most 10 s. Only the timing
// is retried: what arrived, and its zone, is still checked by the caller.
func sendUntilHeard(t *testing.T, from, to *transport, msg, addr string) *memberlist.Packet {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		if _, err := from.WriteToAddress([]byte(msg), memberlist.Address{Addr: addr}); err != nil {
			t.Fatalf("send %s to %s: %v", msg, addr, err)
		}
		select {
		case p := <-to.PacketCh():
			return p
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s to %s: nothing arrived within 10s", msg, addr)
			return nil
		}
	}
}
