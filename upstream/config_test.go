package upstream

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr bool
		check   func(*testing.T, Config)
	}{
		{name: "defaults", edit: func(c *Config) {}, check: func(t *testing.T, c Config) {
			if c.MinTTL != 5*time.Second || c.MaxTTL != 5*time.Minute || c.RetryMin != time.Second ||
				c.RetryMax != 30*time.Second || c.Timeout != 2*time.Second {
				t.Errorf("got %+v, want the documented defaults", c)
			}
		}},
		{name: "zero means default", edit: func(c *Config) { *c = Config{Servers: c.Servers} }, check: func(t *testing.T, c Config) {
			if c.MinTTL != 5*time.Second || c.Timeout != 2*time.Second || c.Logger == nil {
				t.Errorf("got %+v, want defaults filled in", c)
			}
		}},
		{name: "servers normalised", edit: func(c *Config) { c.Servers = []string{"10.0.0.53", "[fd00::53]:5353", "127.0.0.1:53"} },
			check: func(t *testing.T, c Config) {
				if want := []string{"10.0.0.53:53", "[fd00::53]:5353", "127.0.0.1:53"}; !slices.Equal(c.Servers, want) {
					t.Errorf("Servers: got %q, want %q", c.Servers, want)
				}
			}},
		{name: "server name", edit: func(c *Config) { c.Servers = []string{"dns.example:53"} }, wantErr: true},
		{name: "server port 0", edit: func(c *Config) { c.Servers = []string{"10.0.0.1:0"} }, wantErr: true},
		{name: "negative MinTTL", edit: func(c *Config) { c.MinTTL = -1 }, wantErr: true},
		{name: "negative Timeout", edit: func(c *Config) { c.Timeout = -time.Second }, wantErr: true},
		{name: "MaxTTL below MinTTL", edit: func(c *Config) { c.MinTTL, c.MaxTTL = time.Minute, time.Second }, wantErr: true},
		{name: "RetryMax below RetryMin", edit: func(c *Config) { c.RetryMin, c.RetryMax = time.Minute, time.Second }, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Servers = []string{"127.0.0.1:53"}
			tc.edit(&cfg)
			r, err := New(cfg)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got nil error, want one")
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			t.Cleanup(func() { _ = r.Close() })
			tc.check(t, r.cfg)
		})
	}
}

// TestNewCopiesConfig checks later changes to the caller's Servers slice
// have no effect.
func TestNewCopiesConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Servers = []string{"127.0.0.1:53"}
	r := newResolver(t, cfg)
	cfg.Servers[0] = "10.9.9.9:53"
	if got := r.cfg.Servers[0]; got != "127.0.0.1:53" {
		t.Errorf("Servers[0]: got %q, want %q", got, "127.0.0.1:53")
	}
}

func TestServersFromResolvConf(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []string
		wantErr bool
	}{
		{name: "two servers", content: "search lab\nnameserver 10.0.0.53\nnameserver fd00::53\nnameserver 10.0.0.53\n",
			want: []string{"10.0.0.53:53", "[fd00::53]:53"}},
		{name: "none", content: "search lab\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "resolv.conf")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := serversFromResolvConf(path)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %q, want error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := serversFromResolvConf(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing file: got nil error, want one")
	}
}
