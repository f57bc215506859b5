package listennet

import "testing"

func TestNetwork(t *testing.T) {
	for _, tc := range []struct{ network, addr, want string }{
		{"tcp", "0.0.0.0:80", "tcp4"},
		{"tcp", "127.0.0.1:0", "tcp4"},
		{"udp", "10.0.0.5:53", "udp4"},
		{"tcp", "[::]:80", "tcp"},
		{"tcp", "[::1]:80", "tcp"},
		{"tcp", "[::ffff:10.0.0.5]:80", "tcp"},
		{"tcp", "localhost:80", "tcp"},
		{"tcp", ":80", "tcp"},
	} {
		if got := Network(tc.network, tc.addr); got != tc.want {
			t.Errorf("Network(%q, %q) = %q, want %q", tc.network, tc.addr, got, tc.want)
		}
	}
}
