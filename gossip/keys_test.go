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

// TestKeysRotateRunning rotates the key of a running two-node cluster in
// the three steps the README gives, with SetKeys and no restart. After
// each step a catalog change still crosses in both directions; at the end
// a node with only the old key cannot join and one with the new key can.
func TestKeysRotateRunning(t *testing.T) {
	a := newKeyedNode(t, "a", key1)
	b := newKeyedNode(t, "b", key1)
	join(t, b, a)
	port := 1
	crosses := func(step string) {
		t.Helper()
		for _, pair := range [][2]*Cluster{{a, b}, {b, a}} {
			from, to := pair[0], pair[1]
			port++
			want := port
			from.SetServices([]Service{{Name: "svc", Port: want}})
			waitFor(t, step+": "+to.LocalNode()+" sees "+from.LocalNode()+"'s new port", func() error {
				for _, e := range to.Catalog() {
					if e.Node == from.LocalNode() && len(e.Services) == 1 && e.Services[0].Port == want {
						return nil
					}
				}
				return fmt.Errorf("%s's catalog: %+v", to.LocalNode(), to.Catalog())
			})
		}
	}
	crosses("before")
	for _, step := range []struct {
		name         string
		aKeys, bKeys [][]byte
	}{
		{"new key installed everywhere", [][]byte{key1, key2}, [][]byte{key1, key2}},
		{"new key primary everywhere", [][]byte{key2, key1}, [][]byte{key2, key1}},
		{"old key dropped everywhere", [][]byte{key2}, [][]byte{key2}},
	} {
		for _, n := range []struct {
			c    *Cluster
			keys [][]byte
		}{{a, step.aKeys}, {b, step.bKeys}} {
			if err := n.c.SetKeys(n.keys); err != nil {
				t.Fatalf("%s: %s.SetKeys: %v", step.name, n.c.LocalNode(), err)
			}
			kr := n.c.cfg.Memberlist.Keyring
			if got := kr.GetPrimaryKey(); !bytes.Equal(got, n.keys[0]) {
				t.Fatalf("%s: %s primary key: got %x, want %x", step.name, n.c.LocalNode(), got, n.keys[0])
			}
			if got := len(kr.GetKeys()); got != len(n.keys) {
				t.Fatalf("%s: %s holds %d keys, want %d", step.name, n.c.LocalNode(), got, len(n.keys))
			}
		}
		crosses(step.name)
		if got := a.NumMembers() + b.NumMembers(); got != 4 {
			t.Fatalf("%s: members %d and %d, want 2 and 2", step.name, a.NumMembers(), b.NumMembers())
		}
	}

	stale := newKeyedNode(t, "stale", key1)
	if n, err := stale.Join([]string{gossipAddr(a)}); err == nil || n != 0 {
		t.Errorf("a node with only the old key joined: %d, %v", n, err)
	}
	fresh := newKeyedNode(t, "fresh", key2)
	join(t, fresh, a)
	waitFor(t, "b sees the node with the new key", func() error { return seesFingerprints(b, "a", "b", "fresh") })
}

func TestSetKeysRefuses(t *testing.T) {
	keyed := newKeyedNode(t, "keyed", key1)
	plain := newKeyedNode(t, "plain")
	for _, tc := range []struct {
		name string
		c    *Cluster
		keys [][]byte
		want string
	}{
		{"start encrypting", plain, [][]byte{key1}, "runs without keys"},
		{"stop encrypting", keyed, nil, "no keys"},
		{"short key", keyed, [][]byte{key1, []byte("short")}, "key 1 is 5 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.SetKeys(tc.keys)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("SetKeys: got %v, want an error with %q", err, tc.want)
			}
		})
	}
	// A refused call changed nothing.
	if got := keyed.cfg.Memberlist.Keyring.GetKeys(); len(got) != 1 || !bytes.Equal(got[0], key1) {
		t.Errorf("after refused calls the keyring holds %d keys", len(got))
	}
}
