package trust

import (
	"crypto/tls"
	"sync"
)

// Bounds of ClientConfigs: built configs kept (one per peer dialed;
// dropped all at once when full, rebuilt on the next dial), and sessions
// kept for resumption (one per server address, least recently used
// dropped).
const (
	maxClientConfigs = 1024
	maxSessions      = 1024
)

// ClientConfigs hands out data-plane client configs, one per expected
// peer, each built once and then shared by every dial to that peer, all
// resuming sessions from one cache. A dial then costs neither a new
// tls.Config nor, after the first, a full handshake with its certificate
// signatures. The peer check of a config runs on resumed sessions too (see
// clientTLS), so a session cached under one expectation is refused under
// another. Safe for concurrent use.
type ClientConfigs struct {
	build    func(peer string) *tls.Config
	sessions tls.ClientSessionCache

	mu   sync.Mutex
	byID map[string]*tls.Config // guarded by mu; at most maxClientConfigs
}

func newClientConfigs(build func(peer string) *tls.Config) *ClientConfigs {
	return &ClientConfigs{build: build, sessions: tls.NewLRUClientSessionCache(maxSessions),
		byID: make(map[string]*tls.Config)}
}

// ClientConfigs returns the configs for dialing peers that present the
// certificate with a given fingerprint: ClientConfig(id, fingerprint),
// built once per fingerprint, with a shared session cache.
func (id *Identity) ClientConfigs() *ClientConfigs {
	return newClientConfigs(func(fp string) *tls.Config { return ClientConfig(id, fp) })
}

// ClientConfigs returns the configs for dialing the nodes of the cluster:
// ca.ClientConfig(node), built once per node, with a shared session cache.
func (ca *CA) ClientConfigs() *ClientConfigs {
	return newClientConfigs(ca.ClientConfig)
}

// Get returns the config for peer (a fingerprint or a node, as the
// ClientConfigs was made). The caller must not modify it.
func (c *ClientConfigs) Get(peer string) *tls.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	if conf, ok := c.byID[peer]; ok {
		return conf
	}
	if len(c.byID) >= maxClientConfigs {
		clear(c.byID) // peers that left; the live ones are rebuilt cheaply
	}
	conf := c.build(peer)
	conf.ClientSessionCache = c.sessions
	c.byID[peer] = conf
	return conf
}
