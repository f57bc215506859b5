package creds

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestRedis(t *testing.T) {
	tests := []struct {
		name      string
		secret    Secret
		reply     string // what the fake server answers to AUTH; "" closes instead
		wantCmd   string
		wantErr   bool
		wantReply string // what the app reads first
	}{
		{
			name: "ok", secret: Secret{Password: "pw"}, reply: "+OK\r\n",
			wantCmd: "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n", wantReply: "+PONG\r\n",
		},
		{
			name: "user and password", secret: Secret{User: "app", Password: "p w:*$"}, reply: "+OK\r\n",
			wantCmd: "*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$6\r\np w:*$\r\n", wantReply: "+PONG\r\n",
		},
		{
			name: "wrongpass", secret: Secret{User: "app", Password: "bad"},
			reply:   "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
			wantCmd: "*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$3\r\nbad\r\n", wantErr: true,
			wantReply: "-ERR ambassador: authentication to redis failed: WRONGPASS invalid username-password pair or user is disabled.\r\n",
		},
		{
			name: "oversize reply line", secret: Secret{Password: "pw"}, reply: "+" + strings.Repeat("O", 2*maxRedisLine) + "\r\n",
			wantCmd: "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n", wantErr: true,
			wantReply: "-ERR ambassador: authentication to redis failed: malformed reply to AUTH\r\n",
		},
		{
			name: "server closes", secret: Secret{Password: "pw"}, reply: "",
			wantCmd: "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n", wantErr: true,
			wantReply: "-ERR ambassador: authentication to redis failed: no reply to AUTH\r\n",
		},
		{
			// Redis answers a renamed or missing AUTH with its arguments.
			name: "server echoes the password", secret: Secret{User: "app", Password: "hunter2-secret"},
			reply:   "-ERR unknown command 'AUTH', with args beginning with: 'app' 'hunter2-secret' \r\n",
			wantCmd: "*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$14\r\nhunter2-secret\r\n", wantErr: true,
			wantReply: "-ERR ambassador: authentication to redis failed: ERR unknown command 'AUTH', with args beginning with: 'app' '[redacted]' \r\n",
		},
		{
			// It cuts the echoed arguments at 128 bytes: a prefix leaks too.
			name: "server echoes a prefix of the password", secret: Secret{User: "app", Password: strings.Repeat("0123456789", 20)},
			reply:   "-ERR unknown command 'AUTH', with args beginning with: 'app' '" + strings.Repeat("0123456789", 20)[:122] + "' \r\n",
			wantCmd: "*3\r\n$4\r\nAUTH\r\n$3\r\napp\r\n$200\r\n" + strings.Repeat("0123456789", 20) + "\r\n", wantErr: true,
			wantReply: "-ERR ambassador: authentication to redis failed: ERR unknown command 'AUTH', with args beginning with: 'app' '[redacted]' \r\n",
		},
		{
			// Redis in protected mode answers any command from a
			// non-loopback client with this 1 KB line, and the user needs
			// to read it, not "malformed reply".
			name: "protected mode", secret: Secret{Password: "pw"}, reply: "-" + redisDenied + "\r\n",
			wantCmd: "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n", wantErr: true,
			wantReply: "-ERR ambassador: authentication to redis failed: " + redisDenied + "\r\n",
		},
		{
			name: "unexpected reply", secret: Secret{Password: "pw"}, reply: ":1\r\n",
			wantCmd: "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n", wantErr: true,
			wantReply: "-ERR ambassador: authentication to redis failed: unexpected reply to AUTH\r\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newSetup(t)
			h, err := New("redis", tc.secret)
			if err != nil {
				t.Fatal(err)
			}
			// The fake server reads the AUTH command, answers, then serves
			// one PING through the raw copy.
			serverErr := make(chan error, 1)
			go func() {
				serverErr <- func() error {
					buf := make([]byte, len(tc.wantCmd))
					if _, err := io.ReadFull(st.server, buf); err != nil {
						return err
					}
					if string(buf) != tc.wantCmd {
						return errors.New("got AUTH " + strings.ReplaceAll(string(buf), "\r\n", "|"))
					}
					if tc.reply == "" {
						return st.server.Close()
					}
					if _, err := io.WriteString(st.server, tc.reply); err != nil {
						return err
					}
					if tc.wantErr {
						return nil
					}
					line, err := bufio.NewReader(st.server).ReadString('\n')
					if err != nil {
						return err
					}
					if line != "PING\r\n" {
						return errors.New("got " + line + ", want PING")
					}
					_, err = io.WriteString(st.server, "+PONG\r\n")
					return err
				}()
			}()

			gotC, gotB, err := h(testCtx(t), st.client, st.backend)
			if (err != nil) != tc.wantErr {
				t.Fatalf("handshake error = %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				if strings.Contains(err.Error(), tc.secret.Password[:min(len(tc.secret.Password), 8)]) {
					t.Errorf("error %q contains the password", err)
				}
				st.client.Close() // as forward does on error
				st.backend.Close()
			} else {
				if gotC != st.client || gotB != st.backend {
					t.Fatal("handshake did not return the raw conns (splice would be lost)")
				}
				copyBoth(t, gotC, gotB)
				if _, err := io.WriteString(st.app, "PING\r\n"); err != nil {
					t.Fatal(err)
				}
			}
			got := make([]byte, len(tc.wantReply))
			if _, err := io.ReadFull(st.app, got); err != nil {
				t.Fatalf("app read: %v (got %q)", err, got)
			}
			if string(got) != tc.wantReply {
				t.Errorf("app got %q, want %q", got, tc.wantReply)
			}
			if err := <-serverErr; err != nil {
				t.Errorf("fake server: %v", err)
			}
		})
	}
}

func TestRedisContextCanceled(t *testing.T) {
	st := newSetup(t)
	h, err := New("redis", Secret{Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	// The server never answers; cancel once the AUTH arrived.
	go func() {
		buf := make([]byte, 1)
		_, _ = st.server.Read(buf)
		cancel()
	}()
	_, _, err = h(ctx, st.client, st.backend)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("handshake error = %v, want context.Canceled", err)
	}
}

// redisDenied is Redis 7.0's reply in protected mode (networking.c), the
// longest one-line error a server sends before authentication.
const redisDenied = "DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. " +
	"In this mode connections are only accepted from the loopback interface. " +
	"If you want to connect from external computers to Redis you may adopt one of the following solutions: " +
	"1) Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the same host the server is running, " +
	"however MAKE SURE Redis is not publicly accessible from internet if you do so. Use CONFIG REWRITE to make this change permanent. " +
	"2) Alternatively you can just disable the protected mode by editing the Redis configuration file, and setting the protected mode option to 'no', and then restarting the server. " +
	"3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. " +
	"4) Set up an authentication password for the default user. " +
	"NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside."

var redisReplyCases = []string{
	"+OK\r\n", "+OK\r\nextra", "-WRONGPASS nope\r\n", "", "+OK", "+OK\n", "\r\n",
	strings.Repeat("x", maxRedisLine+10) + "\r\n", ":1\r\n",
}

func TestReadLine(t *testing.T) {
	for _, in := range redisReplyCases {
		checkReadLine(t, []byte(in))
	}
}

func FuzzRedisReply(f *testing.F) {
	for _, in := range redisReplyCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) { checkReadLine(t, in) })
}

// checkReadLine checks that readLine consumes exactly through the first
// '\n' (never beyond, never more than maxRedisLine) and returns the line.
func checkReadLine(t *testing.T, in []byte) {
	t.Helper()
	r := bytes.NewReader(in)
	line, err := readLine(r, maxRedisLine)
	consumed := len(in) - r.Len()
	if consumed > maxRedisLine {
		t.Fatalf("readLine(%q) consumed %d bytes, limit %d", in, consumed, maxRedisLine)
	}
	i := bytes.IndexByte(in, '\n')
	switch {
	case i >= 0 && i < maxRedisLine:
		if consumed != i+1 {
			t.Fatalf("readLine(%q) consumed %d bytes, want %d", in, consumed, i+1)
		}
		if i > 0 && in[i-1] == '\r' {
			if err != nil || !bytes.Equal(line, in[:i-1]) {
				t.Fatalf("readLine(%q) = %q, %v; want %q", in, line, err, in[:i-1])
			}
		} else if !errors.Is(err, errNoCRLF) {
			t.Fatalf("readLine(%q) error = %v, want errNoCRLF", in, err)
		}
	case err == nil:
		t.Fatalf("readLine(%q) = %q, want an error (no newline within limit)", in, line)
	}
}
