package mesh

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ambassador-mesh/ambassador/hostsfile"
	"github.com/ambassador-mesh/ambassador/internal/testutil"
)

// TestNamesWriter: a stale block (a node killed earlier) goes at start even
// with no service; a list is written after the debounce; Close removes it.
func TestNamesWriter(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hosts")
	const others = "127.0.0.1 localhost\n"
	if err := os.WriteFile(p, []byte(others+hostsfile.Begin+"\n127.9.9.9\tstale\n"+hostsfile.End+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := newNames(p, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	read := func() string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	testutil.WaitFor(t, 5*time.Second, "the stale block to go", func() bool { return read() == others })
	s.Set([]named{{Name: "pg-a", At: netip.MustParseAddrPort("127.71.38.10:5432")}})
	testutil.WaitFor(t, 5*time.Second, "pg-a in the block", func() bool { return strings.Contains(read(), "127.71.38.10\tpg-a\n") })
	if n, ok := s.Lookup("PG-A"); !ok || n.At.Port() != 5432 {
		t.Fatalf("Lookup(PG-A) = %v, %v", n, ok)
	}
	cancel()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != others {
		t.Fatalf("after Close: %q, want %q", got, others)
	}
}

// TestNamesWriterRestoresBlock: another program that rewrites the file
// without the block (a configuration manager's template of /etc/hosts, an
// editor) does not take the names away for good: the writer notices within
// its resync interval and writes the block again, keeping their lines.
func TestNamesWriterRestoresBlock(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hosts")
	const others = "127.0.0.1 localhost\n"
	if err := os.WriteFile(p, []byte(others), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := newNames(p, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s.resync = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	read := func() string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	s.Set([]named{{Name: "pg-a", At: netip.MustParseAddrPort("127.71.38.10:5432")}})
	testutil.WaitFor(t, 5*time.Second, "pg-a in the block", func() bool { return strings.Contains(read(), "127.71.38.10\tpg-a\n") })

	const theirs = "127.0.0.1 localhost\n10.1.1.1 theirs\n"
	if err := os.WriteFile(p, []byte(theirs), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "the block written again after their lines", func() bool {
		return strings.HasPrefix(read(), theirs+hostsfile.Begin+"\n") && strings.Contains(read(), "127.71.38.10\tpg-a\n")
	})
}
