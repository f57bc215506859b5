package creds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// maxRedisLine bounds the AUTH reply line, CRLF included. Real replies are
// "+OK" or a one-line error, mostly under 200 bytes; the longest, Redis's
// protected-mode DENIED, is about 1 KB, and the user must be able to read it.
const maxRedisLine = 4 << 10

var (
	errLineTooLong = errors.New("reply line too long")
	errNoCRLF      = errors.New("reply line does not end in CRLF")
)

// redisHandshake sends AUTH to the backend and reads exactly its one reply
// line. The server sends nothing else until the client speaks, and the
// client has nothing to read from us, so both raw conns go back unchanged.
func redisHandshake(s Secret) handshake {
	cmd := redisAuthCommand(s)
	return func(ctx context.Context, client, backend net.Conn) (_, _ net.Conn, err error) {
		release := bindDeadline(ctx, client, backend)
		defer func() {
			if rerr := release(); err == nil && rerr != nil {
				err = fmt.Errorf("creds: redis auth: %w", rerr)
			}
		}()
		fail := func(reason string, err error) (net.Conn, net.Conn, error) {
			// Best effort: the client's first command gets this as its reply.
			_, _ = io.WriteString(client, "-ERR ambassador: authentication to redis failed: "+reason+"\r\n")
			return nil, nil, err
		}
		if _, err := backend.Write(cmd); err != nil {
			err = ctxErr(ctx, err)
			return fail("cannot send AUTH", fmt.Errorf("creds: redis auth: send: %w", err))
		}
		line, err := readLine(backend, maxRedisLine)
		if err != nil {
			err = ctxErr(ctx, err)
			reason := "no reply to AUTH"
			if errors.Is(err, errLineTooLong) || errors.Is(err, errNoCRLF) {
				reason = "malformed reply to AUTH"
			}
			return fail(reason, fmt.Errorf("creds: redis auth: read reply: %w", err))
		}
		switch {
		case bytes.Equal(line, []byte("+OK")):
			return client, backend, nil
		case len(line) > 0 && line[0] == '-':
			msg := sanitizeLine(redactPassword(string(line[1:]), s.Password))
			return fail(msg, fmt.Errorf("creds: redis auth: server refused: %q", msg))
		default:
			return fail("unexpected reply to AUTH", fmt.Errorf("creds: redis auth: unexpected reply %q", sanitizeLine(redactPassword(string(line), s.Password))))
		}
	}
}

// redisAuthCommand encodes AUTH as a RESP array of bulk strings, which
// needs no quoting however the password looks.
func redisAuthCommand(s Secret) []byte {
	args := []string{"AUTH", s.Password}
	if s.User != "" {
		args = []string{"AUTH", s.User, s.Password}
	}
	var b []byte
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, "\r\n"...)
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, "\r\n"...)
		b = append(b, a...)
		b = append(b, "\r\n"...)
	}
	return b
}

// readLine reads one CRLF-terminated line from r a byte at a time, so it
// never consumes a byte past the '\n'. It reads at most max bytes. The
// returned line excludes the CRLF.
func readLine(r io.Reader, max int) ([]byte, error) {
	var line []byte
	var b [1]byte
	for len(line) < max {
		n, err := r.Read(b[:])
		if n == 1 {
			if b[0] == '\n' {
				if len(line) == 0 || line[len(line)-1] != '\r' {
					return nil, errNoCRLF
				}
				return line[:len(line)-1], nil
			}
			line = append(line, b[0])
			continue
		}
		if err == io.EOF {
			return nil, io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, errLineTooLong
}

// minRedactedPrefix is the shortest prefix of the password that
// redactPassword removes when the whole password is not there.
const minRedactedPrefix = 8

// redactPassword replaces the password in a server's reply with
// "[redacted]", so that neither the client (which must not learn it) nor
// the log gets it. Redis answers an unknown (renamed, disabled) AUTH with
// "unknown command 'AUTH', with args beginning with: ..." and cuts those
// arguments at 128 bytes, so a prefix of the password, from
// minRedactedPrefix bytes on, is replaced too.
func redactPassword(msg, password string) string {
	for n := min(len(password), len(msg)); n >= min(len(password), minRedactedPrefix) && n > 0; n-- {
		msg = strings.ReplaceAll(msg, password[:n], redacted)
	}
	return msg
}

// sanitizeLine keeps a server's message printable, so it cannot break the
// RESP line we put it in or forge a log line.
func sanitizeLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
