package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/ambassador-mesh/ambassador/mesh"
)

// TestTablePlain: away from a terminal a table is the text tabwriter made
// before, byte for byte, with no escape sequence; on a terminal the same
// cells get colour without moving the columns.
func TestTablePlain(t *testing.T) {
	in := "NODE\tADDRESS\tSTATE\t\nalpha\t10.0.0.1:7946\talive\t\nbeta-long-name\t10.0.0.2:7946\tdead\t(this node)\n"
	var want bytes.Buffer
	tw := tabwriter.NewWriter(&want, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, in)
	tw.Flush()

	var got bytes.Buffer
	tb := newTable(&got)
	fmt.Fprint(tb, in)
	if err := tb.Flush(); err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Errorf("plain table:\n%q\nwant (tabwriter):\n%q", got.String(), want.String())
	}

	var tty bytes.Buffer
	tb = &table{w: &tty, color: true}
	fmt.Fprint(tb, in)
	tb.Flush()
	if !strings.Contains(tty.String(), "\x1b[32malive\x1b[0m") || !strings.Contains(tty.String(), "\x1b[1mNODE\x1b[0m") {
		t.Errorf("terminal table has no colour: %q", tty.String())
	}
	strip := strings.NewReplacer("\x1b[1m", "", "\x1b[0m", "", "\x1b[31m", "", "\x1b[32m", "", "\x1b[33m", "")
	if strip.Replace(tty.String()) != want.String() {
		t.Errorf("colour moved the columns:\n%q", strip.Replace(tty.String()))
	}
}

func TestEventLine(t *testing.T) {
	at := time.Date(2026, 11, 30, 1, 2, 3, 0, time.Local)
	for _, c := range []struct {
		e    mesh.Event
		want string
	}{
		{mesh.Event{Time: at, Type: mesh.EventMemberJoined, Node: "b-1234"}, "01:02:03  member-joined      b-1234                -"},
		{mesh.Event{Time: at, Type: mesh.EventListenerBusy, Node: "a", Service: "redis", Detail: "address in use"},
			"01:02:03  listener-busy      a                     redis            address in use"},
	} {
		if got := eventLine(c.e, false); got != c.want+"\n" {
			t.Errorf("got  %q\nwant %q", got, c.want+"\n")
		}
	}
}

// TestOutputEscapesControlCharacters: a peer's node name comes from gossip
// unchecked (memberlist takes any string), so watch's lines and the tables
// (members, services, connections) show control characters escaped, the
// way Go writes them, instead of sending them to the operator's terminal,
// where an escape sequence can rewrite the screen or the window title.
func TestOutputEscapesControlCharacters(t *testing.T) {
	evil := "ev\x1b]0;owned\x07il\x1b[2J\x7f\xff"
	const shown = `ev\x1b]0;owned\ail\x1b[2J\x7f\xff`
	at := time.Date(2026, 11, 30, 1, 2, 3, 0, time.Local)
	for _, color := range []bool{false, true} {
		got := eventLine(mesh.Event{Time: at, Type: mesh.EventMemberJoined, Node: evil, Service: "web", Detail: "x\ny"}, color)
		if color {
			got = strings.NewReplacer("\x1b[32m", "", "\x1b[0m", "").Replace(got)
		}
		if want := "01:02:03  member-joined      " + shown + "  web              x\\ny\n"; got != want {
			t.Errorf("event line (color %v):\ngot  %q\nwant %q", color, got, want)
		}
	}
	for _, color := range []bool{false, true} {
		var out bytes.Buffer
		tb := &table{w: &out, color: color}
		fmt.Fprint(tb, "NODE\tSTATE\n"+evil+"\talive\nb\tdead\n")
		if err := tb.Flush(); err != nil {
			t.Fatal(err)
		}
		got := strings.NewReplacer("\x1b[1m", "", "\x1b[0m", "", "\x1b[31m", "", "\x1b[32m", "").Replace(out.String())
		pad := strings.Repeat(" ", len(shown)-len("NODE")+2)
		want := "NODE" + pad + "STATE\n" + shown + "  alive\nb" + strings.Repeat(" ", len(shown)-1+2) + "dead\n"
		if got != want {
			t.Errorf("table (color %v):\ngot  %q\nwant %q", color, got, want)
		}
	}
}

// TestWatchNodeStops: when the node ends the stream (it stopped), watch
// has printed the events so far, says why it ends in one line on stderr
// and exits with status 1; when the stream breaks off (the node was
// killed), it says that, with status 1 too.
func TestWatchNodeStops(t *testing.T) {
	for _, tc := range []struct {
		name   string
		end    func(w http.ResponseWriter)
		stderr string
	}{
		{"stream ended", func(http.ResponseWriter) {},
			"ambassador: watch: the node closed the event stream (stopped?)\n"},
		{"connection cut", func(w http.ResponseWriter) {
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v1/events" {
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprint(w, "retry: 2000\n: node a\n\nid: 1\ndata: {\"seq\":1,\"time\":\"2026-11-30T01:02:03Z\",\"type\":\"member-joined\",\"node\":\"b\"}\n\n")
				http.NewResponseController(w).Flush()
				tc.end(w)
			}))
			defer srv.Close()
			var stdout, stderr bytes.Buffer
			code := run([]string{"ambassador", "watch", "--http", srv.Listener.Addr().String()}, &stdout, &stderr)
			if code != exitFailure {
				t.Errorf("exit status %d, want %d", code, exitFailure)
			}
			if !strings.Contains(stdout.String(), "member-joined") {
				t.Errorf("stdout %q: no member-joined line", stdout.String())
			}
			if tc.stderr != "" && stderr.String() != tc.stderr {
				t.Errorf("stderr:\ngot  %q\nwant %q", stderr.String(), tc.stderr)
			}
			if lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n"); len(lines) != 1 || strings.TrimSpace(lines[0]) == "ambassador:" {
				t.Errorf("stderr %q: want one line saying why watch ended", stderr.String())
			}
		})
	}
}
