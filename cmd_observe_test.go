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

// TestWatchStreamClosed: when the node ends the event stream, watch says
// so in one line and exits 1, with no empty "ambassador: " line after it.
func TestWatchStreamClosed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	var stdout, stderr bytes.Buffer
	code := run([]string{"ambassador", "watch", "--http", srv.Listener.Addr().String()}, &stdout, &stderr)
	want := "ambassador watch: the node closed the event stream (stopped?)\n"
	if code != exitFailure || stderr.String() != want {
		t.Fatalf("got exit %d, stderr %q; want exit 1, stderr %q", code, stderr.String(), want)
	}
}
