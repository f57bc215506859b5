package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/internal/testutil"
)

func TestLogFormatBadValue(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"ambassador", "--log-format", "xml"}, &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), `--log-format: "xml"`) {
		t.Fatalf("exit %d, stderr %q; want 2 naming --log-format", code, stderr.String())
	}
	stderr.Reset()
	if code := run([]string{"ambassador", "forward", "--log-format", "xml", "1=2"}, &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), "--log-format") {
		t.Fatalf("forward: exit %d, stderr %q; want 2 naming --log-format", code, stderr.String())
	}
}

// TestLogFormatJSONAndQuietPerConnection runs `ambassador forward` with
// --log-format json at the default level: every line is a JSON object, and
// 50 connections through it add no line at all.
func TestLogFormatJSONAndQuietPerConnection(t *testing.T) {
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	go func() {
		for {
			c, err := target.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hi"))
			c.Close()
		}
	}()
	listen := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	cmd := exec.Command(binary, "forward", "--log-format", "json", "--drain-timeout", "1s", listen+"="+target.Addr().String())
	var logs testutil.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), `"msg":"forwarding"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no forwarding line; logs:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := strings.Count(logs.String(), "\n")
	for i := range 50 {
		c, err := net.DialTimeout("tcp", listen, 2*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		b := make([]byte, 2)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(b); err != nil || string(b) != "hi" {
			t.Fatalf("connection %d: read %q, %v", i, b, err)
		}
		c.Close()
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("forward after SIGTERM: %v\n%s", err, logs.String())
	}
	out := logs.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["level"] == nil || m["msg"] == nil {
			t.Fatalf("not a JSON log line: %q (%v)", l, err)
		}
	}
	// What comes after the 50 connections is the shutdown: "proxy
	// stopped" and friends, never a line per connection.
	after := strings.Count(out, "\n") - before
	if after > 4 {
		t.Fatalf("%d lines after 50 connections at the default level, want only the shutdown's:\n%s", after, out)
	}
}

func TestDNSFlagBadValue(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"ambassador", "--dns", "localhost"}, &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), `--dns: "localhost"`) {
		t.Fatalf("exit %d, stderr %q; want 2 naming --dns", code, stderr.String())
	}
}
