package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestLoadConfigFile(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    map[string][]string
		wantErr string
	}{
		{
			name: "keys, repeats, comments",
			text: "# lab node\nannounce = redis:6379=12345\nannounce=web:80=8080\n\ncluster = lab\ngossip-port = 8000\nno-mdns = true\ndrain-timeout = 5s\n",
			want: map[string][]string{"announce": {"redis:6379=12345", "web:80=8080"}, "cluster": {"lab"}, "gossip-port": {"8000"}, "no-mdns": {"true"}, "drain-timeout": {"5s"}},
		},
		{name: "unknown key", text: "anounce = x\n", wantErr: `:1: unknown key "anounce"`},
		{name: "no equals", text: "\n\nannounce redis\n", wantErr: ":3: want key = value"},
		{name: "bad int", text: "data-port = many\n", wantErr: `:1: data-port: bad value "many"`},
		{name: "bad duration", text: "drain-timeout = 5\n", wantErr: "drain-timeout: bad value"},
		{name: "bad bool", text: "no-mdns = maybe\n", wantErr: "no-mdns: bad value"},
		{name: "single value twice", text: "cluster = a\ncluster = b\n", wantErr: ":2: cluster: bad value \"b\": given twice"},
		// Only string keys were checked: the other kinds took the last
		// line without a word.
		{name: "number twice", text: "gossip-port = 8000\ngossip-port = 9000\n", wantErr: ":2: gossip-port: bad value \"9000\": given twice"},
		{name: "duration twice", text: "drain-timeout = 5s\n# later\ndrain-timeout = 1m\n", wantErr: ":3: drain-timeout: bad value \"1m\": given twice"},
		{name: "switch twice", text: "no-mdns = true\nno-mdns = false\n", wantErr: ":2: no-mdns: bad value \"false\": given twice"},
		{name: "config in config", text: "config = other\n", wantErr: `unknown key "config"`},
		// Windows editors (Notepad) start a UTF-8 file with a byte order
		// mark; it is no part of the first key.
		{name: "byte order mark", text: "\ufeffcluster = lab\r\n", want: map[string][]string{"cluster": {"lab"}}},
		{name: "byte order mark only first", text: "cluster = lab\n\ufeffgossip-port = 8000\n", wantErr: `:2: unknown key "\ufeffgossip-port"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ambassador.conf")
			if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := loadConfigFile(path, nodeFlags())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if strings.Join(got[k], "|") != strings.Join(v, "|") {
					t.Errorf("%s: got %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

// TestSettingsLayering checks that the command line wins over the file and
// the file over the defaults, for single and repeatable flags.
func TestSettingsLayering(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ambassador.conf")
	text := "cluster = from-file\nannounce = redis:6379=12345\ngossip-port = 8000\nforward = redis\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var got struct {
		cluster  string
		announce []string
		gossip   int
		data     int
		forward  int
	}
	app := newApp(os.Stdout, os.Stderr)
	app.Action = func(c *cli.Context) error {
		cfg, err := settings(c)
		if err != nil {
			return err
		}
		got.cluster, got.gossip, got.data, got.forward = cfg.Cluster, cfg.GossipPort, cfg.DataPort, len(cfg.Forward)
		for _, a := range cfg.Announce {
			got.announce = append(got.announce, a.String())
		}
		return nil
	}
	if err := app.Run([]string{"ambassador", "--config", path, "--cluster", "from-flag", "--announce", "web:80=8080"}); err != nil {
		t.Fatal(err)
	}
	if got.cluster != "from-flag" {
		t.Errorf("cluster: got %q, want the flag's %q", got.cluster, "from-flag")
	}
	if strings.Join(got.announce, ",") != "web:80=127.0.0.1:8080" {
		t.Errorf("announce: got %q, want only the flag's", got.announce)
	}
	if got.gossip != 8000 || got.forward != 1 {
		t.Errorf("gossip-port %d, forwards %d: want the file's 8000 and 1", got.gossip, got.forward)
	}
	if got.data != 7947 {
		t.Errorf("data-port: got %d, want the default 7947", got.data)
	}
}

func TestSplitList(t *testing.T) {
	tests := []struct {
		name   string
		vals   []string
		starts func(string) bool
		want   []string
	}{
		{"one per flag", []string{"redis=6379", "web=8080"}, startsAnnounce, []string{"redis=6379", "web=8080"}},
		{"weight stays with its announcement", []string{"api=8080,weight=3"}, startsAnnounce, []string{"api=8080,weight=3"}},
		{"env list with weights", []string{"api:80=8080,weight=3,redis=6379,web=1,weight=2"}, startsAnnounce,
			[]string{"api:80=8080,weight=3", "redis=6379", "web=1,weight=2"}},
		{"comma inside an exec check", []string{"x=exec:test a,b,y=tcp"}, startsNamed, []string{"x=exec:test a,b", "y=tcp"}},
		{"plain list", []string{"eth0,eth1", "wlan0"}, nil, []string{"eth0", "eth1", "wlan0"}},
		{"forwards without listen addresses", []string{"redis,web=8081"}, nil, []string{"redis", "web=8081"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := splitList(tc.vals, tc.starts)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestWeightFromFlagAndEnv checks the whole path: --announce with a weight
// on the command line and in the environment gives one weighted service.
func TestWeightFromFlagAndEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  string
	}{
		{"flag", []string{"--announce", "api=8080,weight=3", "--announce", "db=5432"}, ""},
		{"env", nil, "api=8080,weight=3,db=5432"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("AMBASSADOR_ANNOUNCE", tc.env)
			}
			var got []string
			app := newApp(os.Stdout, os.Stderr)
			app.Action = func(c *cli.Context) error {
				cfg, err := settings(c)
				for _, a := range cfg.Announce {
					got = append(got, a.String())
				}
				return err
			}
			if err := app.Run(append([]string{"ambassador"}, tc.args...)); err != nil {
				t.Fatal(err)
			}
			want := "api:8080=127.0.0.1:8080,weight=3|db:5432=127.0.0.1:5432"
			if strings.Join(got, "|") != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		})
	}
}

// TestReloadSettingsRefuseBadLogValues: settings is what a SIGHUP reads;
// an error keeps the running settings. A file whose log level or format
// would stop the node at its next start must fail the reload too, not be
// applied in part (its announcements) with the bad value ignored.
// TestConfigFileEmptyKeyFile: key-file = with no path in the file is bad
// usage, as --key-file "" is; it used to run the node with no key.
func TestConfigFileEmptyKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ambassador.conf")
	if err := os.WriteFile(path, []byte("key-file =\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	app := newApp(os.Stdout, os.Stderr)
	app.Action = func(c *cli.Context) error {
		_, err := settings(c)
		return err
	}
	err := app.Run([]string{"ambassador", "--config", path})
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--key-file: empty path") {
		t.Fatalf("got %v, want a usage error containing %q", err, "--key-file: empty path")
	}
}

func TestReloadSettingsRefuseBadLogValues(t *testing.T) {
	for _, tc := range []struct{ line, wantErr string }{
		{"log-level = loud", `--log-level: "loud"`},
		{"log-format = xml", `--log-format: "xml"`},
	} {
		t.Run(tc.line, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ambassador.conf")
			if err := os.WriteFile(path, []byte("announce = redis:6379=12345\n"+tc.line+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			app := newApp(os.Stdout, os.Stderr)
			app.Action = func(c *cli.Context) error {
				_, err := settings(c)
				return err
			}
			err := app.Run([]string{"ambassador", "--config", path})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
