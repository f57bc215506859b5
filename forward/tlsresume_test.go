package forward

import (
	"crypto/tls"
	"sync/atomic"
	"testing"

	"github.com/ambassador-mesh/ambassador/trust"
)

// TestTLSResumeThroughHandoff: with the configs mesh uses (trust's
// ClientConfigs on the Proxy, one ServerConfig on the Server) the second
// keyed connection resumes the first one's TLS session, and a resumed
// client that stops being a member is refused: the Server's peer check
// runs on the resumed handshake.
func TestTLSResumeThroughHandoff(t *testing.T) {
	clientID, serverID := newIdentity(t, "client"), newIdentity(t, "server")
	var member atomic.Bool
	member.Store(true)
	var resumed, full atomic.Int64
	scfg := testConfig(t)
	scfg.ServerTLS = trust.ServerConfig(serverID, func(fp string) bool { return member.Load() && fp == clientID.Fingerprint() })
	verify := scfg.ServerTLS.VerifyConnection
	scfg.ServerTLS.VerifyConnection = func(cs tls.ConnectionState) error {
		if cs.DidResume {
			resumed.Add(1)
		} else {
			full.Add(1)
		}
		return verify(cs)
	}
	srv := newServer(t, scfg, map[string]string{"svc": startBackend(t, reply("hi"))}).Addr().String()

	confs := clientID.ClientConfigs()
	pcfg := testConfig(t)
	pcfg.ClientTLS = func(Backend) (*tls.Config, error) { return confs.Get(serverID.Fingerprint()), nil }
	p, al := newProxy(t, pcfg)
	p.Update([]Route{{Service: "svc", Listen: "auto:svc", Backends: []Backend{{Node: "server", Addr: srv, Service: "svc"}}}})
	addr := al.addr(t, "auto:svc")

	for i := range 3 {
		if got := roundTrip(t, addr, ""); got != "hi" {
			t.Fatalf("connection %d: got %q, want %q", i+1, got, "hi")
		}
	}
	if f, r := full.Load(), resumed.Load(); f != 1 || r != 2 {
		t.Errorf("handshakes: %d full, %d resumed; want 1 full, then 2 resumed", f, r)
	}

	member.Store(false)
	if got := roundTrip(t, addr, ""); got != "" {
		t.Errorf("after the client left: got %q, want the connection refused", got)
	}
	if r := resumed.Load(); r != 3 {
		t.Errorf("the refused client resumed %d times in all, want 3: the refusal must be of a resumed session", r)
	}
	if got := p.Status()[0].DialErrors; got != 1 {
		t.Errorf("DialErrors: got %d, want 1", got)
	}
}
