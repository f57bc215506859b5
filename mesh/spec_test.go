package mesh

import (
	"strings"
	"testing"
)

func TestParseAnnounce(t *testing.T) {
	tests := []struct {
		in      string
		want    Announce
		wantErr string
	}{
		{in: "redis:6379=12345", want: Announce{Name: "redis", Port: 6379, Host: "127.0.0.1", TargetPort: 12345}},
		{in: "redis=6379", want: Announce{Name: "redis", Port: 6379, Host: "127.0.0.1", TargetPort: 6379}},
		{in: "web:80=10.0.0.5:8080", want: Announce{Name: "web", Port: 80, Host: "10.0.0.5", TargetPort: 8080}},
		{in: "web=db.lab:5432", want: Announce{Name: "web", Port: 5432, Host: "db.lab", TargetPort: 5432}},
		{in: "web=[::1]:8080", want: Announce{Name: "web", Port: 8080, Host: "::1", TargetPort: 8080}},
		{in: "Postgres-1=5432", want: Announce{Name: "Postgres-1", Port: 5432, Host: "127.0.0.1", TargetPort: 5432}},
		{in: "api=8080,weight=3", want: Announce{Name: "api", Port: 8080, Host: "127.0.0.1", TargetPort: 8080, Weight: 3}},
		{in: "api:80=10.0.0.1:8080,weight=1000", want: Announce{Name: "api", Port: 80, Host: "10.0.0.1", TargetPort: 8080, Weight: 1000}},
		{in: "api=8080,weight=0", wantErr: `weight "0"`},
		{in: "api=8080,weight=x", wantErr: `weight "x"`},
		{in: "api=8080,weight=1001", wantErr: `weight "1001"`},
		{in: "api=8080,prio=1", wantErr: `unknown option "prio=1"`},
		{in: "api=8080,", wantErr: `unknown option ""`},
		{in: "redis", wantErr: "want NAME[:PORT]=[HOST:]TARGET_PORT"},
		{in: "redis:6379", wantErr: "want NAME"},
		{in: "=6379", wantErr: "empty"},
		{in: "redis:0=1", wantErr: "port \"0\""},
		{in: "redis:x=1", wantErr: "port \"x\""},
		{in: "redis=70000", wantErr: "port \"70000\""},
		{in: "redis=", wantErr: "empty address"},
		{in: "red_is=1", wantErr: "not allowed"},
		{in: "-redis=1", wantErr: "hyphen"},
		{in: "re--dis=1", wantErr: "two hyphens"},
		{in: "1234=1", wantErr: "no letter"},
		{in: "0x10=1", wantErr: "IPv4 address"}, // glibc reads 0x10 as 0.0.0.16
		{in: "averyveryverylongname=1", wantErr: "longer than 15"},
		{in: "web=bad host:1", wantErr: "not an IP or a host name"},
		{in: "ambassador=1", wantErr: "reserved"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseAnnounce(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got err %v", err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			// The canonical form parses back to the same value.
			again, err := ParseAnnounce(got.String())
			if err != nil || again != got {
				t.Fatalf("round trip of %q: got %+v, %v", got.String(), again, err)
			}
		})
	}
}

func TestParseForward(t *testing.T) {
	tests := []parseCase[Forward]{
		{in: "redis", want: Forward{Name: "redis"}},
		{in: "redis=6380", want: Forward{Name: "redis", Listen: "127.0.0.1:6380"}},
		{in: "redis=0.0.0.0:6380", want: Forward{Name: "redis", Listen: "0.0.0.0:6380"}},
		{in: "redis=:6380", want: Forward{Name: "redis", Listen: "127.0.0.1:6380"}},
		{in: "redis=", wantErr: "empty address"},
		{in: "redis=abc", wantErr: "port \"abc\""},
		{in: "re dis", wantErr: "not allowed"},
	}
	runParseTable(t, tests, ParseForward)
}

func TestParseStatic(t *testing.T) {
	tests := []parseCase[Static]{
		{in: "6380=6379", want: Static{Listen: "127.0.0.1:6380", Target: "127.0.0.1:6379"}},
		{in: "0.0.0.0:80=10.1.2.3:8080", want: Static{Listen: "0.0.0.0:80", Target: "10.1.2.3:8080"}},
		{in: "6380", wantErr: "want LISTEN=TARGET"},
		{in: "6380=", wantErr: "target"},
		{in: "x=1", wantErr: "listen"},
		// One host rule with upstream's (internal/dnsname): an IPv4
		// address with a typo is no host name, a trailing dot is fine.
		{in: "6380=10.0.0.300:6379", wantErr: "10.0.0.300"},
		{in: "6380=10.0.7:6379", wantErr: "10.0.7"},
		{in: "6380=db.lab.:6379", want: Static{Listen: "127.0.0.1:6380", Target: "db.lab.:6379"}},
		{in: "6380=db_1.lab:6379", want: Static{Listen: "127.0.0.1:6380", Target: "db_1.lab:6379"}},
		{in: "6380=db..lab:6379", wantErr: "db..lab"},
		{in: "6380=db lab:6379", wantErr: "db lab"},
	}
	runParseTable(t, tests, ParseStatic)
}

// parseCase is one row of a parser's table test.
type parseCase[T comparable] = struct {
	in      string
	want    T
	wantErr string
}

// runParseTable checks each row: an error containing wantErr, or want.
func runParseTable[T comparable](t *testing.T, tests []parseCase[T], parse func(string) (T, error)) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parse(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %+v, %v; want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestParseBalance(t *testing.T) {
	tests := []struct{ in, name, policy, wantErr string }{
		{in: "redis=round-robin", name: "redis", policy: "round-robin"},
		{in: "Web=first", name: "web", policy: "first"},
		{in: "api=least-conn", name: "api", policy: "least-conn"},
		{in: "api=random", name: "api", policy: "random"},
		{in: "api=fastest", wantErr: `"fastest" is not one of`},
		{in: "api=", wantErr: "policy is empty"},
		{in: "api", wantErr: "want NAME=POLICY"},
		{in: "a_b=first", wantErr: "not allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			name, policy, err := ParseBalance(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || name.String() != tc.name || policy != tc.policy {
				t.Fatalf("got %q %q %v, want %q %q", name, policy, err, tc.name, tc.policy)
			}
		})
	}
}

func TestJoinAddr(t *testing.T) {
	tests := []struct{ in, want, wantErr string }{
		{in: "10.0.0.2", want: "10.0.0.2:7946"},
		{in: "10.0.0.2:8000", want: "10.0.0.2:8000"},
		{in: "node-b.lab", want: "node-b.lab:7946"},
		{in: "[fe80::1]", want: "[fe80::1]:7946"},
		{in: "10.0.0.2:x", wantErr: "not HOST[:PORT]"},
		{in: "", wantErr: "not HOST[:PORT]"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := joinAddr(tc.in, 7946)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func FuzzParseAnnounce(f *testing.F) {
	for _, s := range []string{"redis:6379=12345", "web=10.0.0.5:80", "a=[::1]:1", "x", "=", "a:=1", "api=80,weight=3", "a=1,weight=", "a=1,,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAnnounce(s)
		if err != nil {
			return
		}
		if a.Port < 1 || a.Port > 65535 || a.TargetPort < 1 || a.TargetPort > 65535 {
			t.Fatalf("%q: ports out of range: %+v", s, a)
		}
		again, err := ParseAnnounce(a.String())
		if err != nil || again != a {
			t.Fatalf("%q: round trip %q gave %+v, %v", s, a.String(), again, err)
		}
	})
}

func FuzzParseForward(f *testing.F) {
	for _, s := range []string{"redis", "redis=6380", "redis=0.0.0.0:1", "a=", "=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fw, err := ParseForward(s)
		if err != nil {
			return
		}
		if fw.Listen != "" {
			if _, err := ParseAddr(fw.Listen, ""); err != nil {
				t.Fatalf("%q: listen %q does not parse back: %v", s, fw.Listen, err)
			}
		}
	})
}
