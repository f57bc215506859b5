package gossip

import (
	"bytes"
	"compress/lzw"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/memberlist"
)

// TestZipConnWrite: what a zipConn puts on the wire for each write
// memberlist makes. Only a push/pull state of at least zipMin bytes that
// compresses goes out as memberlist's compressMsg; the rest as it is.
func TestZipConnWrite(t *testing.T) {
	state := func(n int) []byte { // a push/pull message: type, then repeating entries
		b := []byte{mlPushPullMsg}
		for i := 0; len(b) < n; i++ {
			b = fmt.Appendf(b, "Name n%04d Addr 127.0.0.1 Port 7946 Incarnation 1 State 0;", i)
		}
		return b[:n]
	}
	random := make([]byte, 8<<10)
	_, _ = rand.Read(random)
	random[0] = mlPushPullMsg
	user := state(8 << 10)
	user[0] = 8 // memberlist's userMsg

	for _, tc := range []struct {
		name string
		msg  []byte
		zip  bool
	}{
		{"push/pull state", state(64 << 10), true},
		{"push/pull state of zipMin bytes", state(zipMin), true},
		{"push/pull state below zipMin", state(zipMin - 1), false},
		{"user message", user, false},
		{"push/pull state that does not compress", random, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			got := make(chan []byte, 1)
			go func() { w, _ := io.ReadAll(b); got <- w }()
			n, err := zipConn{a}.Write(tc.msg)
			if err != nil || n != len(tc.msg) {
				t.Fatalf("Write: %d, %v; want %d, nil", n, err, len(tc.msg))
			}
			a.Close()
			wire := <-got
			if !tc.zip {
				if !bytes.Equal(wire, tc.msg) {
					t.Fatalf("wrote %d bytes, not the message as it is", len(wire))
				}
				return
			}
			if wire[0] != mlCompressMsg || len(wire) >= len(tc.msg) {
				t.Fatalf("wrote type %d, %d bytes for %d; want compressMsg, fewer", wire[0], len(wire), len(tc.msg))
			}
			if back := unzipMessage(t, wire); !bytes.Equal(back, tc.msg) {
				t.Fatalf("decompressed %d bytes, not the message", len(back))
			}
		})
	}
}

// unzipMessage reads a compressMsg as memberlist's readStream does.
func unzipMessage(t *testing.T, wire []byte) []byte {
	t.Helper()
	var c mlCompress
	if err := codec.NewDecoder(bytes.NewReader(wire[1:]), &codec.MsgpackHandle{}).Decode(&c); err != nil {
		t.Fatal(err)
	}
	if c.Algo != mlLZW {
		t.Fatalf("algorithm %d, want LZW", c.Algo)
	}
	b, err := io.ReadAll(lzw.NewReader(bytes.NewReader(c.Buf), lzw.LSB, mlLZWLitWidth))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPushPullZippedBetweenMemberlists: two memberlist instances over
// this package's transport join (a push/pull both ways) with a delegate
// state far over zipMin, and each merges the other's state byte for
// byte: memberlist itself reads what zipConn writes.
func TestPushPullZippedBetweenMemberlists(t *testing.T) {
	start := func(name string) (*memberlist.Memberlist, *stateDelegate) {
		tr := newTestTransport(t)
		d := &stateDelegate{state: bytes.Repeat([]byte(name+" has a large and repetitive state; "), 1000)}
		cfg := memberlist.DefaultLocalConfig()
		cfg.Name = name
		cfg.Transport = tr
		cfg.BindAddr, cfg.AdvertiseAddr, cfg.AdvertisePort = "127.0.0.1", "127.0.0.1", tr.port()
		cfg.Delegate = d
		cfg.EnableCompression = false // as DefaultConfig: only zipConn compresses
		cfg.LogOutput = io.Discard
		ml, err := memberlist.Create(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ml.Shutdown() })
		return ml, d
	}
	a, da := start("a")
	b, db := start("b")
	if _, err := b.Join([]string{net.JoinHostPort("127.0.0.1", strconv.Itoa(int(a.LocalNode().Port)))}); err != nil {
		t.Fatalf("join: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !bytes.Equal(da.merged(), db.state) || !bytes.Equal(db.merged(), da.state) {
		if time.Now().After(deadline) {
			t.Fatalf("after the join a merged %d bytes of b's %d, b %d of a's %d", len(da.merged()), len(db.state), len(db.merged()), len(da.state))
		}
		time.Sleep(10 * time.Millisecond) // polling a condition
	}
}

// stateDelegate is a memberlist.Delegate with a fixed push/pull state
// that keeps the last state it merged.
type stateDelegate struct {
	state []byte
	mu    sync.Mutex
	got   []byte
}

func (d *stateDelegate) NodeMeta(int) []byte             { return nil }
func (d *stateDelegate) NotifyMsg([]byte)                {}
func (d *stateDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (d *stateDelegate) LocalState(bool) []byte          { return d.state }
func (d *stateDelegate) MergeRemoteState(b []byte, _ bool) {
	d.mu.Lock()
	d.got = bytes.Clone(b)
	d.mu.Unlock()
}
func (d *stateDelegate) merged() []byte { d.mu.Lock(); defer d.mu.Unlock(); return d.got }
