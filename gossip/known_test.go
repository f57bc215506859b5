package gossip

import (
	"testing"
	"time"
)

// TestKnown: discovery skips a peer memberlist reported in any state, so a
// live node wrongly marked dead is not joined by every node that hears it
// on mDNS; a member forgotten after the reap time is unknown again.
func TestKnown(t *testing.T) {
	c, err := New(Config{NodeName: "self", BindAddr: "127.0.0.1", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for name, st := range map[string]string{"alive": stateAlive, "dead": stateDead, "left": stateLeft} {
		c.members[name] = &member{Member: Member{Name: name, State: st}, since: now}
	}
	c.members["forgotten"] = &member{Member: Member{Name: "forgotten", State: stateDead}, since: now.Add(-c.reap - time.Second)}
	for _, tt := range []struct {
		name string
		want bool
	}{{"alive", true}, {"dead", true}, {"left", true}, {"stranger", false}, {"forgotten", false}} {
		if got := c.Known(tt.name); got != tt.want {
			t.Errorf("Known(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
