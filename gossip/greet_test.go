package gossip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGreetedNodeJoinsGreeter: b announces a service and learns of c,
// which does not list b (as when b learns of c first while a cluster
// forms). b greets c. When c's metadata says it knows kindGreet and b is
// not joining c itself, c joins b at once and routes to b's service: it
// lists b alive and its catalog shows b's service well within any gossip
// round (there is none here: b's memberlist does not know c, and
// push/pull is off). Otherwise c gets b's plain record and keeps it aside
// until memberlist reports b: an older release reads only that (it drops
// a kind it does not know), and a node b is joining learns of b from b's
// own join. Nothing else can make c list b here; on the old code it never
// did.
func TestGreetedNodeJoinsGreeter(t *testing.T) {
	for _, tc := range []struct {
		name     string
		greets   bool // c's metadata has metaGreets
		bJoinsC  bool // b is joining c while it learns of it
		wantJoin bool
	}{
		{"c knows greetings", true, false, true},
		{"c is an older release", false, false, false},
		{"b is joining c", true, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			quiet := func(cfg *Config) { cfg.Memberlist.PushPullInterval = time.Hour }
			sent := &greetLog{}
			b := newNodeWith(t, "b", "greetjoin", 2, quiet, sent.watch)
			b.SetServices([]Service{{Name: "web", Port: 80}})
			c := newNodeWith(t, "c", "greetjoin", 3, quiet)
			if tc.bJoinsC {
				done := b.joiningAddrs([]string{gossipAddr(c)})
				defer done()
			}
			start := time.Now()
			b.memberUp("c", "127.0.0.1", c.GossipPort(), time.Time{}, offerUnknown, tc.greets, true)
			// memberUp greets before it returns; only a greeting with
			// b's address (greets) can make c join b.
			if got, want := sent.String(), fmt.Sprintf("c greets=%v", tc.wantJoin); got != want {
				t.Fatalf("b's greetings: %q, want %q", got, want)
			}
			if !tc.wantJoin {
				waitFor(t, "c has b's record", func() error {
					c.mu.Lock()
					defer c.mu.Unlock()
					_, pending := c.pending["b"]
					_, stored := c.records["b"]
					if !pending && !stored {
						return errors.New("no record of b")
					}
					return nil
				})
				if c.Alive("b") || c.greetJoins.Load() != 0 {
					t.Fatalf("c joins b on a plain record: lists b %v, joins running %d", c.Alive("b"), c.greetJoins.Load())
				}
				return
			}
			waitRoutes(t, c, "b")
			t.Logf("c listed b %v after b learnt of c", time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestGreetJoinDue: when a greeted node joins the greeter: only a greeter
// that announces, is not listed alive here, started no more than
// greetJoinAge after this node, is not being joined already, and whose
// address was not joined within greetJoinEvery; at most maxGreetJoins at
// a time.
func TestGreetJoinDue(t *testing.T) {
	now := time.Now()
	web := []Service{{Name: "web", Port: 80}}
	to := netip.MustParseAddrPort("10.0.0.2:7946")
	rec := record{Entry: Entry{Node: "g", Addr: "10.0.0.2", Services: web, Version: 1}}
	member := func(state string) func(c *Cluster) {
		return func(c *Cluster) {
			c.members["g"] = &member{Member: Member{Name: "g", Addr: "10.0.0.2", Port: 7946, State: state}}
		}
	}
	for _, tc := range []struct {
		name    string
		r       record
		before  func(c *Cluster)
		started time.Duration // the greeter's start, after this node's
		want    bool
	}{
		{"unknown announcing greeter", rec, nil, 0, true},
		{"greeter started greetJoinAge after this node", rec, nil, greetJoinAge, true},
		{"greeter started long before this node", rec, nil, -time.Hour, true},
		{"greeter started later than greetJoinAge after this node (a newcomer)", rec, nil, greetJoinAge + time.Second, false},
		{"greeter's start unknown (zero)", rec, nil, -1, false},
		{"greeter listed alive", rec, member(stateAlive), 0, false},
		{"greeter listed dead (a restart)", rec, member(stateDead), 0, true},
		{"record without services", record{Entry: Entry{Node: "g", Addr: "10.0.0.2", Version: 1}}, nil, 0, false},
		{"left record", record{Entry: rec.Entry, Left: true}, nil, 0, false},
		{"this node's own name", record{Entry: Entry{Node: "self", Addr: "10.0.0.2", Services: web, Version: 1}}, nil, 0, false},
		{"joining that address", rec, func(c *Cluster) { c.joiningAddrs([]string{"10.0.0.2:7946"}) }, 0, false},
		{"joining another address", rec, func(c *Cluster) { c.joiningAddrs([]string{"10.0.0.3:7946"}) }, 0, true},
		{"joined within greetJoinEvery", rec, func(c *Cluster) { c.joinLimit.allow(to.String(), now.Add(-greetJoinEvery/2)) }, 0, false},
		{"joined greetJoinEvery ago", rec, func(c *Cluster) { c.joinLimit.allow(to.String(), now.Add(-greetJoinEvery)) }, 0, true},
		{"another address joined just now", rec, func(c *Cluster) { c.joinLimit.allow("10.0.0.3:7946", now) }, 0, true},
		{"maxGreetJoins running", rec, func(c *Cluster) { c.greetJoins.Store(maxGreetJoins) }, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newOffline(t, "self")
			if tc.before != nil {
				tc.before(c)
			}
			running := c.greetJoins.Load()
			started := c.started.Add(tc.started)
			if tc.started == -1 {
				started = time.Unix(0, 0)
			}
			if got := c.greetJoinDue(tc.r, to, started, now); got != tc.want {
				t.Fatalf("greetJoinDue: %v, want %v", got, tc.want)
			}
			// A due join counts as running; a refused one leaves the count.
			if want := running + int32(btoi(tc.want)); c.greetJoins.Load() != want {
				t.Errorf("joins running: %d, want %d", c.greetJoins.Load(), want)
			}
		})
	}
}

// TestGreetedPlacesGreeterOnOwnClock: a greeting says how long its node
// has run, and the receiver places that start on its own clock, so two
// hosts' wall clocks never meet (greetMsg). A newcomer that has run a
// second does not make a node that has run an hour join it, whatever
// either wall clock says; a greeter that has run as long does; a greeting
// without an uptime makes no join. (A join that is due takes its
// address's slot in joinLimit, which is what the test reads: this node
// is not started, so no join runs.)
func TestGreetedPlacesGreeterOnOwnClock(t *testing.T) {
	for _, tc := range []struct {
		name string
		up   time.Duration // the greeter's uptime; this node's is an hour
		want bool
	}{
		{"greeter up a second (a newcomer)", time.Second, false},
		{"greeter up greetJoinAge less than this node", time.Hour - greetJoinAge + time.Second, true},
		{"greeter up as long", time.Hour, true},
		{"no uptime (unknown)", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newOffline(t, "self")
			c.started = time.Now().Add(-time.Hour)
			rec := record{Entry: Entry{Node: "g", Addr: "10.0.0.2", Services: []Service{{Name: "web", Port: 80}}, Version: 1}}
			c.greeted(greetMsg{Record: rec, Addr: "10.0.0.2", Port: 7946, Up: int64(tc.up)})
			slotFree, _ := c.joinLimit.allow("10.0.0.2:7946", time.Now())
			if joined := !slotFree; joined != tc.want {
				t.Fatalf("join due: %v, want %v", joined, tc.want)
			}
		})
	}
}

// TestGreetJoinOncePerInterval: greetings from one address, as a hostile
// or looping peer could send, make at most one join per greetJoinEvery.
func TestGreetJoinOncePerInterval(t *testing.T) {
	c, _ := newOffline(t, "self")
	rec := record{Entry: Entry{Node: "g", Addr: "10.0.0.2", Services: []Service{{Name: "web", Port: 80}}, Version: 1}}
	to := netip.MustParseAddrPort("10.0.0.2:7946")
	now := time.Now()
	joins := 0
	for i := range 100 {
		if c.greetJoinDue(rec, to, c.started, now.Add(time.Duration(i)*greetJoinEvery/10)) {
			joins++
			c.greetJoins.Add(-1) // the join ended
		}
	}
	if joins != 10 {
		t.Errorf("%d joins in 10 intervals, want 10", joins)
	}
}

// TestGreetingDecode: a kindGreet message carries a valid record and a
// unicast gossip address; an older release, which reads any kind it does
// not know as a record, rejects it (and drops it: see NotifyMsg).
func TestGreetingDecode(t *testing.T) {
	rec := record{Entry: Entry{Node: "g", Addr: "10.0.0.2", DataPort: 7947, Services: []Service{{Name: "web", Port: 80}}, Version: 1}}
	good := greetMsg{Record: rec, Addr: "10.0.0.2", Port: 7946}
	b, err := encodeGreeting(good)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeGreeting(b)
	if err != nil || !got.Record.equal(good.Record) || got.Addr != good.Addr || got.Port != good.Port {
		t.Errorf("decodeGreeting: %+v, %v; want %+v", got, err, good)
	}
	if _, err := decodeRecord(b); !errors.Is(err, errDecode) {
		t.Errorf("decodeRecord of a greeting (what an older release does): %v, want errDecode", err)
	}
	for _, bad := range []greetMsg{
		{Record: rec, Addr: "", Port: 7946},
		{Record: rec, Addr: "0.0.0.0", Port: 7946},
		{Record: rec, Addr: "224.0.0.251", Port: 7946},
		{Record: rec, Addr: "255.255.255.255", Port: 7946},
		{Record: rec, Addr: "fe80::1%eth0", Port: 7946},
		{Record: rec, Addr: "10.0.0.2", Port: 0},
		{Record: rec, Addr: "10.0.0.2", Port: 65536},
		{Record: record{Entry: Entry{Node: "g", Addr: "10.0.0.2"}}, Addr: "10.0.0.2", Port: 7946}, // version 0
		{Record: record{Entry: Entry{Node: "", Addr: "10.0.0.2", Version: 1}}, Addr: "10.0.0.2", Port: 7946},
	} {
		b, err := encodeGreeting(bad)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeGreeting(b); !errors.Is(err, errDecode) {
			t.Errorf("decodeGreeting(%+v): %v, want errDecode", bad, err)
		}
	}
	if plain, _ := encodeRecord(rec); true {
		if _, err := decodeGreeting(plain); !errors.Is(err, errDecode) {
			t.Errorf("decodeGreeting of a plain record: %v, want errDecode", err)
		}
	}
}

// TestGreetingKind: an announcing node greets with its gossip address
// (kindGreet) a member that knows it, and with the plain record a member
// that does not, or while its own address is not known yet.
func TestGreetingKind(t *testing.T) {
	c := newNode(t, "g", "greetkind", 2)
	c.SetServices([]Service{{Name: "web", Port: 80}})
	c.mu.Lock()
	r := c.self.clone()
	c.mu.Unlock()
	b := c.greeting(r, true)
	if len(b) < 2 || b[1] != kindGreet {
		t.Fatalf("greeting to a member that knows kindGreet: %q", b)
	}
	g, err := decodeGreeting(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := "127.0.0.1:" + strconv.Itoa(c.GossipPort()); netip.AddrPortFrom(netip.MustParseAddr(g.Addr), uint16(g.Port)).String() != want || !g.Record.equal(r) {
		t.Errorf("greeting: %+v, want record %+v at %s", g, r, want)
	}
	if up := time.Duration(g.Up); up <= 0 || up > time.Since(c.started) {
		t.Errorf("greeting says its node has run %v, want (0, %v] (greetJoinDue needs it)", up, time.Since(c.started))
	}
	if b := c.greeting(r, false); len(b) < 2 || b[1] != kindRecord {
		t.Errorf("greeting to an older release: %q, want a plain record", b)
	}
	off, _ := newOffline(t, "off") // not started: no address of its own yet
	if b := off.greeting(r, true); len(b) < 2 || b[1] != kindRecord {
		t.Errorf("greeting without a gossip address: %q, want a plain record", b)
	}
}

// TestMembersGreetedWhenServicesComeUp: b learns of c before it announces
// anything (its service waits for its first health check), so memberUp
// does not greet c. When b's first service comes up, b greets the members
// that came up within greetRecent, and c, which does not list b, joins it
// and routes to it. A member b has known for longer is not greeted (in
// a cluster it has had b's alive message by gossip, and pushSelf sends it
// b's record; b's memberlist does not know c here, so nothing reaches c).
// On the old code c never listed b here.
func TestMembersGreetedWhenServicesComeUp(t *testing.T) {
	for _, tc := range []struct {
		name     string
		age      time.Duration // how long b has known c
		wantJoin bool
	}{
		{"recent member", 0, true},
		{"member known for greetRecent", greetRecent, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			quiet := func(cfg *Config) { cfg.Memberlist.PushPullInterval = time.Hour }
			sent := &greetLog{}
			b := newNodeWith(t, "b", "greetlate", 2, quiet, sent.watch)
			c := newNodeWith(t, "c", "greetlate", 3, quiet)
			b.memberUp("c", "127.0.0.1", c.GossipPort(), time.Time{}, offerUnknown, true, true)
			b.mu.Lock()
			b.members["c"].since = time.Now().Add(-tc.age)
			b.mu.Unlock()
			// memberUp and SetServices greet before they return.
			if got := sent.String(); got != "" {
				t.Fatalf("b greeted before it announced anything: %q", got)
			}
			b.SetServices([]Service{{Name: "web", Port: 80}})
			want := ""
			if tc.wantJoin {
				want = "c greets=true"
			}
			if got := sent.String(); got != want {
				t.Fatalf("b's greetings when its service came up: %q, want %q", got, want)
			}
			if !tc.wantJoin {
				return // b sent c nothing: only gossip, off here, could reach c
			}
			waitRoutes(t, c, "b")
		})
	}
}

// waitRoutes waits until c lists node alive and holds its record with its
// one service: c can route to it.
func waitRoutes(t *testing.T, c *Cluster, node string) {
	t.Helper()
	waitFor(t, "c routes to "+node, func() error {
		if !c.Alive(node) {
			return fmt.Errorf("c does not list %s", node)
		}
		for _, e := range c.Catalog() {
			if e.Node == node && len(e.Services) == 1 {
				return nil
			}
		}
		return fmt.Errorf("no record of %s with its service in %+v", node, c.Catalog())
	})
}

// greetLog records the greetings a node sends (Cluster.onGreet).
type greetLog struct {
	mu   sync.Mutex
	sent []string
}

func (g *greetLog) watch(c *Cluster) {
	c.onGreet = func(to string, greets bool) {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.sent = append(g.sent, fmt.Sprintf("%s greets=%v", to, greets))
	}
}

// String lists the greetings sent so far, in order, joined by "; ".
func (g *greetLog) String() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return strings.Join(g.sent, "; ")
}

// TestGreetingNamesAnotherAddress: a greeting names the address its node
// is to be joined at, and a join pushes this node's whole state there
// (about 700 times the greeting's bytes at scale). A sender holding the
// key, or any sender on a cluster without one, could name a third
// party's address and have the greeted node push to it. So the greeted
// node first pings the named node at that address (greetPing), and a
// listener there that is no node of the cluster gets no connection, and
// over UDP that one ping: one packet, at most UDPBufferSize with what
// memberlist piggybacks on it, as on every probe. On the old code the
// join connected to it. The greeter's own address keeps working
// (TestGreetedNodeJoinsGreeter).
func TestGreetingNamesAnotherAddress(t *testing.T) {
	c := newNode(t, "c", "greetvictim", 3)
	v := newVictim(t)
	rec := record{Entry: Entry{Node: "g", Addr: "127.0.0.1", Services: []Service{{Name: "web", Port: 80}}, Version: 1}}
	c.greeted(greetMsg{Record: rec, Addr: "127.0.0.1", Port: v.port, Up: int64(time.Since(c.started))})
	if c.greetJoins.Load() != 1 {
		t.Fatalf("the greeting made no join due (greetJoins %d): the test proves nothing", c.greetJoins.Load())
	}
	// The join, or its refusal, ends with the goroutine that runs it.
	waitFor(t, "c's greeting join ends", func() error {
		if n := c.greetJoins.Load(); n != 0 {
			return fmt.Errorf("%d joins running", n)
		}
		return nil
	})
	conns, datagrams, udpBytes := v.counts(t)
	if limit := c.cfg.Memberlist.UDPBufferSize; conns != 0 || datagrams > 1 || udpBytes > limit {
		t.Errorf("the named address got %d connections and %d datagrams of %d bytes; want 0 and at most 1 of at most %d",
			conns, datagrams, udpBytes, limit)
	}
}

// victim listens for TCP and UDP on one loopback port and counts the
// connections and the UDP bytes it gets.
type victim struct {
	port  int
	tcp   *net.TCPListener
	udp   *net.UDPConn
	conns chan string // the peer of each accepted connection
	bytes chan int    // one per datagram
}

func newVictim(t *testing.T) *victim {
	t.Helper()
	var v *victim
	for range 10 { // the UDP port of the kernel's TCP port may be taken
		tcp, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port := tcp.Addr().(*net.TCPAddr).Port
		udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			tcp.Close()
			continue
		}
		v = &victim{port: port, tcp: tcp, udp: udp, conns: make(chan string, 100), bytes: make(chan int, 100)}
		break
	}
	if v == nil {
		t.Fatal("no port free for both TCP and UDP")
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := v.tcp.Accept()
			if err != nil {
				return
			}
			v.conns <- conn.RemoteAddr().String()
			conn.Close()
		}
	})
	wg.Go(func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := v.udp.ReadFrom(buf)
			if err != nil {
				return
			}
			v.bytes <- n
		}
	})
	t.Cleanup(func() {
		v.tcp.Close()
		v.udp.Close()
		wg.Wait()
	})
	return v
}

// counts returns the connections, datagrams and UDP bytes the victim got
// so far. It
// sends one connection and one datagram of its own and waits for them:
// the accept queue and the socket are FIFO, so everything sent before
// has been counted by then.
func (v *victim) counts(t *testing.T) (conns, datagrams, udpBytes int) {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(v.port))
	tc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	uc, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	const marker = 65000 // no message of ours is this size
	if _, err := uc.Write(make([]byte, marker)); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(waitTimeout)
accept:
	for mine := tc.LocalAddr().String(); ; {
		select {
		case from := <-v.conns:
			if from == mine {
				break accept
			}
			conns++
		case <-timeout:
			t.Fatal("the victim did not accept its own connection")
		}
	}
	for {
		select {
		case n := <-v.bytes:
			if n == marker {
				return conns, datagrams, udpBytes
			}
			datagrams++
			udpBytes += n
		case <-timeout:
			t.Fatal("the victim did not read its own datagram")
		}
	}
}
