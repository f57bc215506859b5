package creds

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var parseCases = []struct {
	name, in string
	want     Spec
	wantErr  bool
}{
	{"redis", "cache=redis:/etc/amb/redis.pw", Spec{"cache", "redis", "/etc/amb/redis.pw"}, false},
	{"postgres", "db=postgres:pg.txt", Spec{"db", "postgres", "pg.txt"}, false},
	{"http basic", "web=http-basic:./basic", Spec{"web", "http-basic", "./basic"}, false},
	{"http bearer", "api=http-bearer:tok", Spec{"api", "http-bearer", "tok"}, false},
	{"colon in path", "db=postgres:C:/x:y", Spec{"db", "postgres", "C:/x:y"}, false},
	{"equals in path", "db=postgres:a=b", Spec{"db", "postgres", "a=b"}, false},
	{"no equals", "postgres:pg.txt", Spec{}, true},
	{"empty name", "=postgres:pg.txt", Spec{}, true},
	{"space in name", "my db=postgres:pg.txt", Spec{}, true},
	// The one service-name rule (svcname, RFC 6335), not "no whitespace".
	{"underscore in name", "my_db=postgres:pg.txt", Spec{}, true},
	{"dot in name", "db.lab=postgres:pg.txt", Spec{}, true},
	{"name 16 bytes", "abcdefghijklmnop=redis:pw", Spec{}, true},
	{"digits only name", "6379=redis:pw", Spec{}, true},
	{"no colon", "db=postgres", Spec{}, true},
	{"unknown proto", "db=mysql:pw", Spec{}, true},
	{"proto case", "db=Postgres:pw", Spec{}, true},
	{"empty path", "db=postgres:", Spec{}, true},
	{"empty", "", Spec{}, true},
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Parse(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("Parse(%q) = %+v, want %+v", tc.in, got, tc.want)
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
			if sp != (Spec{}) {
				t.Fatalf("Parse(%q) returned %+v with error %v", in, sp, err)
			}
			return
		}
		if !sp.Name.Valid() || sp.Path == "" || !knownProto(sp.Proto) {
			t.Fatalf("Parse(%q) = %+v: incomplete spec accepted", in, sp)
		}
		if again := sp.Name.String() + "=" + sp.Proto + ":" + sp.Path; again != in {
			t.Fatalf("Parse(%q) = %+v, which does not round-trip (%q)", in, sp, again)
		}
	})
}

// secretText is in every secret used below, so one check finds leaks.
const secretText = "s3cr3t-XYZ"

func TestLoad(t *testing.T) {
	tests := []struct {
		name, proto, content string
		perm                 fs.FileMode
		want                 Secret
		wantWarn             bool
		wantErr              string // substring of the error; "" means no error
	}{
		{"redis password", "redis", secretText + "\n", 0o600, Secret{Password: secretText}, false, ""},
		{"redis user:password", "redis", "app:" + secretText, 0o600, Secret{User: "app", Password: secretText}, false, ""},
		{"redis trims and takes first line", "redis", "  \t" + secretText + " \r\nsecond line\n", 0o600, Secret{Password: secretText}, false, ""},
		{"postgres", "postgres", "app:" + secretText + "\n", 0o600, Secret{User: "app", Password: secretText}, false, ""},
		{"postgres colon in password", "postgres", "app:" + secretText + ":x", 0o600, Secret{User: "app", Password: secretText + ":x"}, false, ""},
		{"http-basic", "http-basic", "app:" + secretText, 0o600, Secret{User: "app", Password: secretText}, false, ""},
		{"http-bearer", "http-bearer", secretText + "\n", 0o600, Secret{Token: secretText}, false, ""},
		{"group readable warns", "http-bearer", secretText, 0o640, Secret{Token: secretText}, true, ""},
		{"world readable warns", "postgres", "app:" + secretText, 0o644, Secret{User: "app", Password: secretText}, true, ""},
		{"empty file", "redis", "", 0o600, Secret{}, false, "first line is empty"},
		{"blank first line", "http-bearer", "  \n" + secretText, 0o600, Secret{}, false, "first line is empty"},
		{"redis empty password", "redis", "app:", 0o600, Secret{}, false, "empty password"},
		{"postgres empty password", "postgres", "app:\n", 0o600, Secret{}, false, "empty password"},
		{"postgres no user", "postgres", secretText, 0o600, Secret{}, false, "no colon found"},
		{"postgres empty user", "postgres", ":" + secretText, 0o600, Secret{}, false, "empty user"},
		{"http-basic empty password", "http-basic", "app:", 0o600, Secret{}, false, "empty password"},
		{"control character", "http-bearer", "a\x00" + secretText, 0o600, Secret{}, false, "control character"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "secret")
			if err := os.WriteFile(path, []byte(tc.content), tc.perm); err != nil {
				t.Fatal(err)
			}
			// WriteFile's perm is filtered by the umask; set it exactly.
			if err := os.Chmod(path, tc.perm); err != nil {
				t.Fatal(err)
			}
			got, warn, err := Load(tc.proto, path)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("Load: got no error, want one containing %q", tc.wantErr)
				}
				msg := err.Error()
				if !strings.Contains(msg, tc.wantErr) || !strings.Contains(msg, path) {
					t.Errorf("Load error = %q, want it to contain %q and the path %q", msg, tc.wantErr, path)
				}
				if strings.Contains(msg, secretText) {
					t.Errorf("Load error %q contains the secret", msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got != tc.want {
				t.Errorf("Load = %#v, want %#v", []string{got.User, got.Password, got.Token}, []string{tc.want.User, tc.want.Password, tc.want.Token})
			}
			if warn != tc.wantWarn {
				t.Errorf("Load warn = %v, want %v (perm %o)", warn, tc.wantWarn, tc.perm)
			}
		})
	}
}

func TestLoadFileErrors(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("a"), maxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, proto, path string
		is                error
	}{
		{"missing file", "redis", filepath.Join(dir, "nope"), fs.ErrNotExist},
		{"directory", "redis", dir, nil},
		{"too big", "http-bearer", big, nil},
		{"unknown proto", "mysql", big, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Load(tc.proto, tc.path)
			if err == nil {
				t.Fatal("Load: got no error, want one")
			}
			if !strings.Contains(err.Error(), tc.path) {
				t.Errorf("Load error = %q, want it to name %q", err, tc.path)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Load error = %v, want errors.Is %v", err, tc.is)
			}
		})
	}
}

func TestSecretRedacted(t *testing.T) {
	s := Secret{User: "app-" + secretText, Password: secretText, Token: secretText}
	type wrapper struct{ S Secret }
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		outs = append(outs, fmt.Sprintf(verb, s), fmt.Sprintf(verb, &s), fmt.Sprintf(verb, wrapper{s}))
	}
	outs = append(outs, fmt.Sprint(s), s.String(), s.GoString())
	j, err := json.Marshal(wrapper{s})
	if err != nil {
		t.Fatal(err)
	}
	outs = append(outs, string(j))
	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&buf, nil), slog.NewJSONHandler(&buf, nil)} {
		l := slog.New(h)
		l.Info("loaded", "secret", s, "ptr", &s, slog.Any("any", s), slog.Group("g", "s", s))
	}
	outs = append(outs, buf.String())
	for _, o := range outs {
		if strings.Contains(o, secretText) {
			t.Errorf("output %q contains the secret", o)
		}
		if !strings.Contains(o, redacted) {
			t.Errorf("output %q does not say %q", o, redacted)
		}
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name, proto string
		s           Secret
		wantErr     bool
	}{
		{"redis ok", "redis", Secret{Password: secretText}, false},
		{"redis empty", "redis", Secret{}, true},
		{"redis colon without user", "redis", Secret{Password: "a:" + secretText}, true},
		{"redis newline", "redis", Secret{Password: secretText + "\r\n"}, true},
		{"postgres ok", "postgres", Secret{User: "u", Password: secretText}, false},
		{"postgres no user", "postgres", Secret{Password: secretText}, true},
		{"basic ok", "http-basic", Secret{User: "u", Password: secretText}, false},
		{"basic colon in user", "http-basic", Secret{User: "u:v", Password: secretText}, true},
		{"bearer ok", "http-bearer", Secret{Token: secretText}, false},
		{"bearer header injection", "http-bearer", Secret{Token: secretText + "\r\nX-Evil: 1"}, true},
		{"unknown", "ftp", Secret{Password: secretText}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := New(tc.proto, tc.s)
			if (err != nil) != tc.wantErr {
				t.Fatalf("New error = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && h == nil {
				t.Fatal("New returned a nil handshake")
			}
			if err != nil && strings.Contains(err.Error(), secretText) {
				t.Errorf("New error %q contains the secret", err)
			}
		})
	}
}
