package mesh

import (
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestReloadNamesTakeRestart checks that a reload with another --hosts
// file, --dns address or --join list says that it takes a restart instead
// of silently keeping the old one.
func TestReloadNamesTakeRestart(t *testing.T) {
	a := startTestNode(t, "a", func(c *Config) {})
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"hosts", func(c *Config) { c.HostsFile = filepath.Join(t.TempDir(), "hosts") }, "hosts changed"},
		{"dns", func(c *Config) { c.DNS = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))) }, "dns changed"},
		{"join", func(c *Config) { c.Join = append(c.Join, "127.0.0.1:1") }, "join changed"},
		{"none of them", func(c *Config) {}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := a.cfg
			tc.mod(&cfg)
			err := a.Reload(cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("reload: %v, want no error", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("reload: got %v, want an error naming %q", err, tc.want)
			}
		})
	}
}
