package mesh

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string
	}{
		{name: "defaults", mod: func(*Config) {}},
		{name: "bad node", mod: func(c *Config) { c.Node = "a b" }, wantErr: `node: "a b" has ' '`},
		{name: "empty cluster", mod: func(c *Config) { c.Cluster = "" }, wantErr: "cluster:"},
		{name: "bind not an ip", mod: func(c *Config) { c.Bind = "10.0.0.300" }, wantErr: `bind: "10.0.0.300"`},
		{name: "bind unspecified", mod: func(c *Config) { c.Bind = "0.0.0.0" }, wantErr: `bind: "0.0.0.0"`},
		{name: "gossip port", mod: func(c *Config) { c.GossipPort = 0 }, wantErr: "gossip-port: 0"},
		{name: "data port", mod: func(c *Config) { c.DataPort = 70000 }, wantErr: "data-port: 70000"},
		{name: "same ports", mod: func(c *Config) { c.DataPort = c.GossipPort }, wantErr: "also the gossip port"},
		{name: "http", mod: func(c *Config) { c.HTTP = "nope" }, wantErr: "http:"},
		{name: "join", mod: func(c *Config) { c.Join = []string{"10.0.0.1:x"} }, wantErr: "join:"},
		{name: "profile", mod: func(c *Config) { c.Profile = "fast" }, wantErr: `profile: "fast"`},
		{name: "wan profile", mod: func(c *Config) { c.Profile = "wan" }},
		{name: "probe knobs", mod: func(c *Config) {
			c.ProbeInterval = time.Second
			c.ProbeTimeout = 300 * time.Millisecond
			c.SuspicionMult = 3
		}},
		{name: "probe timeout too long", mod: func(c *Config) { c.ProbeTimeout = 2 * time.Second }, wantErr: "probe-timeout: 2s must be shorter than the probe interval 1s"},
		{name: "negative knob", mod: func(c *Config) { c.SuspicionMult = -1 }, wantErr: "suspicion-mult: -1 is negative"},
		{name: "dial timeout", mod: func(c *Config) { c.DialTimeout = 0 }, wantErr: "dial-timeout: 0s must be positive"},
		{name: "drain", mod: func(c *Config) { c.DrainTimeout = -time.Second }, wantErr: "drain-timeout"},
		{name: "announce twice", mod: func(c *Config) {
			c.Announce = []Announce{{Name: "a", Port: 1, Host: "127.0.0.1", TargetPort: 1}, {Name: "A", Port: 2, Host: "127.0.0.1", TargetPort: 2}}
		}, wantErr: "announced twice"},
		{name: "tls all three with a key", mod: func(c *Config) {
			c.TLSCA, c.TLSCert, c.TLSKey = "ca.pem", "node.pem", "node.key"
			c.Keys = []string{"bGFiLWtleS1mb3ItYW1iYXNzYWRvci10ZXN0cy0zMmI="}
		}},
		// Without a key a stranger could join the gossip and rewrite the
		// catalog that the CA-checked data plane follows.
		{name: "tls without a key", mod: func(c *Config) { c.TLSCA, c.TLSCert, c.TLSKey = "ca.pem", "node.pem", "node.key" }, wantErr: "tls-ca: needs --key"},
		{name: "tls ca alone", mod: func(c *Config) { c.TLSCA = "ca.pem" }, wantErr: "tls-ca: given without tls-cert and tls-key"},
		{name: "tls cert alone", mod: func(c *Config) { c.TLSCert = "node.pem" }, wantErr: "tls-cert: given without tls-ca and tls-key"},
		{name: "tls key missing", mod: func(c *Config) { c.TLSCA, c.TLSCert = "ca.pem", "node.pem" }, wantErr: "tls-ca: given without tls-key"},
		{name: "forward twice", mod: func(c *Config) { c.Forward = []Forward{{Name: "a"}, {Name: "a"}} }, wantErr: "named twice"},
		// One of the two would silently get no listener.
		{name: "two forwards on one address", mod: func(c *Config) {
			c.Forward = []Forward{{Name: "a", Listen: "127.0.0.1:5432"}, {Name: "b", Listen: "localhost:5432"}}
		}, wantErr: `forward: b: listen address localhost:5432 is also a's`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
