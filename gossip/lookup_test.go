package gossip

import (
	"fmt"
	"strings"
	"testing"
)

// TestFingerprintLookups: Fingerprint and HasFingerprint answer exactly as
// a walk over Catalog would, for this node, alive members, and records
// Catalog leaves out (dead or left members, records without a member).
func TestFingerprintLookups(t *testing.T) {
	fp := func(c byte) string { return strings.Repeat(string(c), 64) }
	c, err := New(Config{NodeName: "self", BindAddr: "127.0.0.1", Fingerprint: fp('0'), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	add := func(name, fingerprint, state string, left bool) {
		c.records[name] = &stored{rec: record{Entry: Entry{Node: name, Fingerprint: fingerprint}, Left: left}}
		if state != "" {
			c.members[name] = &member{Member: Member{Name: name, State: state}}
		}
	}
	add("alive", fp('a'), stateAlive, false)
	add("dead", fp('d'), stateDead, false)
	add("left", fp('e'), stateAlive, true)
	add("nomember", fp('f'), "", false)
	add("nofp", "", stateAlive, false)

	// What the data path did before: a walk over Catalog.
	fromCatalog := func(node string) string {
		for _, e := range c.Catalog() {
			if e.Node == node {
				return e.Fingerprint
			}
		}
		return ""
	}
	memberOfCatalog := func(f string) bool {
		for _, e := range c.Catalog() {
			if e.Fingerprint != "" && e.Fingerprint == f {
				return true
			}
		}
		return false
	}
	for _, node := range []string{"self", "alive", "dead", "left", "nomember", "nofp", "unknown"} {
		if got, want := c.Fingerprint(node), fromCatalog(node); got != want {
			t.Errorf("Fingerprint(%q) = %q, want %q", node, got, want)
		}
	}
	for _, f := range []string{fp('0'), fp('a'), fp('d'), fp('e'), fp('f'), fp('z'), ""} {
		if got, want := c.HasFingerprint(f), memberOfCatalog(f); got != want {
			t.Errorf("HasFingerprint(%.8s…) = %v, want %v", f, got, want)
		}
	}
	if !c.HasFingerprint(fp('a')) || c.HasFingerprint(fp('d')) || c.Fingerprint("alive") != fp('a') {
		t.Fatal("the table above compared nothing: Catalog lists no alive member")
	}
}

// BenchmarkFingerprintLookup is what the keyed data path pays per
// connection to find a peer's fingerprint (client) and to check a
// client's (server) in a catalog of 100 nodes: before, a walk over a copy
// of Catalog for each; now Fingerprint and HasFingerprint.
func BenchmarkFingerprintLookup(b *testing.B) {
	c, err := New(Config{NodeName: "self", BindAddr: "127.0.0.1", Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	fps := make([]string, 100)
	for i := range fps {
		name := fmt.Sprintf("node-%03d", i)
		fps[i] = fmt.Sprintf("%064x", i+1)
		c.records[name] = &stored{rec: record{Entry: Entry{Node: name, Fingerprint: fps[i],
			Services: []Service{{Name: "svc", Port: 6379}}}}}
		c.members[name] = &member{Member: Member{Name: name, State: stateAlive}}
	}
	const node, i = "node-050", 50
	b.Run("catalog", func(b *testing.B) {
		for b.Loop() {
			var fp string
			for _, e := range c.Catalog() {
				if e.Node == node {
					fp = e.Fingerprint
				}
			}
			ok := false
			for _, e := range c.Catalog() {
				if e.Fingerprint == fp {
					ok = true
				}
			}
			if !ok {
				b.Fatal("not found")
			}
		}
	})
	b.Run("lookup", func(b *testing.B) {
		for b.Loop() {
			if !c.HasFingerprint(c.Fingerprint(node)) || c.Fingerprint(node) != fps[i] {
				b.Fatal("not found")
			}
		}
	})
}
