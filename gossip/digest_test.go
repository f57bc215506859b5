package gossip

import (
	"bytes"
	"testing"
	"time"
)

func TestDigestCodec(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 1000, 1 << 20} {
		got, ok := decodeDigest(encodeDigest(n))
		if !ok || got != n {
			t.Errorf("decode(encode(%d)) = %d, %v", n, got, ok)
		}
	}
	for _, b := range [][]byte{nil, {}, {digestVersion}, {2, 5}, {digestVersion, 0x80}, encodeDigest(1<<24 + 1)} {
		if n, ok := decodeDigest(b); ok {
			t.Errorf("decode(%x) = %d, want an error", b, n)
		}
	}
}

// TestDigestObserve: when a node decides to exchange full state, as a
// sequence of probes (own count, peer's count, seconds since the start).
func TestDigestObserve(t *testing.T) {
	type probe struct {
		own, peer int
		at        float64
		sync      bool
	}
	for _, tc := range []struct {
		name   string
		probes []probe
	}{
		{"counts agree: never", []probe{{5, 5, 0, false}, {5, 5, 1, false}, {5, 5, 5, false}}},
		{"ahead: never", []probe{{6, 5, 0, false}, {6, 5, 3, false}}},
		{"behind once: not yet", []probe{{4, 5, 0, false}, {4, 5, 1, false}}},
		{"behind, flat, for persist: sync", []probe{{4, 5, 0, false}, {4, 5, 1, false}, {4, 5, 2, true}}},
		{"a probe that agrees ends the streak", []probe{{4, 5, 0, false}, {4, 4, 1, false}, {4, 5, 2, false}, {4, 5, 3, false}, {4, 5, 4, true}}},
		{"still learning (own count grows): restart the streak", []probe{{3, 9, 0, false}, {4, 9, 1, false}, {5, 9, 2, false}, {5, 9, 3, false}, {5, 9, 4, true}}},
		{"cooldown after a sync", []probe{{4, 5, 0, false}, {4, 5, 2, true}, {4, 5, 3, false}, {4, 5, 5, false}, {4, 5, 11, false}, {4, 5, 12, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &digest{persist: 2 * time.Second, cooldown: 10 * time.Second}
			t0 := time.Unix(1000, 0)
			for i, p := range tc.probes {
				at := t0.Add(time.Duration(p.at * float64(time.Second)))
				if got := d.observe(p.own, p.peer, at); got != p.sync {
					t.Fatalf("probe %d (own %d, peer %d, at %vs): sync %v, want %v", i, p.own, p.peer, p.at, got, p.sync)
				}
			}
		})
	}
	if (&digest{}).observe(1, 9, time.Now()) {
		t.Error("a digest with persist 0 synced")
	}
}

// digestTestConfig never pushes/pulls on its own and sends packets
// uncompressed (so a test can filter them by node name).
func digestTestConfig() Config {
	cfg := DefaultConfig()
	cfg.Memberlist.PushPullInterval = 0
	cfg.Memberlist.EnableCompression = false
	cfg.Memberlist.ProbeInterval = 50 * time.Millisecond
	cfg.Memberlist.ProbeTimeout = 40 * time.Millisecond
	return cfg
}

// TestDigestsHealMissedMembers: c and d join a while every packet to b that
// names them is lost, so b never hears their alive messages (as a node can
// miss them at scale: a lost packet, a full queue, a concurrent join).
// Without digests b lists 2 for good (no push/pull runs); with them it
// finds that a counts 4 and exchanges full state.
func TestDigestsHealMissedMembers(t *testing.T) {
	for _, on := range []bool{true, false} {
		name := map[bool]string{true: "digests on", false: "digests off"}[on]
		t.Run(name, func(t *testing.T) {
			sn := &simNet{}
			cfg := digestTestConfig()
			var nodes []simNode
			for i := range 4 {
				nd := startSimNodeWith(t, sn, i, cfg)
				if !on {
					nd.c.digest.mu.Lock()
					nd.c.digest.persist = 0
					nd.c.digest.mu.Unlock()
				}
				nodes = append(nodes, nd)
			}
			a, b, c, d := nodes[0], nodes[1], nodes[2], nodes[3]
			// c and d announce nothing: an announcing node greets b over
			// a stream, and b joins a node that greets it (greet.go
			// greeted), which would close the gap without digests.
			c.c.SetServices(nil)
			d.c.SetServices(nil)
			cName, dName := []byte(c.c.LocalNode()), []byte(d.c.LocalNode())
			deafToCD := func(p []byte) bool { return bytes.Contains(p, cName) || bytes.Contains(p, dName) }
			b.t.drop.Store(&deafToCD)
			for _, nd := range []simNode{b, c, d} {
				if _, err := nd.c.Join([]string{a.t.addr}); err != nil {
					t.Fatal(err)
				}
			}
			if got := b.c.NumMembers(); got != 2 {
				t.Fatalf("b lists %d after its join, want 2", got)
			}
			if on {
				if _, ok := waitAll(nodes, 10*time.Second, func(nd simNode) bool { return nd.c.NumMembers() == 4 }); !ok {
					for _, nd := range nodes {
						t.Logf("%s lists %d", nd.c.LocalNode(), nd.c.NumMembers())
					}
					t.Fatal("with digests, not every node lists all 4 within 10s")
				}
				return
			}
			// Off: the gap stays. 40 probe intervals is several times what
			// the digests take above (2 for persist, plus the probes' spacing).
			time.Sleep(40 * cfg.Memberlist.ProbeInterval)
			if got := b.c.NumMembers(); got != 2 {
				t.Errorf("without digests b lists %d, want 2 (the test's gap is not there)", got)
			}
		})
	}
}
