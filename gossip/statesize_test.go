package gossip

import (
	"bytes"
	"compress/lzw"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/memberlist"

	"github.com/ambassador-mesh/ambassador/internal/svcname"
)

// mlPushNodeState and mlPushPullHeader mirror memberlist v0.7.0's
// pushNodeState and pushPullHeader (net.go), field for field, so that the
// same msgpack handle encodes them to the same bytes; memberlist does not
// export them.
type mlPushNodeState struct {
	Name        string
	Addr        []byte
	Port        uint16
	Meta        []byte
	Incarnation uint32
	State       memberlist.NodeStateType
	Vsn         []uint8
}

type mlPushPullHeader struct {
	Nodes        int
	UserStateLen int
	Join         bool
}

// stateShape is one kind of cluster to size a push/pull for.
type stateShape struct {
	name string
	// member returns member i's memberlist entry and record.
	member func(i int, now time.Time) (mlPushNodeState, record)
}

// simShape is a node of the simulation (sim_test.go's startSimNodeLog):
// name n%04d, 127.0.0.1, one service, no fingerprint.
var simShape = stateShape{"simulation", func(i int, now time.Time) (mlPushNodeState, record) {
	name := fmt.Sprintf("n%04d", i)
	port := 20000 + i
	// The simulated transport advertises 127.0.0.1 in 4 bytes, as the
	// product's does (simnet_test.go).
	m := mlPushNodeState{Name: name, Addr: net.IPv4(127, 0, 0, 1).To4(), Port: uint16(port),
		Meta: encodeMeta(now.Add(-time.Hour), true), Incarnation: 1, State: memberlist.StateAlive,
		Vsn: []uint8{1, 5, 2, 0, 0, 0}}
	r := record{Entry: Entry{Node: name, Addr: "127.0.0.1", DataPort: 7947,
		Services: []Service{{Name: svcname.Must("svc" + strconv.Itoa(i%10)), Port: 7000 + i%10}},
		Version:  spreadVersion(i, now)}}
	return m, r
}}

// realShape is a node as the product starts one (mesh's defaultNodeName:
// host name and 16 hex digits; a TLS fingerprint; one service), on a
// 10.0.0.0/16 LAN with the default gossip port.
var realShape = stateShape{"real", func(i int, now time.Time) (mlPushNodeState, record) {
	ip := net.IPv4(10, 0, byte(i/250), byte(1+i%250)).To4()
	sum := sha256.Sum256([]byte(ip.String() + ":7946"))
	name := fmt.Sprintf("lab-host-%d-%s", i, hex.EncodeToString(sum[:8]))
	fp := sha256.Sum256([]byte("key " + name))
	m := mlPushNodeState{Name: name, Addr: ip, Port: 7946,
		Meta: encodeMeta(now.Add(-time.Hour), true), Incarnation: 1, State: memberlist.StateAlive,
		Vsn: []uint8{1, 5, 2, 0, 0, 0}}
	r := record{Entry: Entry{Node: name, Addr: ip.String(), DataPort: 7947,
		Services:    []Service{{Name: svcname.Must("svc" + strconv.Itoa(i%10)), Port: 7000 + i%10}},
		Version:     spreadVersion(i, now),
		Fingerprint: hex.EncodeToString(fp[:])}}
	return m, r
}}

// spreadVersion is a record version (nextVersion: Unix nanoseconds) from
// some time in the 20 minutes before now, as when nodes announce their
// services while a 1,000-node cluster forms over 17 minutes; fixed per i.
func spreadVersion(i int, now time.Time) uint64 {
	r := rand.New(rand.NewPCG(uint64(i), 1))
	return uint64(now.Add(-time.Duration(r.Int64N(int64(20 * time.Minute)))).UnixNano())
}

// pushPullSize is what one side of a periodic push/pull of n members
// sends, as memberlist v0.7.0's sendLocalState builds it (before a label
// or encryption): memberlist's part (the message type, the header and
// one pushNodeState per member) and the delegate's state, plain and
// compressed with DEFLATE; and, for comparison, the whole message
// compressed with LZW as memberlist's EnableCompression would, with the
// delegate's state plain (lzwAll) and compressed (lzwFlate).
type pushPullSize struct {
	memberlist, state, stateFlate, lzwAll, lzwFlate int
}

// lzwSize is len of b compressed as memberlist's compressPayload does.
func lzwSize(tb testing.TB, b []byte) int {
	var z bytes.Buffer
	zw := lzw.NewWriter(&z, lzw.LSB, 8)
	if _, err := zw.Write(b); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return z.Len()
}

func measurePushPull(tb testing.TB, sh stateShape, n int) pushPullSize {
	tb.Helper()
	now := time.Now()
	nodes := make([]mlPushNodeState, n)
	recs := make([]record, n)
	for i := range n {
		nodes[i], recs[i] = sh.member(i, now)
	}
	state, err := encodeState(recs)
	if err != nil {
		tb.Fatal(err)
	}
	packed, err := encodeStateFlate(recs)
	if err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	buf.WriteByte(6) // memberlist's pushPullMsg
	enc := codec.NewEncoder(&buf, &codec.MsgpackHandle{})
	if err := enc.Encode(&mlPushPullHeader{Nodes: n, UserStateLen: len(state)}); err != nil {
		tb.Fatal(err)
	}
	for i := range nodes {
		if err := enc.Encode(&nodes[i]); err != nil {
			tb.Fatal(err)
		}
	}
	ml := buf.Len()
	mlPart := bytes.Clone(buf.Bytes())
	buf.Write(state)
	return pushPullSize{memberlist: ml, state: len(state), stateFlate: len(packed),
		lzwAll: lzwSize(tb, buf.Bytes()), lzwFlate: lzwSize(tb, append(mlPart, packed...))}
}

// TestPushPullSize prints what one side of a push/pull is made of at 10,
// 100 and 1,000 members (go test -run TestPushPullSize -v ./gossip), and
// checks that compression shrinks it, to the README's figure at 1,000
// simulated members. Set AMB_STATE_SIZES=1000,4000 for other sizes.
func TestPushPullSize(t *testing.T) {
	sizes := []int{10, 100, 1000}
	if s := os.Getenv("AMB_STATE_SIZES"); s != "" {
		sizes = nil
		for _, f := range bytes.Split([]byte(s), []byte(",")) {
			n, err := strconv.Atoi(string(f))
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, n)
		}
	}
	for _, sh := range []stateShape{simShape, realShape} {
		for _, n := range sizes {
			s := measurePushPull(t, sh, n)
			before, after := s.memberlist+s.state, s.memberlist+s.stateFlate
			t.Logf("FIGURE pushpull shape=%s members=%d memberlist=%d (%.1f/member) state=%d (%.1f/member) state_flate=%d (%.1f/member, %.1fx) total=%d total_flate=%d (%.2fx) lzw_all=%d lzw_with_flate_state=%d",
				sh.name, n, s.memberlist, float64(s.memberlist)/float64(n), s.state, float64(s.state)/float64(n),
				s.stateFlate, float64(s.stateFlate)/float64(n), float64(s.state)/float64(s.stateFlate),
				before, after, float64(before)/float64(after), s.lzwAll, s.lzwFlate)
			if s.lzwFlate >= before {
				t.Errorf("%s, %d members: compressed push/pull %d bytes, not smaller than plain %d", sh.name, n, s.lzwFlate, before)
			}
			// The README's figure: "about 20 KB instead of 213 KB per side
			// at 1,000 simulated members".
			if sh.name == simShape.name && n == 1000 && s.lzwFlate > 25000 {
				t.Errorf("%s, 1,000 members: compressed push/pull %d bytes, the README says about 20 KB", sh.name, s.lzwFlate)
			}
		}
	}
}
