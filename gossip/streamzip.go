package gossip

import (
	"bytes"
	"compress/lzw"
	"net"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// Compressed push/pull streams (issue 10).
//
// A push/pull sends memberlist's entry for every member (about 77 bytes
// plus the name: msgpack spells out the seven field names of each) and
// then our catalog state, which kindStateFlate already compresses. At
// 1,000 members memberlist's part was 77 of one side's 87.5 KB, and a
// node that took part in three push/pulls in 30 s sent about 9 KB/s
// (session 13, statesize_test.go).
//
// memberlist compresses its own messages only with EnableCompression,
// which also compresses every packet (config.go says why that is off).
// But it reads a compressed message (compressMsg: LZW in a msgpack
// envelope) at the start of any stream whatever its own setting, as every
// release since its first has. So the transport compresses the one write
// that carries a push/pull's state, as memberlist's compressPayload would,
// and any peer reads it: no flag, no version check. Only that write: a
// stream's other messages (user messages, pings) are small, and an
// encrypted stream's bytes start with encryptMsg and do not compress.

// memberlist's message types and compression algorithm this file writes
// (memberlist net.go, util.go; the values are its wire protocol).
const (
	mlPushPullMsg byte = 6
	mlCompressMsg byte = 9
	mlLZW              = 0 // lzwAlgo
	mlLZWLitWidth      = 8
)

// zipMin is the smallest push/pull state worth compressing: below it a
// state is a handful of members, and the envelope and LZW's start-up
// cost about what they save.
const zipMin = 1 << 10

// zipConn is a gossip stream whose push/pull state is compressed on its
// way out (see above). Reads are untouched: memberlist decompresses.
type zipConn struct {
	net.Conn
}

// Write writes b, compressed when it is a push/pull state of at least
// zipMin bytes and compression makes it smaller. memberlist writes each
// message with one Write, so b starts with the message type. It reports
// len(b) when the compressed message was written in full.
func (c zipConn) Write(b []byte) (int, error) {
	if len(b) < zipMin || b[0] != mlPushPullMsg {
		return c.Conn.Write(b)
	}
	z, err := compressMessage(b)
	if err != nil || len(z) >= len(b) {
		return c.Conn.Write(b)
	}
	if _, err := c.Conn.Write(z); err != nil {
		return 0, err
	}
	return len(b), nil
}

// mlCompress is memberlist's compress message; msgpack encodes it by its
// field names, so these must stay memberlist's.
type mlCompress struct {
	Algo int
	Buf  []byte
}

// compressMessage returns msg wrapped as memberlist's compressPayload
// wraps a message: the compressMsg type, then the msgpack envelope of its
// LZW compression.
func compressMessage(msg []byte) ([]byte, error) {
	var z bytes.Buffer
	zw := lzw.NewWriter(&z, lzw.LSB, mlLZWLitWidth)
	if _, err := zw.Write(msg); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	out := bytes.NewBuffer(make([]byte, 0, z.Len()+16))
	out.WriteByte(mlCompressMsg)
	if err := codec.NewEncoder(out, &codec.MsgpackHandle{}).Encode(&mlCompress{Algo: mlLZW, Buf: z.Bytes()}); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
