package trust

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/testutil"
)

// resumeServer is one data-port-like TLS server on 127.0.0.1 that keeps
// its listener (the client's session cache is keyed by address) and
// records whether its peer check saw a resumed session.
type resumeServer struct {
	addr       string
	conf       atomic.Pointer[tls.Config] // swapped by tests between dials
	sawResumed atomic.Bool                // VerifyConnection ran with DidResume
	handled    chan struct{}              // one per connection the server is done with
}

func newResumeServer(t *testing.T, conf *tls.Config) *resumeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &resumeServer{addr: ln.Addr().String(), handled: make(chan struct{}, 1)}
	s.set(conf)
	done := make(chan struct{})
	t.Cleanup(func() { _ = ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			tc := tls.Server(c, s.conf.Load())
			if err := tc.Handshake(); err == nil {
				// Echo one byte: the client's read of it also takes in the
				// session ticket the server sends after the handshake.
				b := make([]byte, 1)
				if _, err := io.ReadFull(tc, b); err == nil {
					_, _ = tc.Write(b)
				}
			}
			_ = c.Close()
			s.handled <- struct{}{}
		}
	}()
	return s
}

// set makes conf the server's config, its peer check wrapped to record
// resumed sessions.
func (s *resumeServer) set(conf *tls.Config) {
	conf = conf.Clone()
	verify := conf.VerifyConnection
	conf.VerifyConnection = func(cs tls.ConnectionState) error {
		if cs.DidResume {
			s.sawResumed.Store(true)
		}
		if verify == nil {
			return nil
		}
		return verify(cs)
	}
	s.conf.Store(conf)
}

// dial connects with conf and exchanges one byte. It returns the
// connection's state, or the first error.
func (s *resumeServer) dial(t *testing.T, conf *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	s.sawResumed.Store(false)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	// The client can give up before the server has run its peer check:
	// callers read sawResumed only once the server is done.
	defer func() {
		select {
		case <-s.handled:
		case <-ctx.Done():
			t.Error("the server did not finish the connection")
		}
	}()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		return tls.ConnectionState{}, err
	}
	if _, err := tc.Write([]byte{1}); err != nil {
		return tls.ConnectionState{}, err
	}
	// A TLS 1.3 server's refusal of the client arrives here.
	if _, err := io.ReadFull(tc, make([]byte, 1)); err != nil {
		return tls.ConnectionState{}, err
	}
	return tc.ConnectionState(), nil
}

// TestResume: with ClientConfigs the second connection to a server
// resumes the first one's session, in both trust modes, and Get builds a
// config once per peer.
func TestResume(t *testing.T) {
	srvID, cliID := newIdentity(t, "server"), newIdentity(t, "client")
	ours := testutil.NewCA(t, "ours")
	srvCA, cliCA := loadTestCA(t, ours, "server"), loadTestCA(t, ours, "client")
	for _, tc := range []struct {
		name   string
		server *tls.Config
		confs  *ClientConfigs
		peer   string
	}{
		{"pinned fingerprint", ServerConfig(srvID, func(fp string) bool { return fp == cliID.Fingerprint() }),
			cliID.ClientConfigs(), srvID.Fingerprint()},
		{"operator CA", srvCA.ServerConfig(), cliCA.ClientConfigs(), "server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newResumeServer(t, tc.server)
			conf := tc.confs.Get(tc.peer)
			if again := tc.confs.Get(tc.peer); again != conf {
				t.Error("Get built a second config for the same peer")
			}
			for i, wantResumed := range []bool{false, true, true} {
				st, err := s.dial(t, conf)
				if err != nil {
					t.Fatalf("dial %d: %v", i+1, err)
				}
				if st.DidResume != wantResumed {
					t.Errorf("dial %d: DidResume %v, want %v", i+1, st.DidResume, wantResumed)
				}
				if i == 0 {
					t.Logf("cipher suite %s", tls.CipherSuiteName(st.CipherSuite))
				}
				if len(st.PeerCertificates) != 1 {
					t.Errorf("dial %d: %d peer certificates, want the server's", i+1, len(st.PeerCertificates))
				}
			}
		})
	}
}

// TestResumeRefused: a session resumed by a peer that is no longer
// trusted is refused, on the server and on the client, in both modes. Each
// case checks that the refusing side did see a resumed session, so the
// refusal is the peer check running on resumption (VerifyConnection), not
// a full handshake failing.
func TestResumeRefused(t *testing.T) {
	srvID, cliID, otherID := newIdentity(t, "server"), newIdentity(t, "client"), newIdentity(t, "other")
	ours := testutil.NewCA(t, "ours")
	srvCA, cliCA := loadTestCA(t, ours, "server"), loadTestCA(t, ours, "client")

	t.Run("server: client is no longer a member", func(t *testing.T) {
		var member atomic.Bool
		member.Store(true)
		s := newResumeServer(t, ServerConfig(srvID, func(fp string) bool { return member.Load() && fp == cliID.Fingerprint() }))
		conf := cliID.ClientConfigs().Get(srvID.Fingerprint())
		if _, err := s.dial(t, conf); err != nil {
			t.Fatalf("first dial: %v", err)
		}
		member.Store(false) // e.g. its cluster key was rotated away
		if _, err := s.dial(t, conf); err == nil {
			t.Fatal("second dial succeeded, want the resumed session refused")
		}
		if !s.sawResumed.Load() {
			t.Error("the server did not see a resumed session: the case tests nothing")
		}
	})

	t.Run("client: the server is not the expected fingerprint", func(t *testing.T) {
		s := newResumeServer(t, ServerConfig(srvID, func(string) bool { return true }))
		confs := cliID.ClientConfigs()
		if _, err := s.dial(t, confs.Get(srvID.Fingerprint())); err != nil {
			t.Fatalf("first dial: %v", err)
		}
		// The catalog now says the node at this address has another key
		// (it restarted, or another node took the address). The cached
		// session is offered and the server takes it.
		if _, err := s.dial(t, confs.Get(otherID.Fingerprint())); err == nil {
			t.Fatal("dial expecting another fingerprint succeeded on the old session")
		}
		if !s.sawResumed.Load() {
			t.Error("the server did not resume: the case tests nothing")
		}
	})

	t.Run("client: the server is not the expected node (CA)", func(t *testing.T) {
		s := newResumeServer(t, srvCA.ServerConfig())
		confs := cliCA.ClientConfigs()
		if _, err := s.dial(t, confs.Get("server")); err != nil {
			t.Fatalf("first dial: %v", err)
		}
		if _, err := s.dial(t, confs.Get("someone-else")); err == nil {
			t.Fatal("dial expecting another node succeeded on the old session")
		}
		if !s.sawResumed.Load() {
			t.Error("the server did not resume: the case tests nothing")
		}
	})

	t.Run("server: client certificate names another cluster (CA)", func(t *testing.T) {
		// The server is restarted into another cluster but keeps its
		// session ticket key, so the client's ticket still decrypts: the
		// session's certificate names the old cluster and must be refused.
		var key [32]byte
		_, _ = rand.Read(key[:])
		first := srvCA.ServerConfig()
		first.SetSessionTicketKeys([][32]byte{key})
		s := newResumeServer(t, first)
		conf := cliCA.ClientConfigs().Get("server")
		if _, err := s.dial(t, conf); err != nil {
			t.Fatalf("first dial: %v", err)
		}
		moved := *srvCA
		moved.cluster = "elsewhere"
		second := moved.ServerConfig()
		second.SetSessionTicketKeys([][32]byte{key})
		s.set(second)
		if _, err := s.dial(t, conf); err == nil {
			t.Fatal("second dial succeeded, want the resumed session refused")
		}
		if !s.sawResumed.Load() {
			t.Error("the server did not see a resumed session: the case tests nothing")
		}
	})
}

// TestClientConfigsBounded: configs for peers that left do not pile up.
func TestClientConfigsBounded(t *testing.T) {
	confs := newIdentity(t, "client").ClientConfigs()
	for i := range maxClientConfigs + 10 {
		_ = confs.Get(string(rune('a'+i%26)) + string(rune(i)))
	}
	confs.mu.Lock()
	n := len(confs.byID)
	confs.mu.Unlock()
	if n > maxClientConfigs {
		t.Errorf("%d configs kept, want at most %d", n, maxClientConfigs)
	}
}

// TestResumeOutlivesCertificateDates: an Identity's certificate dates are
// not what peers trust, but crypto/tls refuses to resume a session whose
// peer certificate has expired (on both sides). A node that has run
// longer than its certificate's validity, or whose clock jumped forward
// (a host without a battery-backed clock that made its identity before
// NTP set the time), must still resume rather than pay for a full
// handshake on every dial.
func TestResumeOutlivesCertificateDates(t *testing.T) {
	srvID, cliID := newIdentity(t, "server"), newIdentity(t, "client")
	for _, tc := range []struct {
		name  string
		later time.Duration
	}{
		{"now", 0},
		{"after 400 days", 400 * 24 * time.Hour},
		{"after 30 years", 30 * 365 * 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := func() time.Time { return time.Now().Add(tc.later) }
			server := ServerConfig(srvID, func(fp string) bool { return fp == cliID.Fingerprint() })
			server.Time = clock
			s := newResumeServer(t, server)
			conf := cliID.ClientConfigs().Get(srvID.Fingerprint()).Clone()
			conf.Time = clock
			for i, wantResumed := range []bool{false, true} {
				st, err := s.dial(t, conf)
				if err != nil {
					t.Fatalf("dial %d: %v", i+1, err)
				}
				if st.DidResume != wantResumed {
					t.Errorf("dial %d: DidResume %v, want %v", i+1, st.DidResume, wantResumed)
				}
			}
		})
	}
}
