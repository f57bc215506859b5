package gossip

import (
	"bytes"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestNewValidation(t *testing.T) {
	base := func() Config {
		cfg := DefaultConfig()
		cfg.NodeName = "a"
		cfg.AdvertiseAddr = "10.0.0.1"
		return cfg
	}
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string // substring; "" means valid
	}{
		{name: "defaults", mod: func(*Config) {}},
		{name: "local profile", mod: func(c *Config) { c.Memberlist = DefaultLocalConfig().Memberlist }},
		{name: "nil memberlist uses default", mod: func(c *Config) { c.Memberlist = nil }},
		{name: "zero config fields", mod: func(c *Config) { c.Cluster, c.BindAddr, c.BindPort = "", "", 0 }},
		{name: "specific bind needs no advertise", mod: func(c *Config) { c.BindAddr, c.AdvertiseAddr = "127.0.0.1", "" }},
		{name: "no node name", mod: func(c *Config) { c.NodeName = "" }, wantErr: `NodeName ""`},
		{name: "long node name", mod: func(c *Config) { c.NodeName = strings.Repeat("n", 254) }, wantErr: "NodeName"},
		{name: "long cluster", mod: func(c *Config) { c.Cluster = strings.Repeat("c", 256) }, wantErr: "Cluster"},
		{name: "bad bind", mod: func(c *Config) { c.BindAddr = "10.0.0.300" }, wantErr: `BindAddr "10.0.0.300" is not an IP`},
		{name: "bad advertise", mod: func(c *Config) { c.AdvertiseAddr = "x" }, wantErr: `AdvertiseAddr "x" is not an IP`},
		{name: "unspecified advertise", mod: func(c *Config) { c.AdvertiseAddr = "0.0.0.0" }, wantErr: `AdvertiseAddr "0.0.0.0" is unspecified`},
		{name: "missing advertise", mod: func(c *Config) { c.AdvertiseAddr = "" }, wantErr: `AdvertiseAddr is required when BindAddr is "0.0.0.0"`},
		{name: "missing advertise v6", mod: func(c *Config) { c.BindAddr, c.AdvertiseAddr = "::", "" }, wantErr: "AdvertiseAddr is required"},
		{name: "bind port", mod: func(c *Config) { c.BindPort = 65536 }, wantErr: "BindPort 65536"},
		{name: "advertise port", mod: func(c *Config) { c.AdvertisePort = -1 }, wantErr: "AdvertisePort -1"},
		{name: "data port", mod: func(c *Config) { c.DataPort = 70000 }, wantErr: "DataPort 70000"},
		{name: "probe timeout equals interval", mod: func(c *Config) { c.Memberlist.ProbeTimeout = c.Memberlist.ProbeInterval }, wantErr: "ProbeTimeout"},
		{name: "keys", mod: func(c *Config) {
			c.Keys = [][]byte{bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 16), bytes.Repeat([]byte{3}, 24)}
		}},
		{name: "key too short", mod: func(c *Config) { c.Keys = [][]byte{bytes.Repeat([]byte{1}, 32), []byte("short-secret")} }, wantErr: "Keys[1] is 12 bytes, want 16, 24 or 32"},
		{name: "key empty", mod: func(c *Config) { c.Keys = [][]byte{{}} }, wantErr: "Keys[0] is 0 bytes"},
		{name: "key too long", mod: func(c *Config) { c.Keys = [][]byte{bytes.Repeat([]byte{1}, 33)} }, wantErr: "Keys[0] is 33 bytes"},
		{name: "keys and secret key", mod: func(c *Config) {
			c.Keys = [][]byte{bytes.Repeat([]byte{1}, 32)}
			c.Memberlist.SecretKey = bytes.Repeat([]byte{2}, 32)
		}, wantErr: "both set"},
		{name: "fingerprint", mod: func(c *Config) { c.Fingerprint = strings.Repeat("0123456789abcdef", 4) }},
		{name: "fingerprint upper case", mod: func(c *Config) { c.Fingerprint = strings.Repeat("0123456789ABCDEF", 4) }, wantErr: "Fingerprint"},
		{name: "fingerprint short", mod: func(c *Config) { c.Fingerprint = "abc" }, wantErr: `Fingerprint "abc"`},
		{name: "probe interval zero", mod: func(c *Config) { c.Memberlist.ProbeInterval = 0 }, wantErr: "ProbeInterval"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.mod(&cfg)
			c, err := New(cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("got error %v, want nil", err)
				}
				if c == nil {
					t.Fatal("got nil Cluster")
				}
				return
			}
			if err == nil {
				t.Fatalf("got nil error, want one containing %q", tc.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "gossip: config: ") || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got error %q, want one containing %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "short-secret") {
				t.Errorf("error %q reveals a key", err)
			}
		})
	}
}

func TestNewCopiesConfig(t *testing.T) {
	cfg := DefaultLocalConfig()
	cfg.NodeName = "a"
	cfg.BindAddr = "127.0.0.1"
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.NodeName = "changed"
	cfg.Memberlist.ProbeInterval = time.Hour
	if got := c.LocalNode(); got != "a" {
		t.Errorf("LocalNode: got %q, want %q", got, "a")
	}
	if got := c.cfg.Memberlist.ProbeInterval; got == time.Hour {
		t.Errorf("ProbeInterval: got %v, want the value at New", got)
	}
}

func TestNewCopiesMemberlistSlices(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 16)
	keyring, err := memberlist.NewKeyring(nil, key)
	if err != nil {
		t.Fatal(err)
	}
	_, cidr, err := net.ParseCIDR("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultLocalConfig()
	cfg.NodeName = "a"
	cfg.BindAddr = "127.0.0.1"
	cfg.Memberlist.SecretKey = slices.Clone(key)
	cfg.Memberlist.Keyring = keyring
	cfg.Memberlist.CIDRsAllowed = []net.IPNet{*cidr}
	// Built without naming go-metrics' Label type, which this module does
	// not import directly.
	cfg.Memberlist.MetricLabels = slices.Grow(cfg.Memberlist.MetricLabels, 1)[:1]
	cfg.Memberlist.MetricLabels[0].Name, cfg.Memberlist.MetricLabels[0].Value = "n", "v"
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}

	cfg.Memberlist.SecretKey[0] = 9
	cfg.Memberlist.CIDRsAllowed[0].IP[0] = 192
	cfg.Memberlist.CIDRsAllowed[0].Mask[0] = 0
	cfg.Memberlist.MetricLabels[0].Value = "changed"
	mc := c.cfg.Memberlist
	if !bytes.Equal(mc.SecretKey, key) {
		t.Errorf("SecretKey: got %x, want %x", mc.SecretKey, key)
	}
	if got := mc.CIDRsAllowed[0].String(); got != "10.0.0.0/8" {
		t.Errorf("CIDRsAllowed: got %q, want %q", got, "10.0.0.0/8")
	}
	if got := mc.MetricLabels[0].Value; got != "v" {
		t.Errorf("MetricLabels: got %q, want %q", got, "v")
	}
	if mc.Keyring != keyring {
		t.Error("Keyring: got a copy, want the caller's keyring, through which keys are rotated")
	}
}

func TestDefaultConfigs(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{{"lan", DefaultConfig()}, {"local", DefaultLocalConfig()}} {
		t.Run(tc.name, func(t *testing.T) {
			mc := tc.cfg.Memberlist
			if mc.ProbeTimeout >= mc.ProbeInterval {
				t.Errorf("ProbeTimeout %v, want < ProbeInterval %v", mc.ProbeTimeout, mc.ProbeInterval)
			}
			if tc.cfg.BindPort != defaultPort || tc.cfg.Cluster != defaultCluster {
				t.Errorf("got port %d cluster %q, want %d %q", tc.cfg.BindPort, tc.cfg.Cluster, defaultPort, defaultCluster)
			}
			mlc := tc.cfg.memberlistConfig(&delegate{}, slog.New(slog.DiscardHandler))
			if mlc.DeadNodeReclaimTime != mc.ProbeInterval {
				t.Errorf("DeadNodeReclaimTime: got %v, want %v", mlc.DeadNodeReclaimTime, mc.ProbeInterval)
			}
			if mlc.Label != defaultCluster {
				t.Errorf("Label: got %q, want %q", mlc.Label, defaultCluster)
			}
		})
	}
}

func TestParseLogLine(t *testing.T) {
	tests := []struct {
		in        string
		wantLevel slog.Level
		wantMsg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=1.2.3.4\n", slog.LevelDebug, "Stream connection from=1.2.3.4"},
		{"[INFO] memberlist: Marking b as failed", slog.LevelInfo, "Marking b as failed"},
		{"[WARN] memberlist: Refuting a suspect message", slog.LevelWarn, "Refuting a suspect message"},
		{"[ERR] memberlist: Push/Pull failed", slog.LevelWarn, "Push/Pull failed"},
		{"[ERROR] something", slog.LevelWarn, "something"},
		{"no prefix", slog.LevelInfo, "no prefix"},
		{"", slog.LevelInfo, ""},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			level, m := parseLogLine([]byte(tc.in))
			if level != tc.wantLevel || m != tc.wantMsg {
				t.Errorf("got %v %q, want %v %q", level, m, tc.wantLevel, tc.wantMsg)
			}
		})
	}
}

// TestDefaultSuspicion: the lan profile keeps memberlist's LAN suspicion
// multiplier (4). 6 removed the start-up failure marks of a 100-host lab
// but kept suspicions going for the minute after (issue 10, session 5).
func TestDefaultSuspicion(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		want int
	}{
		{"lan", DefaultConfig(), memberlist.DefaultLANConfig().SuspicionMult},
		{"local", DefaultLocalConfig(), memberlist.DefaultLocalConfig().SuspicionMult},
		{"wan", DefaultWANConfig(), memberlist.DefaultWANConfig().SuspicionMult},
	} {
		if got := tt.cfg.Memberlist.SuspicionMult; got != tt.want {
			t.Errorf("%s: SuspicionMult %d, want %d", tt.name, got, tt.want)
		}
	}
}
