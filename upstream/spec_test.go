package upstream

import (
	"strconv"
	"strings"
	"testing"
)

var parseCases = []struct {
	name    string
	in      string
	want    Spec
	wantStr string // String() of the result; "" means in
	wantErr bool
}{
	{name: "srv", in: "srv:_redis._tcp.example.lab", want: Spec{Kind: KindSRV, Name: "_redis._tcp.example.lab."}, wantStr: "srv:_redis._tcp.example.lab."},
	{name: "srv fqdn", in: "srv:_redis._tcp.example.lab.", want: Spec{Kind: KindSRV, Name: "_redis._tcp.example.lab."}},
	{name: "srv upper case", in: "SRV:_Redis._TCP.Example.Lab", want: Spec{Kind: KindSRV, Name: "_redis._tcp.example.lab."}, wantStr: "srv:_redis._tcp.example.lab."},
	{name: "srv empty", in: "srv:", wantErr: true},
	{name: "srv numeric", in: "srv:8080", wantErr: true},
	{name: "srv root", in: "srv:.", wantErr: true},
	{name: "srv empty label", in: "srv:_a.._tcp", wantErr: true},
	{name: "srv bad char", in: "srv:_a b._tcp", wantErr: true},
	{name: "srv with port", in: "srv:_a._tcp.lab:53", wantErr: true},
	{name: "dns", in: "dns:db.example.lab:5432", want: Spec{Kind: KindDNS, Name: "db.example.lab", Port: 5432}},
	{name: "dns host named srv", in: "dns:srv:80", want: Spec{Kind: KindDNS, Name: "srv", Port: 80}},
	{name: "dns no port", in: "dns:db.example.lab", wantErr: true},
	{name: "dns ip", in: "dns:10.0.0.1:80", wantErr: true},
	{name: "dns port 0", in: "dns:db:0", wantErr: true},
	{name: "dns port too big", in: "dns:db:65536", wantErr: true},
	{name: "dns port name", in: "dns:db:http", wantErr: true},
	{name: "static ipv4", in: "10.0.0.7:5432", want: Spec{Kind: KindStatic, Name: "10.0.0.7", Port: 5432}},
	{name: "static ipv6", in: "[fd00::7]:5432", want: Spec{Kind: KindStatic, Name: "fd00::7", Port: 5432}},
	{name: "static ipv6 canonical", in: "[FD00:0::7]:5432", want: Spec{Kind: KindStatic, Name: "fd00::7", Port: 5432}, wantStr: "[fd00::7]:5432"},
	{name: "static host", in: "Redis.Lab:6379", want: Spec{Kind: KindStatic, Name: "redis.lab", Port: 6379}, wantStr: "redis.lab:6379"},
	{name: "static max port", in: "h:65535", want: Spec{Kind: KindStatic, Name: "h", Port: 65535}},
	{name: "static leading zero port", in: "h:080", want: Spec{Kind: KindStatic, Name: "h", Port: 80}, wantStr: "h:80"},
	{name: "static unbracketed v6", in: "fd00::7:80", wantErr: true},
	{name: "static no port", in: "10.0.0.7", wantErr: true},
	{name: "static empty host", in: ":80", wantErr: true},
	{name: "static negative port", in: "h:-1", wantErr: true},
	{name: "static bad v6", in: "[fd00::zz]:80", wantErr: true},
	{name: "empty", in: "", wantErr: true},
	// An IPv4 address with a typo is not a host name to look up: RFC 1123
	// §2.1 keeps the top-level label of a host name from being all digits.
	{name: "static ipv4 octet out of range", in: "10.0.0.300:5432", wantErr: true},
	{name: "static ipv4 three parts", in: "10.0.7:5432", wantErr: true},
	{name: "static ipv4 leading zero", in: "010.0.0.7:5432", wantErr: true},
	{name: "static all digits", in: "1234:80", wantErr: true},
	{name: "dns ipv4 octet out of range", in: "dns:10.0.0.300:5432", wantErr: true},
	{name: "srv numeric top label", in: "srv:_a._tcp.10.0.0.7", wantErr: true},
	{name: "static unspecified ipv4", in: "0.0.0.0:80", wantErr: true},
	{name: "static unspecified ipv6", in: "[::]:80", wantErr: true},
	{name: "static digits before a name", in: "10.0.0.lab:80", want: Spec{Kind: KindStatic, Name: "10.0.0.lab", Port: 80}},
	{name: "static name starting with a digit", in: "1db.2lab:80", want: Spec{Kind: KindStatic, Name: "1db.2lab", Port: 80}},
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Parse(%q): got %+v, want error", tc.in, got)
				}
				if q := strconv.Quote(tc.in); !strings.Contains(err.Error(), q) {
					t.Errorf("Parse(%q): error %q does not name the input %s", tc.in, err, q)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("Parse(%q): got %+v, want %+v", tc.in, got, tc.want)
			}
			wantStr := tc.wantStr
			if wantStr == "" {
				wantStr = tc.in
			}
			if s := got.String(); s != wantStr {
				t.Errorf("String: got %q, want %q", s, wantStr)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, tc := range parseCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		sp, err := Parse(in)
		if err != nil {
			return
		}
		s := sp.String()
		again, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q) = %+v, but Parse(String() = %q): %v", in, sp, s, err)
		}
		if again != sp {
			t.Fatalf("round trip of %q via %q: got %+v, want %+v", in, s, again, sp)
		}
		if again.String() != s {
			t.Fatalf("String not stable: got %q, want %q", again.String(), s)
		}
	})
}
