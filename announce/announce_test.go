package announce

import (
	"errors"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"
)

var serviceNameCases = []struct {
	name string
	ok   bool
}{
	{"redis", true},
	{"http", true},
	{"x", true},
	{"a1", true},
	{"1a", true},
	{"my-svc", true},
	{"a-b-c", true},
	{"REDIS", true},
	{"abcdefghijklmno", true}, // 15
	{"", false},
	{"abcdefghijklmnop", false}, // 16
	{"123", false},
	{"-redis", false},
	{"redis-", false},
	{"re--dis", false},
	{"re_dis", false},
	{"re.dis", false},
	{"ré", false},
	{"_redis", false},
	{"-", false},
	{"0x10", false}, // 0.0.0.16 to glibc
	{"0x", true},
}

func TestValidServiceName(t *testing.T) {
	for _, tt := range serviceNameCases {
		err := ValidServiceName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidServiceName(%q) = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}

// serviceNameRE is RFC 6335 §5.1 apart from length and the letter rule.
var serviceNameRE = regexp.MustCompile(`^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$`)

// hexConst is a hexadecimal number, which resolvers read as an IPv4
// address (svcname).
var hexConst = regexp.MustCompile(`^0[xX][0-9a-fA-F]+$`)

func FuzzValidServiceName(f *testing.F) {
	for _, tt := range serviceNameCases {
		f.Add(tt.name)
	}
	f.Fuzz(func(t *testing.T, name string) {
		want := len(name) <= 15 && serviceNameRE.MatchString(name) && strings.ContainsAny(strings.ToLower(name), "abcdefghijklmnopqrstuvwxyz") &&
			!hexConst.MatchString(name)
		if err := ValidServiceName(name); (err == nil) != want {
			t.Errorf("ValidServiceName(%q) = %v, want ok %v", name, err, want)
		}
	})
}

// TestSanitizeHostName: a node name that is a host name label already is
// used as it is; any other is cleaned into one and given a hash of the
// whole name, so that two nodes whose names clean to the same label (db_1
// and db-1, DB1 and db1) never publish one host name with two addresses.
func TestSanitizeHostName(t *testing.T) {
	tests := []struct {
		in, want string
		hashed   bool // want is followed by "-" and 8 hex digits
	}{
		{"node-a", "node-a", false},
		{"db1", "db1", false},
		{"Node A", "node-a", true},
		{"lab.host_3", "lab-host-3", true},
		{"--x--y--", "x-y", true},
		{"a--b", "a--b", false},
		{"Ünïcode", "n-code", true},
		{"!!!", "ambassador", true},
		{strings.Repeat("a", 63), strings.Repeat("a", 63), false},
		{strings.Repeat("a", 62) + "-b", strings.Repeat("a", 54), true},
		{strings.Repeat("ab", 40), strings.Repeat("ab", 27), true},
	}
	for _, tt := range tests {
		got := sanitizeHostName(tt.in)
		if err := checkLabel(got); err != nil {
			t.Errorf("sanitizeHostName(%q) = %q: %v", tt.in, got, err)
		}
		if !tt.hashed {
			if got != tt.want {
				t.Errorf("sanitizeHostName(%q) = %q, want %q", tt.in, got, tt.want)
			}
			continue
		}
		base, sum, ok := strings.Cut(got, "-"+got[max(len(got)-8, 0):])
		if !ok || base != tt.want || sum != "" || strings.Trim(got[len(got)-8:], "0123456789abcdef") != "" {
			t.Errorf("sanitizeHostName(%q) = %q, want %q, a hyphen and 8 hex digits", tt.in, got, tt.want)
		}
		if again := sanitizeHostName(tt.in); again != got {
			t.Errorf("sanitizeHostName(%q) gave %q, then %q", tt.in, got, again)
		}
	}
	seen := map[string]string{}
	for _, in := range []string{"db-1", "db_1", "db.1", "DB-1", "Db_1", "db--1", "-db-1", "db1", "DB1"} {
		got := sanitizeHostName(in)
		if other, dup := seen[got]; dup {
			t.Errorf("sanitizeHostName(%q) = sanitizeHostName(%q) = %q: two nodes, one host name", in, other, got)
		}
		seen[got] = in
	}
}

func validConfig() Config {
	c := DefaultConfig()
	c.Node, c.Cluster, c.GossipPort = "Node A", "lab", 7946
	c.HostName = "node-a" // the tests' records; the default is TestNewDefaultsAndCopies'
	return c
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Config)
		field string // in the error; "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"zero durations take defaults", func(c *Config) { c.TTL, c.QueryMin, c.QueryMax, c.RescanInterval = 0, 0, 0, 0 }, ""},
		{"mapped addr", func(c *Config) { c.Addr = netip.AddrFrom16(netip.MustParseAddr("192.0.2.1").As16()) }, ""},
		{"no node", func(c *Config) { c.Node = "" }, "Node"},
		{"long node", func(c *Config) { c.Node = strings.Repeat("n", 64) }, "Node"},
		{"quote in node", func(c *Config) { c.Node = `a"b` }, "Node"},
		{"control in node", func(c *Config) { c.Node = "a\nb" }, "Node"},
		{"no cluster", func(c *Config) { c.Cluster = "" }, "Cluster"},
		{"backslash in cluster", func(c *Config) { c.Cluster = `a\b` }, "Cluster"},
		{"bad host name", func(c *Config) { c.HostName = "a.b" }, "HostName"},
		{"hyphen host name", func(c *Config) { c.HostName = "-a" }, "HostName"},
		{"no gossip port", func(c *Config) { c.GossipPort = 0 }, "GossipPort"},
		{"big gossip port", func(c *Config) { c.GossipPort = 65536 }, "GossipPort"},
		{"empty interface", func(c *Config) { c.Interfaces = []string{""} }, "Interfaces"},
		{"duplicate interface", func(c *Config) { c.Interfaces = []string{"eth0", "eth0"} }, "Interfaces"},
		{"IPv6 addr", func(c *Config) { c.Addr = netip.MustParseAddr("2001:db8::1") }, "Addr"},
		{"short TTL", func(c *Config) { c.TTL = time.Millisecond }, "TTL"},
		{"negative QueryMin", func(c *Config) { c.QueryMin = -1 }, "QueryMin"},
		{"QueryMax below QueryMin", func(c *Config) { c.QueryMin, c.QueryMax = time.Second, time.Millisecond }, "QueryMax"},
		{"negative RescanInterval", func(c *Config) { c.RescanInterval = -1 }, "RescanInterval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.edit(&c)
			s, err := New(c)
			if tt.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				s.Close()
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.field) || !strings.HasPrefix(err.Error(), "announce: config: ") {
				t.Errorf("error %q does not name %s", err, tt.field)
			}
		})
	}
}

func TestNewDefaultsAndCopies(t *testing.T) {
	c := validConfig()
	c.HostName = ""
	c.TTL, c.QueryMin = 0, 0
	c.Interfaces = []string{"eth0"}
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c.Interfaces[0] = "changed"
	if s.cfg.Interfaces[0] != "eth0" {
		t.Error("New did not copy Interfaces")
	}
	if s.cfg.TTL != defaultTTL || s.cfg.QueryMin != defaultQueryMin || s.id.ttl != 120 {
		t.Errorf("defaults not applied: %+v", s.cfg)
	}
	if want := sanitizeHostName("Node A") + ".local."; s.id.host != want || !strings.HasPrefix(want, "node-a-") {
		t.Errorf("host %q, want %q (node-a and a hash)", s.id.host, want)
	}
}

func TestSelectInterfaces(t *testing.T) {
	a1, a2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
	fixed := netip.MustParseAddr("203.0.113.7")
	up := net.FlagUp | net.FlagMulticast
	all := []ifaceInfo{
		{name: "lo", index: 1, flags: net.FlagUp | net.FlagLoopback, addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
		{name: "eth0", index: 2, flags: up, addrs: []netip.Addr{a1, a2}},
		{name: "eth1", index: 3, flags: net.FlagMulticast, addrs: []netip.Addr{a2}}, // down
		{name: "eth2", index: 4, flags: up},                                         // no IPv4
		{name: "tun0", index: 5, flags: net.FlagUp, addrs: []netip.Addr{a2}},        // no multicast
	}
	names := func(w []ifaceInfo) string {
		var s []string
		for _, i := range w {
			s = append(s, i.name+"="+i.addr.String())
		}
		return strings.Join(s, " ")
	}
	tests := []struct {
		name     string
		explicit []string
		addr     netip.Addr
		want     string
		missing  string
	}{
		{name: "auto", want: "eth0=192.0.2.1"},
		{name: "auto with Addr", addr: fixed, want: "eth0=203.0.113.7"},
		{name: "explicit", explicit: []string{"lo", "tun0", "eth1", "eth2"}, want: "lo=127.0.0.1 tun0=198.51.100.1"},
		{name: "missing", explicit: []string{"eth0", "wlan0", "eth9"}, want: "eth0=192.0.2.1", missing: "wlan0 eth9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, missing := selectInterfaces(all, tt.explicit, tt.addr)
			if got := names(want); got != tt.want {
				t.Errorf("selected %q, want %q", got, tt.want)
			}
			if got := strings.Join(missing, " "); got != tt.missing {
				t.Errorf("missing %q, want %q", got, tt.missing)
			}
		})
	}
}

func TestSetServicesTracksChanges(t *testing.T) {
	s, err := New(validConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Before Start: stored, nothing pending.
	s.SetServices([]Service{{Name: "Redis", Port: 6379}, {Name: "web", Port: 80}})
	if len(s.changes) != 0 || len(s.goodbyes) != 0 {
		t.Fatalf("pending before Start: %v %v", s.changes, s.goodbyes)
	}
	if len(s.services) != 2 || s.services[0].Name != "redis" {
		t.Fatalf("services %v", s.services)
	}
	s.started = true // as if Start had run; no goroutine reads the channels
	s.SetServices([]Service{
		{Name: "redis", Port: 6380},   // changed
		{Name: "pg", Port: 5432},      // new
		{Name: "pg", Port: 5433},      // duplicate: ignored
		{Name: "bad_name", Port: 1},   // invalid
		{Name: "ambassador", Port: 1}, // reserved
		{Name: "noport", Port: 0},     // invalid port
		{Name: "big", Port: 70000},    // invalid port
	}) // web withdrawn
	if want := map[string]bool{"_redis._tcp.local.": true, "_pg._tcp.local.": true}; !equalSet(s.changes, want) {
		t.Errorf("changes %v, want %v", s.changes, want)
	}
	if len(s.goodbyes) != 1 || s.goodbyes[0] != (Service{Name: "web", Port: 80}) {
		t.Errorf("goodbyes %v, want web", s.goodbyes)
	}
	// Re-adding web before the goodbye went out cancels the goodbye;
	// withdrawing pg cancels its announcement.
	s.SetServices([]Service{{Name: "redis", Port: 6380}, {Name: "web", Port: 80}})
	if len(s.goodbyes) != 1 || s.goodbyes[0].Name != "pg" {
		t.Errorf("goodbyes %v, want pg", s.goodbyes)
	}
	if want := map[string]bool{"_redis._tcp.local.": true, "_web._tcp.local.": true}; !equalSet(s.changes, want) {
		t.Errorf("changes %v, want %v", s.changes, want)
	}
	s.started = false
}

func equalSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func TestCloseIdempotent(t *testing.T) {
	s, err := New(validConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v, want net.ErrClosed", err)
	}
	if err := s.Start(t.Context()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Start after Close: %v, want net.ErrClosed", err)
	}
	s.SetServices([]Service{{Name: "redis", Port: 1}}) // must not panic or block
	s.QueryNow()
}

func TestStartMissingInterface(t *testing.T) {
	c := validConfig()
	c.Interfaces = []string{"lo", "no-such-if0"}
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), `"no-such-if0"`) {
		t.Fatalf("Start: %v, want an error naming no-such-if0", err)
	}
	if got := s.Interfaces(); len(got) != 0 {
		t.Errorf("interfaces %v after failed Start", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
