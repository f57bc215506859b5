package gossip

import (
	"io"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestMemberNamesFollowTheRule: memberlist carries any string as a node
// name, and a member's name reaches logs, `ambassador members` (tab-
// separated text) and the live page. A member whose name breaks the node
// name rule (internal/nodename) is never listed: a tab or a newline would
// forge a row of the members table, an escape sequence would drive the
// operator's terminal.
func TestMemberNamesFollowTheRule(t *testing.T) {
	for _, tc := range []struct {
		name   string
		listed bool
	}{
		{"raw-ok", true},
		{"raw\tbad", false},
		{"raw\nalive\t10.0.0.9", false},
		{"ev\x1b]0;owned\x07", false},
		{"with space", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newNode(t, "a", "lab", 1)
			mc := memberlist.DefaultLocalConfig()
			mc.Name = tc.name
			mc.Label = "lab"
			mc.BindAddr, mc.BindPort, mc.AdvertiseAddr = "127.0.0.1", 0, "127.0.0.1"
			mc.LogOutput = io.Discard
			ml, err := memberlist.Create(mc)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = ml.Shutdown() })
			if _, err := ml.Join([]string{gossipAddr(c)}); err != nil {
				t.Fatalf("join: %v", err)
			}
			// a merges the joiner's push/pull after it answers: a listed
			// name shows within the deadline, a refused one must not
			// show by then.
			wait := 500 * time.Millisecond
			if tc.listed {
				wait = 5 * time.Second
			}
			deadline := time.Now().Add(wait)
			for time.Now().Before(deadline) && !(tc.listed && c.Alive(tc.name)) {
				time.Sleep(20 * time.Millisecond) // polling a condition
			}
			if got := c.Alive(tc.name); got != tc.listed {
				t.Errorf("member %q listed: %v, want %v (members %+v)", tc.name, got, tc.listed, c.Members())
			}
		})
	}
}
