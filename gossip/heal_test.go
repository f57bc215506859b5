package gossip

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestHealedPartitionBringsCurrentRecord: a and b are split; a changes
// its services meanwhile, and what it sends of the change (pushSelf, the
// record's broadcast) is lost. The partition heals without a join: b's
// suspicion of a, or its dead message, reaches a, which refutes, and b
// lists a alive again. b must then show a's current record within
// healBound, well under the push/pull interval (a minute here), which
// was the only way it came before: b showed a's old services until then.
//   - suspected: the split ends before the suspicion times out (b holds
//     a suspect; memberlist reports nothing when a is alive again);
//   - declared dead: b marks a dead, and the split ends while b's dead
//     message still goes round (memberlist reports a as joining again);
//   - declared dead, one way back: both mark the other dead, and only b's
//     dead message still goes round when the split ends, so a refutes and
//     b lists it again, while a holds b dead until a push/pull: a answers
//     b's request all the same.
func TestHealedPartitionBringsCurrentRecord(t *testing.T) {
	const healBound = 3 * time.Second
	for _, tc := range []struct {
		name       string
		until      string // b holds a this before the split ends
		modA, modB func(cfg *Config)
		aHoldsB    string // what a holds b when b shows a's record ("": any)
	}{
		{name: "suspected, then alive again", until: stateSuspect, modA: longSuspicion, modB: longSuspicion},
		{name: "declared dead, then alive again", until: stateDead, modA: longDeadMessage, modB: longDeadMessage},
		{name: "declared dead, one way back", until: stateDead, modA: shortDeadMessage, modB: longDeadMessage, aHoldsB: stateDead},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := func(mod func(*Config)) Config {
				cfg := DefaultLocalConfig()
				cfg.Memberlist.PushPullInterval = time.Minute
				mod(&cfg)
				return cfg
			}
			sn := &simNet{}
			a := startSimNodeWith(t, sn, 0, cfg(tc.modA))
			b := startSimNodeWith(t, sn, 1, cfg(tc.modB))
			an := a.c.LocalNode()
			if _, err := b.c.Join([]string{a.t.addr}); err != nil {
				t.Fatal(err)
			}
			port := func() int {
				for _, e := range b.c.Catalog() {
					if e.Node == an && len(e.Services) == 1 {
						return e.Services[0].Port
					}
				}
				return 0
			}
			waitFor(t, "b routes to a", func() error {
				if p := port(); p != 7000 {
					return fmt.Errorf("b shows a's service on port %d", p)
				}
				return nil
			})

			sn.split(a.t, b.t, true)
			a.c.SetServices([]Service{{Name: "fresh", Port: 7100}})
			waitFor(t, "a's record is no longer queued", func() error {
				if n := a.c.bcast.NumQueued(); n != 0 {
					return fmt.Errorf("%d queued", n)
				}
				return nil
			})
			waitFor(t, "b holds a "+tc.until, func() error {
				if s := memberState(b.c, an); s != tc.until {
					return fmt.Errorf("b holds a %q", s)
				}
				return nil
			})
			if tc.aHoldsB != "" {
				waitFor(t, "a holds b "+tc.aHoldsB, func() error {
					if s := memberState(a.c, b.c.LocalNode()); s != tc.aHoldsB {
						return fmt.Errorf("a holds b %q", s)
					}
					return nil
				})
				// a's dead message, sent once, has gone round.
				time.Sleep(10 * cfg(tc.modA).Memberlist.GossipInterval)
			}
			sn.split(a.t, b.t, false)
			healed := time.Now()
			waitFor(t, "b lists a alive again", func() error {
				if s := memberState(b.c, an); s != stateAlive {
					return fmt.Errorf("b holds a %q", s)
				}
				return nil
			})
			alive := time.Since(healed)
			for time.Since(healed) < healBound && port() != 7100 {
				time.Sleep(10 * time.Millisecond)
			}
			if s := memberState(a.c, b.c.LocalNode()); tc.aHoldsB != "" && s != tc.aHoldsB {
				t.Fatalf("a holds b %q, want %q: the case is not what it says", s, tc.aHoldsB)
			}
			if p := port(); p != 7100 {
				t.Fatalf("%v after the split ended (a alive again at b after %v), b shows a's service on port %d, want 7100",
					time.Since(healed).Round(time.Millisecond), alive.Round(time.Millisecond), p)
			}
			t.Logf("b shows a's current record %v after the split ended (a alive again after %v)",
				time.Since(healed).Round(time.Millisecond), alive.Round(time.Millisecond))
		})
	}
}

// longSuspicion: a suspicion lasts 10 s, so a split of a second or two
// ends before it does.
func longSuspicion(cfg *Config) { cfg.Memberlist.SuspicionMult = 40 }

// longDeadMessage: a dead message (and every other) goes round for a
// second after a node marks another dead, so the test can end the split
// within that time.
func longDeadMessage(cfg *Config) { cfg.Memberlist.RetransmitMult = 20 }

// shortDeadMessage: every message is sent once; after the split a node
// marked dead never hears of it.
func shortDeadMessage(cfg *Config) { cfg.Memberlist.RetransmitMult = 1 }

// TestRecheckReturningMember: which member coming back is asked for its
// record, and when (want.go, recheckLocked). A member memberlist holds
// alive again after holding it dead (memberUp) or suspect (applySuspects)
// is asked once, recheckAfter later, or wantEvery after it was last
// asked if that is later; not when a newer record of it came meanwhile,
// or neither its record nor its metadata carries services; and a member
// that stays alive is never asked.
func TestRecheckReturningMember(t *testing.T) {
	web := []Service{{Name: "web", Port: 80}}
	const never = -1
	for _, tc := range []struct {
		name     string
		services []Service // in its record here
		offer    offer     // its metadata
		back     string    // "dead": memberDown, then memberUp; "suspect": held suspect, then not; "": stays alive
		newer    bool      // a newer record of it arrives after it came back
		askedAgo time.Duration
		at       time.Duration // when it is asked after it came back, or never
	}{
		{name: "back from dead", services: web, offer: offerServices, back: "dead", at: recheckAfter},
		{name: "back from suspect", services: web, offer: offerServices, back: "suspect", at: recheckAfter},
		{name: "stays alive", services: web, offer: offerServices, at: never},
		{name: "newer record came", services: web, offer: offerServices, back: "dead", newer: true, at: never},
		{name: "record has services, metadata not (stopped announcing)", services: web, offer: offerNothing, back: "dead", at: recheckAfter},
		{name: "metadata has services, record not (started announcing)", offer: offerServices, back: "dead", at: recheckAfter},
		{name: "older release", offer: offerUnknown, back: "dead", at: recheckAfter},
		{name: "no services either way", offer: offerNothing, back: "dead", at: never},
		{name: "asked a second before", services: web, offer: offerServices, back: "suspect", askedAgo: time.Second, at: wantEvery - time.Second},
		{name: "asked wantEvery before", services: web, offer: offerServices, back: "suspect", askedAgo: wantEvery, at: recheckAfter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newOffline(t, "self")
			c.memberUp("self", "127.0.0.1", 7946, time.Now(), offerNothing, false, true)
			c.memberUp("m", "127.0.0.1", 7001, time.Now(), tc.offer, false, true)
			rec := record{Entry: Entry{Node: "m", Addr: "127.0.0.1", Services: tc.services, Version: 10}}
			c.merge([]record{rec}, false)
			if ask, _ := c.missing(time.Now().Add(time.Hour)); len(ask) != 0 {
				t.Fatalf("a member with its record asked before anything happened: %v", ask[0].Name)
			}
			switch tc.back {
			case "dead":
				c.memberDown("m")
				c.memberUp("m", "127.0.0.1", 7001, time.Now(), tc.offer, false, true)
			case "suspect":
				// With more suspects than maxConfirmSuspects (the others
				// are no members) this node dials none of them.
				c.applySuspects([]string{"m", "x", "y", "z"})
				c.applySuspects(nil)
			}
			back := time.Now()
			if tc.askedAgo > 0 {
				c.mu.Lock()
				c.members["m"].wantAt = back.Add(-tc.askedAgo)
				c.mu.Unlock()
			}
			if tc.newer {
				rec.Version++
				c.merge([]record{rec}, false)
			}
			asked := func(after time.Duration) bool {
				ask, _ := c.missing(back.Add(after))
				return slices.ContainsFunc(ask, func(n *memberlist.Node) bool { return n.Name == "m" })
			}
			if tc.at == never {
				if asked(time.Hour) {
					t.Fatal("asked, want never")
				}
				return
			}
			if asked(tc.at - time.Millisecond) {
				t.Fatalf("asked before %v", tc.at)
			}
			if !asked(tc.at) {
				t.Fatalf("not asked %v after it came back", tc.at)
			}
			if asked(tc.at + time.Hour) {
				t.Error("asked again later")
			}
		})
	}
}
