package gossip

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

var (
	key1 = bytes.Repeat([]byte{1}, 32)
	key2 = bytes.Repeat([]byte{2}, 16)
	key3 = bytes.Repeat([]byte{3}, 24)
)

// fingerprintOf is a well-formed fingerprint derived from a node name.
func fingerprintOf(name string) string {
	return fmt.Sprintf("%064x", name)[:64]
}

// newKeyedNode starts a node of the cluster "keys-test" with keys (nil =
// no key) and a fingerprint derived from its name.
func newKeyedNode(t *testing.T, name string, keys ...[]byte) *Cluster {
	t.Helper()
	return newNodeWith(t, name, "keys-test", 1, func(c *Config) {
		c.Keys = keys
		c.Fingerprint = fingerprintOf(name)
	})
}

// seesFingerprints checks that c's catalog holds exactly nodes, each with
// its fingerprint.
func seesFingerprints(c *Cluster, nodes ...string) error {
	cat := c.Catalog()
	if len(cat) != len(nodes) {
		return fmt.Errorf("%s catalog: got %d entries, want %d", c.LocalNode(), len(cat), len(nodes))
	}
	for i, e := range cat {
		if e.Node != nodes[i] || e.Fingerprint != fingerprintOf(nodes[i]) {
			return fmt.Errorf("%s catalog entry %d: got %s with %q, want %s with %q",
				c.LocalNode(), i, e.Node, e.Fingerprint, nodes[i], fingerprintOf(nodes[i]))
		}
	}
	return nil
}

func TestKeysMerge(t *testing.T) {
	for _, tc := range []struct {
		name  string
		aKeys [][]byte
		bKeys [][]byte
	}{
		{"no key", nil, nil},
		{"same key", [][]byte{key1}, [][]byte{key1}},
		// Rotation, step 1: the new key is installed (not primary) on a
		// first node; both still encrypt with the old one.
		{"new key installed on one node", [][]byte{key1, key2}, [][]byte{key1}},
		// Step 2: every node holds both keys, and some already encrypt
		// with the new one.
		{"new key primary on one node", [][]byte{key2, key1}, [][]byte{key1, key2}},
		// Step 3: the new key is primary everywhere, and the old one is
		// removed on a first node.
		{"old key removed on one node", [][]byte{key2}, [][]byte{key2, key1}},
		{"three keys", [][]byte{key3, key2, key1}, [][]byte{key1, key3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newKeyedNode(t, "a", tc.aKeys...)
			b := newKeyedNode(t, "b", tc.bKeys...)
			join(t, b, a)
			for _, c := range []*Cluster{a, b} {
				waitFor(t, c.LocalNode()+" sees both fingerprints", func() error { return seesFingerprints(c, "a", "b") })
			}
		})
	}
}

func TestKeysMismatch(t *testing.T) {
	for _, tc := range []struct {
		name  string
		aKeys [][]byte // the node that joins
		bKeys [][]byte // the node that is joined
		// oneSided: b can decrypt a (it holds a's first key) but not the
		// reverse, so b adds a from a's push and keeps it until its probes
		// go unanswered; only a's view is checked.
		oneSided bool
	}{
		{"other key joins", [][]byte{key2}, [][]byte{key1}, false},
		{"no key joins keyed", nil, [][]byte{key1}, false},
		{"keyed joins no key", [][]byte{key1}, nil, false},
		// The first key encrypts: a peer holding only the old key cannot
		// read a node that already switched to the new one.
		{"new primary joins old only", [][]byte{key2, key1}, [][]byte{key1}, false},
		{"old only joins new primary", [][]byte{key1}, [][]byte{key2, key1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newKeyedNode(t, "a", tc.aKeys...)
			b := newKeyedNode(t, "b", tc.bKeys...)
			n, err := a.Join([]string{gossipAddr(b)})
			if err == nil || n != 0 {
				t.Fatalf("Join: got %d, %v; want 0 and an error", n, err)
			}
			// Neither side added the other: the push/pull that adds
			// members is the exchange that just failed.
			check := []*Cluster{a, b}
			if tc.oneSided {
				check = check[:1]
			}
			for _, c := range check {
				if got := c.NumMembers(); got != 1 {
					t.Errorf("%s NumMembers: got %d, want 1", c.LocalNode(), got)
				}
				if err := seesFingerprints(c, c.LocalNode()); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestKeysConfigureMemberlist(t *testing.T) {
	cfg := DefaultLocalConfig()
	cfg.NodeName = "a"
	cfg.BindAddr = "127.0.0.1"
	cfg.Memberlist.GossipVerifyIncoming = false
	cfg.Memberlist.GossipVerifyOutgoing = false
	keys := [][]byte{bytes.Clone(key2), bytes.Clone(key1)}
	cfg.Keys = keys
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	keys[0][0] = 99 // New copied the keys
	mc := c.cfg.Memberlist
	if !mc.GossipVerifyIncoming || !mc.GossipVerifyOutgoing {
		t.Errorf("GossipVerifyIncoming, GossipVerifyOutgoing: got %v, %v, want true, true", mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing)
	}
	if mc.Keyring == nil {
		t.Fatal("Keyring: got nil")
	}
	if got := mc.Keyring.GetPrimaryKey(); !bytes.Equal(got, key2) {
		t.Errorf("primary key: got %x, want the first of Keys", got)
	}
	if got := len(mc.Keyring.GetKeys()); got != 2 {
		t.Errorf("keyring: got %d keys, want 2", got)
	}
	if c.maxBcast >= cfg.Memberlist.UDPBufferSize-packetOverhead-2-len(cfg.Cluster) {
		t.Errorf("maxBcast %d leaves no room for encryption", c.maxBcast)
	}
	if strings.Contains(fmt.Sprint(c.cfg.Keys), "99") {
		t.Error("caller's change to Keys reached the Cluster")
	}
}
